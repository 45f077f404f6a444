"""download_file against a real HTTP server on 127.0.0.1 (with Range support written here)."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imdb_sentiment.config import DataConfig
from imdb_sentiment.data import download
from imdb_sentiment.data.download import download_file, download_imdb, part_path
from imdb_sentiment.data.loaders import read_dataset
from imdb_sentiment.errors import UserError


@dataclass
class Served:
    """One request as the server saw it."""

    range: str | None
    status: int
    sent: int


@dataclass
class FakeServer:
    payload: bytes
    url: str = ""
    honour_range: bool = True
    cut_after: int | None = None  # send only this many body bytes, then drop the connection
    mid_body: Callable[[], None] | None = None  # runs after half the body was sent
    log: list[Served] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: http.server.ThreadingHTTPServer

    def do_GET(self) -> None:
        state: FakeServer = self.server.state  # type: ignore[attr-defined]
        if self.path != "/aclImdb_v1.tar.gz":
            state.log.append(Served(self.headers.get("Range"), 404, 0))
            self.send_error(404, "Not Found")
            return
        data, requested = state.payload, self.headers.get("Range")
        start, status = 0, 200
        if requested and state.honour_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested)
            assert match, requested  # the client only ever asks for open-ended ranges
            start, status = int(match.group(1)), 206
            if start >= len(data):
                state.log.append(Served(requested, 416, 0))  # logged first: the client may finish first
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if state.honour_range else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = body[: state.cut_after] if state.cut_after is not None else body
        state.log.append(Served(requested, status, len(body)))
        half = len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        if state.mid_body:
            state.mid_body()
        self.wfile.write(body[half:])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not intercept requests to 127.0.0.1."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tiny_archive: Path) -> Iterator[FakeServer]:
    state = FakeServer(payload=tiny_archive.read_bytes())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/aclImdb_v1.tar.gz"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def dl(tmp_path: Path) -> Path:
    """An empty folder to download into (tmp_path also holds the fixture archive)."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def test_full_download_with_checksum(server: FakeServer, dl: Path) -> None:
    target = dl / "dl" / "aclImdb_v1.tar.gz"
    result = download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert result == target and target.read_bytes() == server.payload
    assert leftovers(target.parent) == ["aclImdb_v1.tar.gz"]  # no .part, no temp files
    assert server.log == [Served(None, 200, len(server.payload))]
    # the downloaded archive is usable as is
    assert len(read_dataset(target, DataConfig()).train) == 40


