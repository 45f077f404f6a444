"""End to end against the real llama.cpp server (``xllamacpp``) serving the fetched SmolLM2 on
loopback: scripts/llamacpp_server.py starts it, llm-prompt asks it. Skips when either is missing."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imdb_sentiment.models.llm.fetch import fetched_gguf
from imdb_sentiment.models.llm.remote import LLMPromptClassifier

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llamacpp_server.py"

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp is not installed"),
    pytest.mark.skipif(
        fetched_gguf("smollm2") is None, reason="SmolLM2 not fetched (imdb-sentiment llm fetch smollm2)"
    ),
]


def test_llm_prompt_against_the_real_llama_cpp_server(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1] / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", str(port), "--parallel", "2", "--ctx", "1024"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        base_url = server.stdout.readline().strip()  # printed once the server listens
        assert base_url == f"http://127.0.0.1:{port}/v1", base_url
        params = {"base_url": base_url, "model": "smollm2", "answer_cache": str(tmp_path), "concurrency": 2,
                  "timeout": 300, "api_key_env": None}  # fmt: skip
        LLMPromptClassifier.check_runnable(None, LLMPromptClassifier.Params.model_validate(params))
        model = LLMPromptClassifier(params)
        texts = ["A wonderful, moving film with great acting.", "Boring, awful and far too long. I hated it."]
        probabilities = model.predict_proba(texts)
        assert probabilities.shape == (2, 2)
        assert model.request_stats["requests_sent"] == 2
    finally:
        server.send_signal(signal.SIGINT)  # the script stops on Ctrl-C
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
