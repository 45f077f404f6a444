"""ASGI guards in front of the API: which ``Host`` it answers, and how big and how slow a body may be.

Both are plain ASGI middlewares (not Starlette's ``BaseHTTPMiddleware``) because they must see the
body as it arrives, message by message, whatever the transfer encoding: the ``Content-Length`` header
is absent from a chunked request, and a body must be refused once it is too big, not after it was
read. Their answers have the API's one error shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def error_response(status: int, message: str, close: bool = False) -> JSONResponse:
    """The API's one error shape; ``close``: end the connection after it (a body left unread)."""
    headers = {"connection": "close"} if close else None
    return JSONResponse(status_code=status, content={"error": " ".join(message.split())}, headers=headers)


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``Example.org:80`` -> ``example.org``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


class HostGuard:
    """Answers only requests whose ``Host`` is allowed: a web page on another site cannot reach the API
    through a DNS name rebound to 127.0.0.1 (DNS rebinding), since its requests carry that name.

    Why not Starlette's TrustedHostMiddleware: it answers in plain text and cuts ``[::1]:8000`` at the
    first colon. Allowed entries: a name (``localhost``), an address (``127.0.0.1``, ``[::1]``), a
    domain and its subdomains (``*.example.org``), or ``*`` for any host."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.names = {host_name(host) for host in allowed_hosts if not host.startswith("*.")}
        self.domains = tuple(host[1:].lower() for host in allowed_hosts if host.startswith("*."))

    def allows(self, host: str) -> bool:
        name = host_name(host)
        return self.any_host or name in self.names or (bool(name) and name.endswith(self.domains))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.any_host:
            host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), "")
            if not self.allows(host):
                message = (f"Host {host[:100]!r} is not served here; start the server with --allowed-hosts "
                           "naming it to allow it.")  # fmt: skip
                await error_response(400, message, close=True)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyGuard:
    """Reads a request's body before the app sees it, refusing it with 413 as soon as it holds more than
    ``max_bytes`` (whatever the transfer encoding), and with 408 when it has not fully arrived within
    ``timeout_s`` (a client trickling bytes). The body is then handed to the app as it came.

    Holding the body here costs no memory the app would not use anyway: FastAPI reads a JSON body
    whole before validating it."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    def too_big(self, size: str) -> tuple[int, str]:
        return 413, f"Request body of {size} bytes; at most {self.max_bytes:,} (--max-request-chars, --max-texts)."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((value for key, value in scope["headers"] if key == b"content-length"), b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await _refuse(receive, send, *self.too_big(f"{int(length):,}"))
            return
        messages: list[Message] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except (TimeoutError, asyncio.TimeoutError):
                timeout = f"The request body did not arrive within {self.timeout_s:g} s (--body-timeout)."
                await _refuse(receive, send, 408, timeout)
                return
            if message["type"] != "http.request":  # the client left
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(receive, send, *self.too_big(f"more than {self.max_bytes:,}"))
                return
            messages.append(message)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)


LINGER_S = 1.0  # how long a refused body is still read (and dropped) after the answer
LINGER_BYTES = 64 * 2**20


async def _refuse(receive: Receive, send: Send, status: int, message: str) -> None:
    """Answer with an error before the body was read, then close the connection the way nginx does
    ("lingering close"): for up to a second, read and drop what the client is still sending. Closing
    with unread bytes makes the kernel reset the connection, and a reset can destroy the answer in
    the client's buffers before the client reads it."""
    body = json.dumps({"error": " ".join(message.split())}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": True})  # whole, the close waits
    loop = asyncio.get_running_loop()
    deadline, dropped = loop.time() + LINGER_S, 0
    while dropped < LINGER_BYTES and (remaining := deadline - loop.time()) > 0:
        try:
            received = await asyncio.wait_for(receive(), remaining)
        except (TimeoutError, asyncio.TimeoutError):
            break
        if received["type"] != "http.request" or not received.get("more_body", False):
            break
        dropped += len(received.get("body", b""))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` giving back the body's messages, then the real ``receive`` (its disconnect)."""
    pending = list(reversed(messages))

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
