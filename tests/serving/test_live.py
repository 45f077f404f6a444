"""The real ``serve`` process on 127.0.0.1: concurrent HTTP requests, the page in headless Chromium, Ctrl-C.

The page screenshot in the README comes from this test, run against a real run::

    IMDB_SENTIMENT_SCREENSHOT=docs/serve-page.png IMDB_SENTIMENT_SCREENSHOT_RUN=runs/nbsvm-... \\
        pytest tests/serving/test_live.py -k chromium
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CLI = Path(sys.executable).with_name("imdb-sentiment")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REVIEW = ("A wonderful surprise: the acting is superb and the story kept me hooked until the end. "
          "The middle drags a little and one subplot is boring, but overall a great film that I loved.")  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run):
    run = os.environ.get("IMDB_SENTIMENT_SCREENSHOT_RUN") or str(trained_run("nbsvm"))
    port = free_port()
    process = subprocess.Popen(
        [str(CLI), "serve", run, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /health within 180 s"
        time.sleep(0.3)
    yield url
    process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop, exit code 0
    assert process.wait(timeout=60) == 0, process.stdout.read()


def uvicorn_in_a_thread(run: Path):
    """A run's app on uvicorn in a thread of this process (real sockets, real HTTP), as a context
    manager giving its URL: it starts in well under a second where a new process needs seconds to import."""
    import contextlib
    import threading

    import uvicorn

    from imdb_sentiment.serving.api import create_app, served_model_from_run

    @contextlib.contextmanager
    def serving():
        port = free_port()
        app = create_app(served_model_from_run(run), allowed_hosts=["127.0.0.1"])
        server_ = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server_.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server_.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server_.should_exit = True
            thread.join(timeout=30)

    return serving()


@pytest.fixture(scope="module")
def three_class_server(three_class_run):
    """The 3-class run's app: the page is what is tested."""
    with uvicorn_in_a_thread(three_class_run) as url:
        yield url


def test_concurrent_http_requests_are_batched(server) -> None:
    before = httpx.get(f"{server}/health").json()["model_calls"]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            texts = [f"great film number {i}" if i % 2 else f"awful film number {i}" for i in range(24)]
            return await asyncio.gather(*(client.post("/predict", json={"texts": [text]}) for text in texts))

    responses = asyncio.run(send_all())
    assert all(response.status_code == 200 for response in responses)
    labels = [response.json()["predictions"][0]["label"] for response in responses]
    assert labels == ["negative", "positive"] * 12
    assert httpx.get(f"{server}/health").json()["model_calls"] - before < len(responses)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser installed (Debian package 'chromium')")
def test_page_in_headless_chromium(server, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 760})
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server)
            page.fill("#text", REVIEW)
            page.click("#classify")
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            verdict = page.inner_text("#verdict")
            assert verdict in ("Positive", "Negative")
            assert page.inner_text("#probability").startswith("P(positive) = ")
            assert page.locator("#bars .bar").count() == 2  # negative, positive: the verdict's highlighted
            shaded = page.locator("#review .w")
            assert shaded.count() > 0 and page.locator("#review .w.pos").count() > 0
            assert page.inner_text("#review") == REVIEW  # the review as typed, only shaded
            page.wait_for_selector("#card-fields dd")
            card = page.inner_text("#card-fields")
            assert "nbsvm" in card and "scikit-learn" in card and "the whole test split" in card
            assert page.locator("#warning").is_hidden()
            page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
            page.fill("#text", "🎬🍿😍👍")  # no word the model knows: the page says so
            page.click("#classify")
            page.wait_for_selector("#warning:not([hidden])", timeout=30_000)
            assert "knows no word" in page.inner_text("#warning")
            assert not errors, errors
            if os.environ.get("IMDB_SENTIMENT_SCREENSHOT"):
                shutil.copy(tmp_path / "serve-page.png", os.environ["IMDB_SENTIMENT_SCREENSHOT"])
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium browser installed (Debian package 'chromium')")
def test_page_of_three_classes_draws_a_bar_per_class(three_class_server) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(three_class_server)
            page.fill("#text", "an average okay film, mixed")
            page.click("#classify")
            page.wait_for_selector("#result:not([hidden])", timeout=30_000)
            assert page.inner_text("#verdict") == "Neutral"
            assert page.inner_text("#probability").startswith("P(neutral) = ")
            assert page.locator("#bars .bar").count() == 3 and page.locator("#bars .bar.top").count() == 1
            assert page.locator("#bars span.top").first.inner_text() == "neutral"
            assert "towards neutral" in page.inner_text("#legend") and page.locator("#review .w.pos").count() > 0
            page.wait_for_selector("#card-fields dd")
            assert "negative, neutral, positive" in page.inner_text("#card-fields")
            assert not errors, errors
            if os.environ.get("IMDB_SENTIMENT_SCREENSHOT_3"):
                page.screenshot(path=os.environ["IMDB_SENTIMENT_SCREENSHOT_3"], full_page=True)
        finally:
            browser.close()


def test_load_test_script_reports_a_clean_run(server) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "load_test.py"
    result = subprocess.run([sys.executable, str(script), server, "-c", "2", "-d", "1", "--json"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] > 0 and report["errors"] == 0 and report["p99_ms"] >= report["p50_ms"] > 0


def test_an_explanation_stops_when_its_client_leaves(trained_run) -> None:
    """The client of a long explanation closes its connection: the server stops explaining (after the
    unit in progress) instead of explaining every text for nobody (before: all of them, then the
    answer went nowhere)."""
    texts = [REVIEW] * 16
    body = json.dumps({"texts": texts, "explain": True}).encode()
    with uvicorn_in_a_thread(trained_run("cnn")) as url:
        port = int(url.rsplit(":", 1)[1])

        def units() -> int:
            return httpx.get(f"{url}/health", timeout=10).json()["explanation_units"]

        started = time.monotonic()
        answered = httpx.post(f"{url}/predict", json={"texts": texts, "explain": True}, timeout=120)
        seconds = time.monotonic() - started
        assert answered.status_code == 200, answered.text
        whole = units()  # what the whole request takes
        assert whole >= 3 * len(texts)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            deadline = time.monotonic() + 60
            while units() == whole:  # wait until its explanation has begun
                assert time.monotonic() < deadline, "the explanation never started"
                time.sleep(0.01)
        # The client is gone. Watch for as long as the whole request took (and more): had it gone on,
        # every unit would have run by then; 20 units' time without one ends the watch early.
        gone_at, unit_seconds = time.monotonic(), seconds / whole
        last, quiet_since = units(), time.monotonic()
        while (
            time.monotonic() - gone_at < 2 * seconds + 1
            and time.monotonic() - quiet_since < 20 * unit_seconds + 0.3
        ):
            time.sleep(0.05)
            if (now := units()) != last:
                last, quiet_since = now, time.monotonic()
        assert last - whole < whole / 2, f"{last - whole} of {whole} units ran for a client that had left"
        assert httpx.post(f"{url}/predict", json={"texts": ["still served"]}, timeout=30).status_code == 200
