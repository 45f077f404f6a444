"""The real ``serve`` process against hostile clients: a 400 MB chunked body, slow heads and bodies, too
many connections, a foreign Host, bytes that are not HTTP. Short timeouts keep each test to seconds."""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CLI = Path(sys.executable).with_name("imdb-sentiment")
MAX_CONNECTIONS = 12
HEADER_TIMEOUT = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run):
    port = free_port()
    process = subprocess.Popen(
        [str(CLI), "serve", str(trained_run("nbsvm")), "--port", str(port), "--header-timeout", str(HEADER_TIMEOUT),
         "--body-timeout", "2", "--max-connections", str(MAX_CONNECTIONS), "--keep-alive", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /health within 180 s"
        time.sleep(0.3)
    yield process, port
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, process.stdout.read()


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def response_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def health_ms(port: int) -> float:
    started = time.perf_counter()
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    return 1000 * (time.perf_counter() - started)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_a_chunked_400_mb_body_is_refused_with_413_without_being_read(server) -> None:
    process, port = server
    before = rss_mb(process.pid)
    sock = connect(port)
    sock.sendall(f"POST /predict HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
    chunk = b"a" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent, answer = 0, b""
    try:
        while sent < 400_000_000 and not select.select([sock], [], [], 0)[0]:
            sock.sendall(frame)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection: its answer is waiting
    with contextlib.suppress(ConnectionResetError):  # a reset for bytes never read may cut the answer short
        answer = read_all(sock)
    grown = rss_mb(process.pid) - before
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), (sent, answer)
    if answer.endswith(b"}"):
        assert response_of(answer)[1]["error"].startswith("Request body of more than 3,005,120 bytes")
    assert sent < 20_000_000 and grown < 100, (sent, grown)
    assert health_ms(port) < 2000


def test_slow_heads_are_closed_and_others_are_answered_meanwhile(server) -> None:
    _, port = server
    slow = [connect(port) for _ in range(4)]
    started = time.monotonic()
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # then nothing more: a client trickling its head
    assert health_ms(port) < 2000  # answered while they hang
    answers = [read_all(sock) for sock in slow]  # returns once the server closes them
    waited = time.monotonic() - started
    assert HEADER_TIMEOUT * 0.8 < waited < HEADER_TIMEOUT + 5, waited
    for answer in answers:
        status, body = response_of(answer)
        assert status == 408 and "--header-timeout" in body["error"]
    silent = connect(port)  # a connection that never sends a byte is closed too, without an answer
    assert read_all(silent) == b"" and time.monotonic() - started < 2 * HEADER_TIMEOUT + 5
    for sock in [*slow, silent]:
        sock.close()


def test_a_slow_body_is_answered_408(server) -> None:
    _, port = server
    with connect(port) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        status, body = response_of(read_all(sock))
    assert status == 408 and "within 2 s (--body-timeout)" in body["error"]


def test_connections_beyond_the_cap_are_refused_at_once_and_freed_later(server) -> None:
    _, port = server
    time.sleep(HEADER_TIMEOUT + 0.5)  # earlier tests' connections are gone
    held = [connect(port) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    with connect(port) as extra:
        status, body = response_of(read_all(extra))
    assert status == 503 and f"More than {MAX_CONNECTIONS} open connections" in body["error"]
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert health_ms(port) < 2000


def test_foreign_hosts_and_bytes_that_are_not_http_get_json_errors(server) -> None:
    _, port = server
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/health", headers={"Host": f"localhost:{port}"}).status_code == 200
    rebound = httpx.get(f"{url}/health", headers={"Host": f"attacker.example:{port}"})
    assert rebound.status_code == 400 and "--allowed-hosts" in rebound.json()["error"]
    assert httpx.get(f"{url}/docs").status_code == 404  # its scripts would come from a CDN
    with connect(port) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")  # e.g. a TLS hello on the plain port
        status, body = response_of(read_all(sock))
    assert status == 400 and body["error"].startswith("Invalid HTTP request received")
