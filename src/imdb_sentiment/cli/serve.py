"""``imdb-sentiment serve``: a run as a REST API and a web page (FastAPI + uvicorn)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli.app import app, console, err_console
from imdb_sentiment.errors import UserError


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-hosts",
            help="Host header names answered (repeat, or comma-separated; *.example.org for subdomains, * for "
            "any). Default: localhost, 127.0.0.1, [::1] (a page elsewhere cannot reach the API by DNS rebinding).",
        ),
    ] = None,
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="Most texts per model call.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, max=1000.0, help="How long a batch waits for more requests.")
    ] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, max=10_000, help="Most texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Most characters per text.")] = 100_000,
    max_request_chars: Annotated[
        int, typer.Option(min=1, help="Most characters per request, all texts.")
    ] = 250_000,
    max_explain_chars: Annotated[
        int, typer.Option(min=0, help="Most characters per request with explain: true (explaining is slow).")
    ] = 20_000,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds for a request's line and headers to arrive; then it is closed.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds for a request's whole body to arrive; then 408.")
    ] = 30.0,
    keep_alive: Annotated[float, typer.Option(min=0.1, help="Seconds an idle connection stays open.")] = 5.0,
    max_connections: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Open connections at most; more are closed with 503. Default: 1,000 "
            "(fewer if the open-files limit is lower).",
        ),
    ] = None,
    docs: Annotated[
        bool,
        typer.Option("--docs", help="Serve /docs and /redoc (their scripts load from a CDN: needs the network)."),
    ] = False,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Run the run's ONNX export with onnxruntime (no explanations).")
    ] = False,
    explain_thread: Annotated[
        bool | None,
        typer.Option(
            "--explain-thread/--no-explain-thread",
            help="Explain on a copy of the model (twice its memory) in a lowest-priority thread, so predictions "
            "never wait for explanations. Default: for PyTorch models on Linux.",
        ),
    ] = None,
) -> None:
    """Serve a run: POST /predict, GET /health, GET /model, the page at GET / (and with --docs, /docs)."""
    from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run
    from imdb_sentiment.serving.guards import LOOPBACK_HOSTS
    from imdb_sentiment.serving.server import ServerLimits, run_server

    hosts = [name.strip() for value in allowed_hosts or [] for name in value.split(",") if name.strip()]
    if allowed_hosts is not None and not hosts:
        raise UserError("--allowed-hosts names no host; give names (e.g. localhost,example.org) or * for any.")
    check_port_free(host, port)
    predictor = None
    if onnx:
        from imdb_sentiment.serving.predictor import Predictor

        predictor = Predictor.from_run(run, onnx=True)
    # A damaged run folder fails here, before the port opens.
    served = served_model_from_run(run, predictor, explain_thread)
    if not served.files_checked:
        err_console.print(
            f"[bold yellow]warning:[/bold yellow] {run}/model has no manifest.json (saved by an older version): "
            "its files cannot be checked against the checksums of the save.", highlight=False, soft_wrap=True
        )  # fmt: skip
    limits = ServeLimits(max_texts=max_texts, max_chars=max_chars, max_request_chars=max_request_chars,
                         max_explain_chars=max_explain_chars, max_batch=max_batch, max_wait_ms=max_wait_ms,
                         body_timeout_s=body_timeout)  # fmt: skip
    # Default: the loopback names, and the address bound when it is one (a wildcard is not a name).
    bound = f"[{host}]" if ":" in host else host
    answered = hosts or [*LOOPBACK_HOSTS, *([bound] if bound not in (*LOOPBACK_HOSTS, "0.0.0.0", "[::]") else [])]
    console.print(
        f"Serving [bold]{served.name}[/bold] ({run}, {served.card.get('backend')}) on http://{host}:{port}  "
        f"(Ctrl-C stops; answers Host: {', '.join(answered)})", highlight=False, soft_wrap=True
    )  # fmt: skip
    if served.explainer is not None:
        where = ("in their own lowest-priority thread, on a copy of the model" if served.explainer_owns_model
                 else "between prediction batches, on the model's thread")  # fmt: skip
        console.print(f"Explanations ({served.explainer.method}) run {where}.", highlight=False)
    app_ = create_app(served, limits, allowed_hosts=answered, docs=docs)
    run_server(app_, host, port, ServerLimits(header_timeout, keep_alive, max_connections))


def check_port_free(host: str, port: int) -> None:
    """A port in use is a one-line error now, not uvicorn's log line after the model has loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror}).") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port.") from None
