"""``imdb-sentiment pretrain-mlm``: masked-LM pre-training for bert-scratch / domain-adapting MiniLM.

Heavy imports (torch, transformers) happen inside the command, so registering it costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from imdb_sentiment.cli.app import SEED_MAX, app, console


@app.command("pretrain-mlm")
def pretrain_mlm_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the pretrained model.")],
    model: Annotated[
        str, typer.Option("--model", help="bert-scratch (random BERT), minilm (continue), or a folder / hub id.")
    ] = "bert-scratch",
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset (its unsup + train texts are used, never test).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use a seeded sample of this many reviews.")] = None,
    include_train: Annotated[
        bool, typer.Option("--include-train/--unsup-only", help="Add the training reviews' text.")
    ] = True,
    max_length: Annotated[int, typer.Option(min=8, max=8192, help="Tokens per block.")] = 128,
    epochs: Annotated[float, typer.Option(min=0.01, max=1000.0, help="Passes over the blocks.")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65536)] = 32,
    learning_rate: Annotated[
        float | None,
        # AdamW's sane range, as training.learning_rate checks it (config.SANE_LEARNING_RATES).
        typer.Option(min=1e-7, max=0.05, help="Default: 5e-4 from scratch, 5e-5 otherwise."),
    ] = None,
    mlm_probability: Annotated[float, typer.Option(min=0.01, max=0.9, help="Share of tokens masked.")] = 0.15,
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU), fp32 or bf16.")] = "auto",
    vocab: Annotated[str, typer.Option(help="bert-scratch vocabulary: minilm or train.")] = "minilm",
    hidden_size: Annotated[int, typer.Option(min=8, max=4096, help="bert-scratch width.")] = 256,
    num_layers: Annotated[int, typer.Option(min=1, max=48, help="bert-scratch depth.")] = 4,
    num_heads: Annotated[int, typer.Option(min=1, max=64, help="bert-scratch attention heads.")] = 4,
    intermediate_size: Annotated[int, typer.Option(min=8, help="bert-scratch feed-forward width.")] = 1024,
    seed: Annotated[
        int, typer.Option(min=0, max=SEED_MAX, help="Seed for sampling, masking and initialisation.")
    ] = 42,
    threads: Annotated[
        int | None, typer.Option(min=1, max=1024, help="torch CPU threads (default: all cores).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Pre-train with masked-language modelling on unlabeled (+ training) reviews, never test.

    The output folder (weights + tokenizer + mlm.json) is what model.params.init_from takes, e.g.
    ``imdb-sentiment train configs/bert-scratch.yaml --set model.params.init_from=OUTPUT``.
    """
    from imdb_sentiment.errors import UserError
    from imdb_sentiment.pipelines.mlm import MLMSettings, pretrain_mlm, pretraining_texts

    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"--precision {precision!r}: use auto, fp32 or bf16.")
    if vocab not in ("minilm", "train"):
        raise UserError(f"--vocab {vocab!r}: use minilm or train.")
    texts, source = pretraining_texts(data, include_train=include_train, limit=limit, seed=seed)
    settings = MLMSettings(
        model=model, output=output, max_length=max_length, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, learning_rate=learning_rate, mlm_probability=mlm_probability,
        precision=precision, vocab=vocab, hidden_size=hidden_size, num_layers=num_layers,  # type: ignore[arg-type]
        num_heads=num_heads, intermediate_size=intermediate_size, seed=seed, threads=threads,
        show_progress=not quiet,
        extra=source,
    )  # fmt: skip
    summary = pretrain_mlm(texts, settings)
    table = Table(title=f"MLM pre-training ({model})", show_header=False)
    for key in ("texts", "train_blocks", "steps", "train_loss", "eval_loss", "eval_perplexity", "train_seconds"):
        value = summary[key]
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    console.print(table)
    console.print(f"Saved: [bold]{output}[/bold] (use as model.params.init_from)")
