"""scripts/llamacpp_server.py: end to end against the real llama.cpp server (``xllamacpp``) serving the
fetched SmolLM2 on loopback (skips when either is missing), and the script's own promises (its
messages, a prompt exit on SIGTERM) with a stand-in ``xllamacpp`` module."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from imdb_sentiment.models.llm.fetch import fetched_gguf
from imdb_sentiment.models.llm.remote import LLMPromptClassifier

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llamacpp_server.py"

needs_xllamacpp = pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="no xllamacpp")
needs_smollm2 = pytest.mark.skipif(
    fetched_gguf("smollm2") is None, reason="SmolLM2 not fetched (llm fetch smollm2)"
)

# A stand-in for xllamacpp whose server, like llama.cpp's, takes its time to shut down (it waits for
# the requests in flight) when deleted.
STUB_XLLAMACPP = textwrap.dedent("""
    import time
    from types import SimpleNamespace

    class CommonParams:
        def __init__(self):
            self.model = SimpleNamespace(path=None)
            self.model_alias = set()
            self.cpuparams = SimpleNamespace(n_threads=1)
            self.cpuparams_batch = SimpleNamespace(n_threads=1)

    class Server:
        def __init__(self, params):
            self.listening_address = f"http://{params.hostnames[0]}:{params.port}"

        def __del__(self):
            time.sleep(60)
""")


def run_script(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    """The script under a bare Python that sees only the stand-in xllamacpp (not imdb_sentiment)."""
    (tmp_path / "stub").mkdir(exist_ok=True)
    (tmp_path / "stub" / "xllamacpp.py").write_text(STUB_XLLAMACPP)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path / "stub")}
    return subprocess.Popen([sys.executable, "-S", str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, **popen)  # fmt: skip


def test_the_script_without_the_package_and_without_gguf_says_what_to_do(tmp_path) -> None:
    process = run_script(tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "Traceback" not in err, err
    assert "pass --gguf" in err and len(err.strip().splitlines()) == 1


def test_the_script_exits_at_once_on_sigterm_so_clients_see_their_connections_close(tmp_path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    process = run_script(tmp_path, "--gguf", str(gguf), "--port", "9")
    try:
        assert process.stdout.readline().strip() == "http://127.0.0.1:9/v1"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)  # the server's own shutdown would hold it for 60 s
        assert time.monotonic() - started < 10 and process.returncode == 0
    finally:
        process.kill()


@needs_xllamacpp
@needs_smollm2
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
