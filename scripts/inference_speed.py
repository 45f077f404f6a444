"""Side by side on this CPU, same reviews: PyTorch fp32 / bf16 and ONNX Runtime fp32 / fp32 with
transformer fusions / int8, for one run (or all-MiniLM-L6-v2 with an untrained head).

For each backend: reviews/s batched (length-sorted batches, as predict does), single-review latency
(one review per call), accuracy on the same reviews and the largest |P(positive)| difference from
PyTorch fp32. Every backend runs with the same number of threads; the load average is printed with
the table, since other jobs on the machine slow every row.

    PYTHONPATH=src python scripts/inference_speed.py minilm --reviews 256
    PYTHONPATH=src python scripts/inference_speed.py runs/cnn-... --reviews 256 --json speed.json

Speed does not depend on the classifier head, so ``minilm`` (no run folder) measures MiniLM with an
untrained head: its accuracy column is chance; pass a trained minilm run to measure accuracy too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from imdb_sentiment.config import dump_config
from imdb_sentiment.data.dataset import TextDataset
from imdb_sentiment.data.splits import stratified_sample
from imdb_sentiment.io_utils import write_json_atomic, write_text_atomic
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.torch_base import TorchTextClassifier
from imdb_sentiment.pipelines.export import export_onnx
from imdb_sentiment.runs import save_model_atomically
from imdb_sentiment.serving.onnx_backend import OnnxModel
from imdb_sentiment.serving.predictor import Predictor
from imdb_sentiment.training.runtime import Runtime

DEFAULT_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "test.parquet"


def untrained_minilm_run(folder: Path, max_length: int) -> Path:
    """A run folder holding all-MiniLM-L6-v2 with a fresh head: the real encoder, no training."""
    from imdb_sentiment.data.dataset import TextDataset as Texts
    from imdb_sentiment.models.base import FitContext
    from imdb_sentiment.models.registry import get_model_class
    from imdb_sentiment.models.torch_base import NetworkRequest

    config = configure({"model": {"name": "minilm", "params": {"max_length": max_length}}})
    model = get_model_class("minilm")(config.model.params)
    torch.manual_seed(0)
    model.encoder = model.build_encoder(Texts(["a"], np.array([1])), FitContext(training=config.training))
    model.network = model.build_network(NetworkRequest()).eval()
    write_text_atomic(folder / "config.yaml", dump_config(config))
    save_model_atomically(model, folder)
    return folder


def pytorch_backend(run: Path, bf16: bool, threads: int) -> Predictor:
    predictor = Predictor.from_run(run)
    model = predictor.model
    assert isinstance(model, TorchTextClassifier)
    model.runtime = Runtime(device=torch.device("cpu"), bf16=bf16, threads=threads)
    if hasattr(model.params, "inference_precision"):  # hf: its own precision switch decides autocast
        model.params = model.params.model_copy(update={"inference_precision": "bf16" if bf16 else "fp32"})
    return predictor


def measure(predictor: Predictor, texts: list[str], labels: np.ndarray, batch_size: int, singles: int) -> dict:
    predictor.predict_proba(texts[:batch_size], batch_size=batch_size)  # warm-up: allocations, caches
    started = time.perf_counter()
    probabilities = predictor.predict_proba(texts, batch_size=batch_size)
    batched = time.perf_counter() - started
    latencies = []
    for text in texts[:singles]:
        started = time.perf_counter()
        predictor.predict_proba([text], batch_size=1)
        latencies.append(1000 * (time.perf_counter() - started))
    return {
        "reviews_per_second": len(texts) / batched,
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_mean": statistics.fmean(latencies),
        "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
        "p_positive": probabilities[:, 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder, or 'minilm' (all-MiniLM-L6-v2, untrained head)")
    parser.add_argument("--reviews", type=int, default=256, help="test reviews (stratified sample)")
    parser.add_argument("--singles", type=int, default=32, help="reviews timed one at a time")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per review (minilm only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test", type=Path, default=DEFAULT_TEST, help="test split (Parquet: text, label)")
    parser.add_argument(
        "--backends", default="pytorch-fp32,pytorch-bf16,onnx-fp32,onnx-fp32-fused,onnx-int8,onnx-fused-int8"
    )
    parser.add_argument("--json", type=Path, help="write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pd.read_parquet(args.test, columns=["text", "label"])
    reviews = stratified_sample(TextDataset(frame["text"].tolist(), frame["label"].to_numpy()), args.reviews, 0)

    with tempfile.TemporaryDirectory() as scratch:
        run = (
            untrained_minilm_run(Path(scratch) / "minilm", args.max_length)
            if args.run == "minilm"
            else Path(args.run)
        )
        texts = Predictor.from_run(run).clean(reviews.texts)
        rows, reference = {}, None
        for backend in args.backends.split(","):
            if backend.startswith("pytorch"):
                predictor = pytorch_backend(run, backend.endswith("bf16"), args.threads)
            else:
                folder = Path(scratch) / backend
                fused = "fused" in backend
                if fused and not hasattr(Predictor.from_run(run).model.network, "backbone"):
                    continue  # fusions are for transformers (hf / minilm / bert-scratch)
                started = time.perf_counter()
                export_onnx(run, "int8" if backend.endswith("int8") else None, optimize=fused, output=folder)
                print(f"{backend}: exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)
                config = Predictor.from_run(run).config
                predictor = Predictor(OnnxModel.load(run, config, threads=args.threads, folder=folder), run)
            row = measure(predictor, texts, reviews.labels, args.batch_size, args.singles)
            probabilities = row.pop("p_positive")
            reference = probabilities if reference is None else reference
            row["max_abs_diff_p_vs_first"] = float(np.abs(probabilities - reference).max())
            rows[backend] = row
            print(backend, json.dumps({k: round(v, 4) for k, v in row.items()}), file=sys.stderr, flush=True)

    load = os.getloadavg()
    print(f"\n{args.run}: {len(texts)} test reviews, batch {args.batch_size}, {args.threads} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print("| backend | reviews/s (batched) | latency p50 (ms) | accuracy | max abs ΔP vs first row |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for backend, row in rows.items():
        print(f"| {backend} | {row['reviews_per_second']:.1f} | {row['latency_ms_p50']:.1f} | "
              f"{row['accuracy']:.4f} | {row['max_abs_diff_p_vs_first']:.1e} |")  # fmt: skip
    if args.json:
        write_json_atomic(args.json, {"run": args.run, "reviews": len(texts), "load_average": load, "rows": rows})


if __name__ == "__main__":
    main()
