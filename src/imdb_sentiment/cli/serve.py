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
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="Most texts per model call.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, max=1000.0, help="How long a batch waits for more requests.")
    ] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, max=10_000, help="Most texts per request.")] = 64,
    max_chars: Annotated[int, typer.Option(min=1, help="Most characters per text.")] = 100_000,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Run the run's ONNX export with onnxruntime (no explanations).")
    ] = False,
) -> None:
    """Serve a run: POST /predict, GET /health, GET /model, the page at GET / and the docs at /docs."""
    import uvicorn

    from imdb_sentiment.serving.api import ServeLimits, create_app, served_model_from_run

    check_port_free(host, port)
    predictor = None
    if onnx:
        from imdb_sentiment.serving.predictor import Predictor

        predictor = Predictor.from_run(run, onnx=True)
    served = served_model_from_run(run, predictor)  # a damaged run folder fails here, before the port opens
    if not served.files_checked:
        err_console.print(
            f"[bold yellow]warning:[/bold yellow] {run}/model has no manifest.json (saved by an older version): "
            "its files cannot be checked against the checksums of the save.", highlight=False, soft_wrap=True
        )  # fmt: skip
    limits = ServeLimits(max_texts=max_texts, max_chars=max_chars, max_batch=max_batch, max_wait_ms=max_wait_ms)
    backend = f", {predictor.backend}" if predictor is not None else ""
    console.print(f"Serving [bold]{served.name}[/bold] ({run}{backend}) on http://{host}:{port}  (Ctrl-C stops)")
    uvicorn.run(create_app(served, limits), host=host, port=port, log_level="warning")


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
