"""``imdb-sentiment export``: turn a finished run into what serving needs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli.app import app, console, err_console
from imdb_sentiment.errors import UserError
from imdb_sentiment.io_utils import read_json


class Quantization(str, Enum):
    int8 = "int8"


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    merge: Annotated[
        bool, typer.Option("--merge", help="Fold a LoRA adapter into the base weights (same predictions).")
    ] = False,
    onnx: Annotated[
        bool,
        typer.Option("--onnx", help="Write the network as an ONNX graph into RUN/onnx/ (for --onnx serving)."),
    ] = False,
    quantize: Annotated[
        Quantization | None, typer.Option(help="With --onnx: dynamic int8 quantisation (per-channel weights).")
    ] = None,
    optimize: Annotated[
        bool,
        typer.Option(
            "--optimize", help="With --onnx, hf models: fuse attention, LayerNorm and GELU (onnxruntime)."
        ),
    ] = False,
    output: Annotated[Path | None, typer.Option(help="New run folder (default: RUN-merged).")] = None,
) -> None:
    """Export a run for serving (``--merge``: a LoRA run becomes a plain model with no adapter latency;
    ``--onnx``: an ONNX graph that ``predict`` / ``evaluate --onnx`` run with onnxruntime)."""
    from imdb_sentiment.pipelines.export import ONNX_MANIFEST, export_merged, export_onnx

    if (quantize or optimize) and not onnx:
        raise UserError("--quantize and --optimize apply to --onnx exports only.")
    if merge == onnx:
        raise UserError("Pass one of --merge (fold a LoRA adapter into the base weights) or --onnx.")
    if merge:
        target = export_merged(run, output)
        console.print(f"Merged model: [bold]{target}[/bold] (predict / evaluate it like any run)")
        return
    if output is not None:
        raise UserError("--output is for --merge; an ONNX export goes into RUN/onnx/.")
    target = export_onnx(run, quantize.value if quantize else None, optimize)
    manifest = read_json(target / ONNX_MANIFEST)
    console.print(
        f"ONNX {manifest['precision']} graph: [bold]{target / manifest['file']}[/bold] "
        f"({manifest['bytes'] / 1e6:.1f} MB; max |P(positive) difference| vs PyTorch on the check reviews "
        f"{manifest['max_abs_diff_vs_pytorch']:.1e}). Use it: predict / evaluate RUN --onnx."
    )
    speed = manifest["speed_vs_pytorch"]  # measured by the export, one thread each
    if speed["onnx_over_pytorch"] > 1.2:
        err_console.print(
            f"[bold yellow]warning:[/bold yellow] on onnxruntime this graph took {speed['onnx_ms']:.0f} ms per "
            f"batch of {speed['batch']} reviews, PyTorch {speed['pytorch_ms']:.0f} ms (one thread each): "
            "serve it with PyTorch unless you need onnxruntime.", highlight=False, soft_wrap=True
        )  # fmt: skip
