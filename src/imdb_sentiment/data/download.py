"""Download the official IMDB archive (or any file) safely.

Bytes stream into ``<destination>.part``; an interrupted download resumes from there with an HTTP
``Range`` request (servers that ignore ``Range`` answer 200 and the download restarts from zero).
The file is renamed onto ``destination`` only after its sha256 has been verified, so
``destination`` never exists half-written. Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import cache_dir, ensure_writable_dir, sha256_file

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# sha256 of the official aclImdb_v1.tar.gz (84,125,825 bytes). Cross-checked against independent
# pins: Hugging Face `datasets` imdb download_checksums, gomlx examples/imdb, Julia DataDeps loaders.
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
IMDB_FILENAME = "aclImdb_v1.tar.gz"

CHUNK_SIZE = 1 << 16
USER_AGENT = "imdb-sentiment/0.1 (python-urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)

_Outcome = Literal["done", "restart"]


def part_path(destination: Path) -> Path:
    """Where the bytes of ``destination`` accumulate until verified (``x.tar.gz`` -> ``x.tar.gz.part``)."""
    return destination.with_name(destination.name + ".part")


def download_file(
    url: str,
    destination: str | Path,
    sha256: str | None = None,
    show_progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``destination`` and return ``destination``.

    An existing ``destination`` that matches ``sha256`` (or any existing one when no checksum is
    given) is returned without touching the network. Every failure a user can cause or fix raises a
    one-line :class:`UserError`.
    """
    destination = Path(destination).expanduser()
    if destination.is_dir():
        raise UserError(f"Download destination {destination} is a folder; give a file path.")
    ensure_writable_dir(destination.parent)
    expected = sha256.strip().lower() if sha256 else None
    if destination.is_file() and (expected is None or sha256_file(destination) == expected):
        return destination

    part = part_path(destination)
    if part.is_dir():
        raise UserError(f"{part} is a folder; remove it so the download can use that name.")
    # At most one restart: after it the .part is empty, so a second "restart" cannot happen unless
    # the server misbehaves (wrong Content-Range for a request without Range).
    for _attempt in range(2):
        offset = part.stat().st_size if part.is_file() else 0
        if _fetch(url, destination, part, offset, show_progress, timeout) == "done":
            break
        part.unlink(missing_ok=True)
    else:
        raise UserError(f"{url} answered with inconsistent byte ranges; try again later.")

    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)  # a corrupt .part must not be resumed next time
            raise UserError(
                f"The download of {url} is corrupt (sha256 {actual[:16]}..., expected "
                f"{expected[:16]}...); the partial file was deleted. Try again."
            )
    try:
        os.replace(part, destination)  # atomic: destination is either absent or complete
    except OSError as exc:
        raise UserError(f"Cannot move {part} to {destination}: {exc.strerror}.") from None
    return destination


def download_imdb(
    destination_dir: str | Path | None = None,
    url: str = IMDB_URL,
    sha256: str | None = IMDB_SHA256,
    show_progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download the official ``aclImdb_v1.tar.gz`` (default: into the cache that
    :func:`imdb_sentiment.data.splits.resolve_data_path` looks in) and return its path."""
    folder = Path(destination_dir).expanduser() if destination_dir else cache_dir()
    return download_file(url, folder / IMDB_FILENAME, sha256, show_progress, timeout)


# --------------------------------------------------------------------------------------------------


def _unreachable(url: str, reason: object, destination: Path) -> UserError:
    return UserError(
        f"Cannot reach {url} ({reason}). Download {destination.name} elsewhere and pass --data PATH "
        "or set IMDB_SENTIMENT_DATA."
    )


def _fetch(
    url: str,
    destination: Path,
    part: Path,
    offset: int,
    show_progress: bool,
    timeout: float,
) -> _Outcome:
    """One request. Appends to ``part`` from ``offset``; 'restart' means: delete ``part``, ask again."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        content_range = exc.headers.get("Content-Range") if exc.headers else None
        if exc.fp is not None:
            exc.close()  # release the connection (HTTPError wraps the response)
        if exc.code == 416 and offset:
            # Nothing left past ``offset``: either the .part is already complete, or it is
            # longer than the file (stale, from another file) and must be discarded.
            match = _UNSATISFIED_RANGE.search(content_range or "")
            return "done" if match and int(match.group(1)) == offset else "restart"
        raise _unreachable(url, f"HTTP {exc.code} {exc.reason}", destination) from None
    except urllib.error.URLError as exc:
        if str(exc.reason).startswith("unknown url type"):
            raise UserError(f"Invalid download URL {url!r}: {exc.reason}.") from None
        raise _unreachable(url, exc.reason, destination) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(url, exc, destination) from None
    except ValueError as exc:  # malformed URL, e.g. no scheme
        raise UserError(f"Invalid download URL {url!r}: {exc}.") from None

    with response:
        status = response.status or 200  # file:// URLs have no status
        length = response.headers.get("Content-Length")
        if status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != offset:
                return "restart"  # a range we did not ask for: cannot be appended safely
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:
            # 200: the server ignored Range and sends the whole file, so start over.
            offset, mode = 0, "wb"
            total = int(length) if length and length.isdigit() else None
        received = _stream(response, part, mode, offset, total, destination.name, show_progress, url)

    if total is not None and offset + received != total:
        raise UserError(
            f"The download of {url} stopped early ({offset + received:,} of {total:,} bytes); "
            f"the bytes so far are kept in {part}. Run the command again to resume."
        )
    return "done"


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    name: str,
    show_progress: bool,
    url: str,
) -> int:
    """Copy the body into ``part``; returns the bytes received. Network errors keep the .part."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    received = 0
    # read1 returns whatever has arrived (up to CHUNK_SIZE) instead of blocking for a full chunk,
    # so the progress bar moves on slow links and an interruption loses as little as possible.
    read = getattr(response, "read1", response.read)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
        transient=False,
    )
    try:
        handle = open(part, mode)  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise UserError(f"Cannot write {part}: {exc.strerror}. Choose a writable folder.") from None
    try:
        with progress:
            task = progress.add_task(f"Downloading {name}", total=total, completed=offset)
            while True:
                try:
                    chunk = read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    raise UserError(
                        f"The download of {url} was interrupted ({exc or type(exc).__name__}); "
                        f"{offset + received:,} bytes are kept in {part}. Run the command again to resume."
                    ) from None
                if not chunk:
                    break
                try:
                    handle.write(chunk)
                except OSError as exc:
                    raise UserError(
                        f"Cannot write {part}: {exc.strerror}. Free some disk space or choose another folder."
                    ) from None
                received += len(chunk)
                progress.update(task, advance=len(chunk))
    finally:
        handle.close()
    return received
