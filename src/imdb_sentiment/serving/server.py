"""The HTTP server under the API: uvicorn with h11, plus what uvicorn leaves out for a server that is
safe on its own: a time limit on a request's head, and a cap on open connections.

uvicorn (0.3x-0.5x) times out only idle keep-alive connections (``timeout_keep_alive``, armed after a
response): a client that connects and then sends its request line and headers one byte every few
seconds holds its connection, and a file descriptor, for ever, and a few thousand of them stop the
server from answering anyone. Its ``limit_concurrency`` answers 503 once too many connections are open
but keeps every one of them open. :func:`guarded_protocol` subclasses uvicorn's h11 protocol to close
a connection whose request head is not complete ``header_timeout_s`` after it opened (or after its last
response), and to close connections beyond ``max_connections`` at once with a 503. The body's size and
time limits live in the ASGI app (:class:`~imdb_sentiment.serving.guards.BodyGuard`), where every
transfer encoding looks the same.

In production put a reverse proxy (nginx, Caddy) in front: it buffers slow clients, terminates TLS and
limits request rates per client, which no single-process server does well.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from dataclasses import dataclass

import h11
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0  # request line + headers, from connection (or last response) on
    keep_alive_s: float = 5.0  # an idle connection after a response
    max_connections: int | None = None  # None: 1,000, or fewer when the open-files limit is lower


def default_max_connections() -> int:
    """1,000 connections, leaving 100 file descriptors for the model's files and the process itself."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1000 if soft == resource.RLIM_INFINITY else max(10, min(1000, soft - 100))


def _raw_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response written before h11 has a request to answer (h11 refuses to)."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head deadline and a connection cap (see the module doc)."""

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                message = f"More than {max_connections:,} open connections (--max-connections); try again later."
                transport.write(_raw_response(503, "Service Unavailable", message))
                transport.close()
                return
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a request's head arrived
                self._disarm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()  # the next request's head has the same deadline

        def send_400_response(self, msg: str) -> None:
            """Not HTTP at all (uvicorn answers in plain text): the API's JSON error shape."""
            self.transport.write(
                _raw_response(400, "Bad Request", f"{msg.rstrip('.')}: send an HTTP/1.1 request.")
            )
            self.transport.close()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                if self.conn.trailing_data[0]:  # a head half sent: say why it is closed
                    message = f"The request head did not arrive within {header_timeout_s:g} s (--header-timeout)."
                    self.transport.write(_raw_response(408, "Request Timeout", message))
                self.transport.close()

    return GuardedH11Protocol


def run_server(app: ASGIApp, host: str, port: int, limits: ServerLimits) -> None:
    import uvicorn

    # The model thread (tokenising in Python, scikit-learn) and the event loop share the GIL: by default
    # a thread holds it up to 5 ms before another may run, and a small request needs the loop a dozen
    # times, so it waited 50+ ms behind a big request's model call. 1 ms lets the loop in sooner.
    sys.setswitchinterval(0.001)
    max_connections = limits.max_connections or default_max_connections()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=guarded_protocol(limits.header_timeout_s, max_connections),
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type] (used as a delay: any number)
        ws="none",  # the API has no WebSocket endpoint: upgrade requests are answered as plain HTTP
        lifespan="on",
    )