def test_progress_bar_goes_to_stderr(server: FakeServer, dl: Path, capsys: pytest.CaptureFixture) -> None:
    download_file(server.url, dl / "a.tar.gz", show_progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "a.tar.gz" in captured.err


def test_existing_verified_file_is_not_downloaded_again(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    target.write_bytes(server.payload)
    assert download_file(server.url, target, sha256=sha(server.payload), show_progress=False) == target
    assert server.log == []


def test_existing_file_with_wrong_checksum_is_replaced(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    target.write_bytes(b"stale")
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload


def test_resume_requests_only_the_remaining_bytes(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    kept = len(server.payload) * 2 // 5
    part_path(target).write_bytes(server.payload[:kept])
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload
    assert server.log == [Served(f"bytes={kept}-", 206, len(server.payload) - kept)]
    assert not part_path(target).exists()


def test_server_ignoring_range_restarts_from_zero(server: FakeServer, dl: Path) -> None:
    server.honour_range = False
    target = dl / "aclImdb_v1.tar.gz"
    part_path(target).write_bytes(b"X" * 1000)  # wrong bytes: must not end up in the file
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload
    assert server.log == [Served("bytes=1000-", 200, len(server.payload))]


def test_part_already_complete_gets_416_and_is_used(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    part_path(target).write_bytes(server.payload)
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload
    assert [entry.status for entry in server.log] == [416]


def test_part_longer_than_file_is_discarded(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    part_path(target).write_bytes(server.payload + b"junk from another file")
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload
    assert [(entry.status, entry.range) for entry in server.log] == [(416, f"bytes={len(server.payload) + 22}-"),
                                                                     (200, None)]  # fmt: skip


def test_checksum_mismatch(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    with pytest.raises(UserError, match=r"corrupt.*Try again") as info:
        download_file(server.url, target, sha256="0" * 64, show_progress=False)
    assert "\n" not in str(info.value)
    assert leftovers(dl) == []  # neither the destination nor a .part to resume from


def test_interrupted_download_keeps_part_and_resumes(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    half = len(server.payload) // 2
    server.cut_after = half
    with pytest.raises(UserError, match="Run the command again to resume"):
        download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert not target.exists()
    assert part_path(target).read_bytes() == server.payload[:half]
    server.cut_after = None
    download_file(server.url, target, sha256=sha(server.payload), show_progress=False)
    assert target.read_bytes() == server.payload
    assert server.log[-1] == Served(f"bytes={half}-", 206, len(server.payload) - half)


def test_destination_never_half_written(server: FakeServer, dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    seen: list[tuple[bool, bool]] = []

    def check_mid_transfer() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not part_path(target).exists():
            time.sleep(0.005)  # the client opens the .part once the response headers arrived
        seen.append((target.exists(), part_path(target).exists()))

    server.mid_body = check_mid_transfer
    download_file(server.url, target, show_progress=False)
    assert seen == [(False, True)]  # mid-download: bytes in the .part only
    assert target.read_bytes() == server.payload


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_url(dl: Path) -> None:
    target = dl / "aclImdb_v1.tar.gz"
    url = f"http://127.0.0.1:{closed_port()}/aclImdb_v1.tar.gz"
    with pytest.raises(UserError) as info:
        download_file(url, target, show_progress=False, timeout=5)
    message = str(info.value)
    assert message.startswith(f"Cannot reach {url} (")
    assert message.endswith(
        "Download aclImdb_v1.tar.gz elsewhere and pass --data PATH or set IMDB_SENTIMENT_DATA."
    )
    assert leftovers(dl) == []


def test_http_error_is_a_user_error(server: FakeServer, dl: Path) -> None:
    with pytest.raises(UserError, match=r"Cannot reach .*missing.tar.gz \(HTTP 404"):
        download_file(server.url.replace("aclImdb_v1", "missing"), dl / "x.tar.gz", show_progress=False)
    assert leftovers(dl) == []


@pytest.mark.parametrize("url", ["nonsense://x", "not a url", "http://[::1"])
def test_invalid_url(dl: Path, url: str) -> None:
    with pytest.raises(UserError, match="Invalid download URL"):
        download_file(url, dl / "x.tar.gz", show_progress=False)
    assert leftovers(dl) == []


def test_unwritable_destination(server: FakeServer, dl: Path) -> None:
    blocker = dl / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="Cannot create output folder"):
        download_file(server.url, blocker / "aclImdb_v1.tar.gz", show_progress=False)
    with pytest.raises(UserError, match="is a folder"):
        download_file(server.url, dl, show_progress=False)
    assert server.log == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a Linux /proc")
def test_unwritable_folder_is_refused_before_any_request(server: FakeServer) -> None:
    # /proc: no file can be created there, even by root (for whom os.access says "writable").
    with pytest.raises(UserError, match=r"/proc is not writable.*Choose a writable folder"):
        download_file(server.url, Path("/proc/aclImdb_v1.tar.gz"), show_progress=False)
    assert server.log == []


def test_download_imdb_defaults_to_the_cache(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = download_imdb(url=server.url, sha256=sha(server.payload), show_progress=False)
    assert path == tmp_path / "cache" / "imdb-sentiment" / "aclImdb_v1.tar.gz"
    assert path.read_bytes() == server.payload
    # resolve_data_path() finds it there without --data
    from imdb_sentiment.data.splits import resolve_data_path

    monkeypatch.delenv("IMDB_SENTIMENT_DATA", raising=False)
    assert resolve_data_path(None) == path


def test_download_imdb_into_a_given_folder(server: FakeServer, dl: Path) -> None:
    path = download_imdb(dl / "data", url=server.url, sha256=None, show_progress=False)
    assert path == dl / "data" / "aclImdb_v1.tar.gz" and path.read_bytes() == server.payload


@pytest.mark.parametrize("position", [0, "middle", -1], ids=["first-byte", "middle-byte", "last-byte"])
def test_checksum_is_over_the_real_bytes(server: FakeServer, dl: Path, position: int | str) -> None:
    """The digest the test computes from the archive it built passes; one changed byte anywhere fails."""
    good = server.payload
    assert download_file(server.url, dl / "good.tar.gz", sha256=f" {sha(good).upper()}\n", show_progress=False)
    assert (dl / "good.tar.gz").read_bytes() == good

    index = len(good) // 2 if position == "middle" else int(position)
    tampered = bytearray(good)
    tampered[index] ^= 0x01
    server.payload = bytes(tampered)
    target = dl / "aclImdb_v1.tar.gz"
    with pytest.raises(UserError, match="is corrupt") as info:
        download_file(server.url, target, sha256=sha(good), show_progress=False)
    message = str(info.value)
    assert f"sha256 {sha(bytes(tampered))[:16]}..., expected {sha(good)[:16]}..." in message
    assert leftovers(dl) == ["good.tar.gz"]  # no destination and no .part to resume from


def test_download_imdb_checks_the_pinned_digest_by_default(server: FakeServer, dl: Path) -> None:
    # The tiny test archive is not the official one, so the default (pinned) digest must reject it.
    with pytest.raises(UserError, match=f"expected {download.IMDB_SHA256[:16]}"):
        download_imdb(dl, url=server.url, show_progress=False)
    assert leftovers(dl) == []
