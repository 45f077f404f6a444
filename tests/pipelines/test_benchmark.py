"""Benchmark suites: expansion over seeds and train sizes, resume, failures, leaderboard, analysis, report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import one_line_user_error, run_cli, tiny_causal_lm_folder, write_tiny_parquet_imdb
from pydantic import ValidationError

from imdb_sentiment.errors import RunInterrupted, UserError
from imdb_sentiment.evaluation import plots
from imdb_sentiment.evaluation.analysis import accuracy_by_cues, accuracy_by_length, confident_mistakes
from imdb_sentiment.evaluation.metrics import expected_calibration_error, reliability_bins
from imdb_sentiment.evaluation.plots import pareto_front
from imdb_sentiment.pipelines import benchmark as benchmark_module
from imdb_sentiment.pipelines import report as report_module
from imdb_sentiment.pipelines.benchmark import run_benchmark
from imdb_sentiment.pipelines.leaderboard import RunRecord, aggregate, leaderboard_table
from imdb_sentiment.pipelines.suites import (
    OutOfDomainSet,
    Suite,
    SuiteRow,
    WriteupReference,
    expand_suite,
    load_suite,
    parse_train_sizes,
)

FAST = ["model.params.min_df=1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench-data")
    write_tiny_parquet_imdb(root / "imdb", size=80)
    mr = root / "mr"
    mr.mkdir()
    (mr / "rt-polarity.pos").write_bytes(
        "a great wonderful film\nloved it , caf\xe9 excellent\n".encode("latin-1")
    )
    (mr / "rt-polarity.neg").write_bytes(b"awful and boring\nterrible film\nhated it\n")
    return root


def data_overrides(root: Path) -> list[str]:
    return [f"data.path={json.dumps(str(root / 'imdb'))}", *FAST]


# --- suites -------------------------------------------------------------------------------------------


def test_expansion_over_seeds_and_sizes(tiny_data, tmp_path) -> None:
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr")], seeds=2, train_sizes=[16, "full"])
    planned, skipped = expand_suite(suite, data_overrides(tiny_data), tmp_path, False, False)
    assert not skipped
    assert [run.run_dir.name for run in planned] == ["tfidf-lr-n16-s0", "tfidf-lr-nfull-s0",
                                                     "tfidf-lr-n16-s1", "tfidf-lr-nfull-s1"]  # fmt: skip
    assert [run.config.data.limit for run in planned] == [16, None, 16, None]
    assert [(run.config.seed, run.config.data.seed) for run in planned] == [(42, 42)] * 2 + [(43, 43)] * 2


def test_a_row_may_have_its_own_train_sizes(tiny_data, tmp_path) -> None:
    suite = Suite(name="t", train_sizes=[16, 32, "full"],
                  rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm", train_sizes=[32])])  # fmt: skip
    planned, _ = expand_suite(suite, data_overrides(tiny_data), tmp_path, False, False)
    assert [run.run_dir.name for run in planned] == ["tfidf-lr-n16", "tfidf-lr-n32", "tfidf-lr-nfull", "nbsvm-n32"]
    assert planned[-1].config.data.limit == 32
    with pytest.raises(ValidationError, match="repeat"):
        SuiteRow(config="nbsvm", train_sizes=[32, 32])


def test_train_sizes_on_the_command_line_set_every_rows(tiny_data, tmp_path, capsys, monkeypatch) -> None:
    from imdb_sentiment.pipelines import benchmark

    planned: list[str] = []

    def plan_only(suite, overrides, output_dir, **_):  # the runs the CLI would start, none trained
        planned.extend(run.run_dir.name for run in expand_suite(suite, overrides, output_dir, False, False)[0])
        raise UserError("planned")

    monkeypatch.setattr(benchmark, "run_benchmark", plan_only)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: t\nout_of_domain: null\nrows:\n  - {config: tfidf-lr, train_sizes: [40]}\n")
    code, _, _ = run_cli(["benchmark", str(suite), "--train-sizes", "24", "--data", str(tiny_data / "imdb"),
                          "--output-dir", str(tmp_path / "out"), "--set", *FAST, "--quiet"], capsys)  # fmt: skip
    assert code == 2 and planned == ["tfidf-lr-n24"]


@pytest.mark.parametrize(("vary", "expected"), [("init", (43, 42)), ("data", (42, 43))])
def test_vary_changes_one_seed(tiny_data, tmp_path, vary, expected) -> None:
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr")], seeds=2, vary=vary)
    planned, _ = expand_suite(suite, data_overrides(tiny_data), tmp_path, False, False)
    assert (planned[1].config.seed, planned[1].config.data.seed) == expected


def test_gpu_rows_skipped_on_cpu_and_bad_rows_named(tiny_data, tmp_path) -> None:
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm", gpu_only=True)])
    planned, skipped = expand_suite(suite, data_overrides(tiny_data), tmp_path, False, False)
    assert [run.label for run in planned] == ["tfidf-lr"] and "GPU only" in skipped[0][1]
    bad = Suite(name="t", rows=[SuiteRow(config="tfidf-lr", set=["training.epochs=0"])])
    one_line_user_error(lambda: expand_suite(bad, [], tmp_path, False, False), "suite row 1 (tfidf-lr)", "epochs")
    twice = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="tfidf-lr")])
    one_line_user_error(lambda: expand_suite(twice, [], tmp_path, False, False), "repeats")


def test_shipped_suites_load_and_bad_suites_are_one_line(tmp_path) -> None:
    assert {row.config for row in load_suite("quick").rows} >= {"nbsvm", "fasttext"}
    seed = load_suite("seed")
    assert any(row.gpu_only for row in seed.rows) and all(row.writeup for row in seed.rows)
    assert load_suite("full").rows
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows:\n  - config: nbsvm\n    sett: []\n")
    one_line_user_error(lambda: load_suite(str(bad)), "sett")
    one_line_user_error(lambda: load_suite("no-such-suite"), "quick")
    assert parse_train_sizes("16, 64,full") == [16, 64, "full"]
    one_line_user_error(lambda: parse_train_sizes("16,2"), "--train-sizes")


def test_the_peft_suites_validate_every_row(tiny_data, tmp_path) -> None:
    # peft-full is GPU-only: included here so that its overrides (P-Tuning / Prompt Tuning at 492 tokens,
    # which with 20 virtual tokens fill MiniLM's 512 positions) are validated like a GPU run's.
    overrides = [f"data.path={json.dumps(str(tiny_data / 'imdb'))}"]
    full, skipped = expand_suite(load_suite("peft-full"), overrides, tmp_path, True, False)
    assert not skipped and len(full) == 6
    lengths = {run.label: run.config.model.params["max_length"] for run in full}
    assert lengths["p-tuning-full"] == lengths["prompt-full"] == 492 and lengths["lora-full"] == 512
    assert all(run.config.data.limit is None and run.config.training.epochs == 2 for run in full)
    assert not expand_suite(load_suite("peft-full"), overrides, tmp_path, False, False)[0]  # skipped on a CPU
    protocol, _ = expand_suite(load_suite("peft"), overrides, tmp_path, False, False)
    assert {run.config.data.limit for run in protocol} == {4000} and len(protocol) == 7


# --- running ------------------------------------------------------------------------------------------


def test_benchmark_resumes_reports_and_survives_a_failed_row(tiny_data, tmp_path, monkeypatch) -> None:
    out = tmp_path / "bench"
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")], seeds=2,
                  train_sizes=[16, "full"])  # fmt: skip
    real = benchmark_module.run_experiment

    def nbsvm_breaks(config, **kwargs):
        if config.model.name == "nbsvm" and config.data.limit == 16:
            kwargs["run_dir"].mkdir(parents=True)  # as a real failure leaves it: a folder marked failed
            (kwargs["run_dir"] / "run.json").write_text('{"status": "failed"}')
            raise RuntimeError("boom")
        return real(config, **kwargs)

    monkeypatch.setattr(benchmark_module, "run_experiment", nbsvm_breaks)
    result, paths = run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    assert [record.status for record in result.records].count("failed") == 2
    assert {path.name for path in paths} == {"leaderboard.md", "leaderboard.csv", "runs.csv", "report.html"}
    board = pd.read_csv(out / "leaderboard.csv")
    full = board[board["train_size"] == "full"].set_index("label")
    assert full.loc["tfidf-lr", "seeds"] == 2 and full.loc["tfidf-lr", "accuracy_std"] >= 0
    assert full.loc["nbsvm", "ood_accuracy_mean"] > 0  # the out-of-domain (MR) column was filled
    markdown = (out / "leaderboard.md").read_text()
    assert "Learning curves" in markdown and "boom" in markdown and "full test split" in markdown
    for run in ("tfidf-lr-n16-s0", "nbsvm-nfull-s1"):
        assert (out / run / "analysis" / "analysis.md").is_file()
        assert (out / run / "plots" / "reliability.png").is_file()
    metrics = json.loads((out / "tfidf-lr-nfull-s0" / "metrics.json").read_text())
    assert {"ece", "single_reviews_per_second", "peak_memory_mb", "device"} <= set(metrics)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8 and "http" not in html.replace("http-equiv", "")

    # Re-run: the completed runs are reused, the failed ones are tried again (and now succeed).
    monkeypatch.setattr(benchmark_module, "run_experiment", real)
    stamp = (out / "tfidf-lr-n16-s0" / "metrics.json").stat().st_mtime_ns
    again, _ = run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    statuses = {record.planned.run_dir.name: record.status for record in again.records}
    assert statuses["tfidf-lr-n16-s0"] == "reused" and statuses["nbsvm-n16-s0"] == "completed"
    assert (out / "tfidf-lr-n16-s0" / "metrics.json").stat().st_mtime_ns == stamp
    assert len(list(out.glob("nbsvm-n16-s0.abandoned-*"))) == 1  # the failed attempt is kept aside


def test_llm_rows_join_the_learning_curves(tiny_data, tmp_path) -> None:
    # llm-sft learns from each training subset; llm-score draws its shots and its calibration threshold
    # from it. Both are rows like any other: one run per size, one learning-curve line each.
    lm = json.dumps(tiny_causal_lm_folder())
    tiny = [f"model.params.checkpoint={lm}", "model.params.max_length=16"]
    suite = Suite(name="llm", train_sizes=[16, "full"], rows=[
        SuiteRow(config="llm-sft", set=[*tiny, "model.params.adapter.rank=2", "model.params.calibration=none",
                                        "training.batch_size=4"]),
        SuiteRow(config="llm-score", set=[*tiny, "model.params.shots=2", "model.params.calibration_size=8"]),
    ])  # fmt: skip
    out = tmp_path / "bench"
    result, _ = run_benchmark(suite, [f"data.path={json.dumps(str(tiny_data / 'imdb'))}", "data.limit=null"], out,
                              show_progress=False)  # fmt: skip
    assert [record.status for record in result.records] == ["completed"] * 4, [r.error for r in result.records]
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(zip(board["label"], board["train_size"].astype(str), strict=True)) == {
        ("llm-sft", "16"),
        ("llm-sft", "full"),
        ("llm-score", "16"),
        ("llm-score", "full"),
    }
    curves = (out / "leaderboard.md").read_text().split("Learning curves")[1]
    assert "| llm-sft |" in curves and "| llm-score |" in curves
    assert json.loads((out / "llm-sft-n16" / "metrics.json").read_text())["train_examples"] < 16


def test_folder_with_another_config_is_never_overwritten(tiny_data, tmp_path) -> None:
    out = tmp_path / "bench"
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr")])
    run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    config_text = (out / "tfidf-lr" / "config.yaml").read_text()
    changed = Suite(name="t", rows=[SuiteRow(config="tfidf-lr", set=["model.params.C=2"])])
    result, _ = run_benchmark(changed, data_overrides(tiny_data), out, show_progress=False)
    assert result.records[0].status == "failed" and "another config" in result.records[0].error
    assert (out / "tfidf-lr" / "config.yaml").read_text() == config_text


def test_ctrl_c_keeps_the_leaderboard_and_says_how_to_resume(tiny_data, tmp_path, monkeypatch) -> None:
    out = tmp_path / "bench"
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")])
    real = benchmark_module.run_experiment

    def interrupt_second(config, **kwargs):
        if config.model.name == "nbsvm":
            raise KeyboardInterrupt
        return real(config, **kwargs)

    monkeypatch.setattr(benchmark_module, "run_experiment", interrupt_second)
    with pytest.raises(RunInterrupted) as info:
        run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    assert "same benchmark command" in info.value.message
    assert "tfidf-lr" in (out / "leaderboard.md").read_text()


def test_leaderboard_columns_are_derived_from_what_the_runs_recorded(tiny_data, tmp_path) -> None:
    # cv_results_-style: every number in metrics.json (nested sections with dotted names) becomes
    # <name>_mean / <name>_std; a metric nobody listed reaches the CSV without touching the leaderboard.
    writeup = WriteupReference(row="tf-idf", claimed=0.93)
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr", writeup=writeup), SuiteRow(config="nbsvm")], seeds=2)
    planned, _ = expand_suite(suite, data_overrides(tiny_data), tmp_path, False, False)
    records = []
    for run, accuracy in zip(planned, (0.80, 0.70, 0.90, 0.70), strict=True):  # tfidf-lr s0, s1, nbsvm s0, s1
        metrics = {"accuracy": accuracy, "brand_new_metric": 2 * accuracy, "device": "cpu", "seed": 1,
                   "validation": {"valid_accuracy": accuracy}, "confusion_matrix": [[1, 0], [0, 1]]}  # fmt: skip
        records.append(RunRecord(run, "completed", metrics=metrics))
    board = aggregate(records).set_index("label")
    assert board.loc["tfidf-lr", "accuracy_mean"] == pytest.approx(0.75)
    assert board.loc["tfidf-lr", "accuracy_std"] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert board.loc["nbsvm", "brand_new_metric_std"] == pytest.approx(np.std([1.8, 1.4], ddof=1))
    assert board.loc["nbsvm", "validation.valid_accuracy_mean"] == pytest.approx(0.8)
    assert board.loc["nbsvm", "device"] == "cpu" and "seed_mean" not in board and "confusion_matrix" not in board
    one_seed = aggregate(records[::2])  # seed 0 of each row
    assert one_seed["accuracy_std"].isna().all()  # one seed: no spread claimed
    table = leaderboard_table(one_seed)
    assert "±" not in table and "| n (seeds) |" in table and "ECE" not in table  # no column without a value
    assert "| write-up claimed |" in table and "| 93.0 |" in table and "Kaggle" not in table


def test_a_one_seed_report_is_honest_dated_and_names_its_out_of_domain_set(tiny_data, tmp_path) -> None:
    out = tmp_path / "bench"
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr")],
                  out_of_domain=OutOfDomainSet(name="Tiny MR", path=str(tiny_data / "mr")))  # fmt: skip
    result, _ = run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    page = (out / "report.html").read_text()
    markdown = (out / "leaderboard.md").read_text()
    assert "mean ± std" not in page and "mean ± std" not in markdown  # one seed: n=1, no spread
    assert "n=1" in page and "n=1" in markdown
    assert "write-up" not in page  # no row carries the write-up's numbers: the caption does not promise them
    environment = json.loads((out / "tfidf-lr" / "environment.json").read_text())
    assert environment["git_commit"][:12] in page and "imdb-sentiment 0." in page and "report written 20" in page
    assert "Tiny MR (out of domain)" in page and "Tiny MR (" in markdown
    assert pd.read_csv(out / "leaderboard.csv")["ood_accuracy_mean"].notna().all()
    # Each confident mistake says which label is the true one.
    mistake = {"text": "a <b>fine</b> film", "label": 1, "prob_positive": 0.02, "confidence": 0.98}
    assert "true label positive; predicted negative, P(positive) 0.020" in report_module._mistake(mistake)
    assert "&lt;b&gt;" in report_module._mistake(mistake)
    assert "| true label | predicted |" in (out / "tfidf-lr" / "analysis" / "analysis.md").read_text()
    assert result.main_process
    # The out-of-domain set: off with null, a missing path is one line naming the field.
    assert (
        Suite.model_validate({"name": "t", "rows": [{"config": "nbsvm"}], "out_of_domain": None}).out_of_domain
        is None
    )
    missing = suite.model_copy(update={"out_of_domain": OutOfDomainSet(path=str(tmp_path / "nowhere"))})
    one_line_user_error(
        lambda: run_benchmark(missing, data_overrides(tiny_data), tmp_path / "b2"), "out_of_domain.path"
    )
    assert not (tmp_path / "b2").exists()
    with pytest.raises(ValueError, match="path"):
        OutOfDomainSet(format="table")


def test_accuracy_bars_start_at_zero_and_show_the_writeup_numbers(monkeypatch, tmp_path) -> None:
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: saved.append(figure))
    rows = [{"label": "a", "accuracy_mean": 0.91, "accuracy_std": None, "writeup_claimed": 0.93},
            {"label": "b", "accuracy_mean": 0.89, "accuracy_std": float("nan")}]  # fmt: skip
    plots.plot_accuracy_bars(rows, tmp_path / "bars.png")
    axis = saved[0].axes[0]
    assert axis.get_xlim()[0] == 0  # a cut axis makes a 2-point gap look like a 2x one
    texts = [text.get_text() for text in axis.texts]
    assert texts == ["89.00%", "91.00%"]
    labels = axis.get_legend_handles_labels()[1]
    assert "ours (one seed)" in labels and "write-up's claim" in labels


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TINY_FASTTEXT = ["model.params.embedding_dim=8", "model.params.buckets=64", "model.params.min_freq=1",
                 "training.batch_size=8", "training.epochs=1", "training.threads=1"]  # fmt: skip


def test_under_torchrun_rank_0_alone_decides_and_writes(tiny_data, tmp_path) -> None:
    """2 gloo processes run the suite (training and predictions are collective); rank 0 alone moves a
    stale folder aside and tells the other rank, and alone writes the tables and the report."""
    out = tmp_path / "bench"
    stale = out / "fasttext"
    stale.mkdir(parents=True)  # an earlier attempt that left nothing to resume from
    (stale / "run.json").write_text('{"status": "failed"}')
    launched = subprocess.run(
        [*TORCHRUN, "-m", "imdb_sentiment.cli", "benchmark", "--models", "fasttext", "--data", str(tiny_data / "imdb"),
         "--output-dir", str(out), *(f"--set={item}" for item in TINY_FASTTEXT), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert len(list(out.glob("fasttext.abandoned-*"))) == 1  # moved once, by rank 0 only
    assert json.loads((stale / "run.json").read_text())["processes"] == 2
    analysis = json.loads((stale / "analysis" / "analysis.json").read_text())
    assert analysis["out_of_domain"]["examples"] == 5  # MR predicted by both ranks, written by rank 0
    assert launched.stdout.count("Leaderboard and report:") == 1
    assert pd.read_csv(out / "leaderboard.csv")["seeds"].tolist() == [1]


# --- analysis -----------------------------------------------------------------------------------------


def test_calibration_by_hand() -> None:
    labels = np.array([1, 0, 1, 0])
    probabilities = np.array([[0.1, 0.9], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    bins = reliability_bins(labels, probabilities, bins=5)
    assert [(row["count"], row["accuracy"]) for row in bins] == [(2, 0.5), (2, 1.0)]
    # confidences 0.6, 0.6 (accuracy 0.5) and 0.9, 0.9 (accuracy 1): ECE = (2*0.1 + 2*0.1) / 4
    assert expected_calibration_error(labels, probabilities, bins=5) == pytest.approx(0.1)
    assert reliability_bins(np.array([1]), np.array([[0.0, 1.0]]))[0]["count"] == 1  # 1.0 lands in the top bin


def test_error_slices() -> None:
    texts = ["I didn't like it", "great film", "good but long", "never again, not good", "fine"]
    labels = np.array([0, 1, 1, 0, 1])
    probabilities = np.array([[0.2, 0.8], [0.1, 0.9], [0.6, 0.4], [0.9, 0.1], [0.45, 0.55]])
    predictions = probabilities.argmax(1)
    cues = accuracy_by_cues(texts, labels, predictions)
    assert cues["negation"]["with"] == {"count": 2, "accuracy": 0.5}  # "didn't" counts, as does "never"
    assert cues["contrast"]["with"]["count"] == 1
    mistakes = confident_mistakes(texts, labels, probabilities)
    assert [row["text"] for row in mistakes] == ["I didn't like it", "good but long"]
    groups = accuracy_by_length(texts, labels, predictions, groups=2)
    assert sum(group["count"] for group in groups) == 5
    assert pareto_front([(1.0, 0.8), (2.0, 0.7), (3.0, 0.9), (0.5, 0.6)]) == [3, 0, 2]


def test_analyze_command(tiny_data, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    code, _, err = run_cli(["train", "tfidf-lr", "--data", str(tiny_data / "imdb"), "--output-dir", str(out),
                            "--set", *FAST, "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    run_dir = next(out.iterdir())
    code, stdout, err = run_cli(["analyze", str(run_dir), "--ood-data", str(tiny_data / "mr")], capsys)
    assert code == 0, err
    assert "MR (out of domain)" in stdout and (run_dir / "analysis" / "accuracy_by_length.png").is_file()
    analysis = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert analysis["out_of_domain"]["examples"] == 5 and len(analysis["accuracy_by_length"]) == 10
    assert not {"classes", "per_class", "confusion_matrix", "ordinal"} & set(analysis)  # sentiment as ever
    assert (
        "| true label | predicted | P(positive) | review |" in (run_dir / "analysis" / "analysis.md").read_text()
    )
    # Other data than the run was tested on: one line, exit 2.
    other = tmp_path / "other"
    write_tiny_parquet_imdb(other, size=40, seed=9)
    code, _, err = run_cli(["analyze", str(run_dir), "--data", str(other)], capsys)
    assert code == 2 and "not the data" in err
    code, _, err = run_cli(["analyze", str(run_dir), "--ood-data", str(tmp_path)], capsys)
    assert code == 2 and "rt-polarity.pos" in err
    with pytest.raises(UserError):
        benchmark_module.analyze_run(tmp_path)


def test_analyze_with_the_data_moved_keeps_the_out_of_domain_row(tiny_data, tmp_path, capsys) -> None:
    # --data X: the default out-of-domain set (MR) is looked for beside X, as the help says, not beside
    # the folder the run was trained from (gone here).
    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(tiny_data, before)
    code, _, err = run_cli(["train", "tfidf-lr", "--data", str(before / "imdb"), "--output-dir", str(tmp_path / "runs"),
                            "--set", *FAST, "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    before.rename(after)
    code, stdout, err = run_cli(["analyze", str(run_dir), "--data", str(after / "imdb")], capsys)
    assert code == 0, err
    assert "MR (out of domain)" in stdout
    assert json.loads((run_dir / "analysis" / "analysis.json").read_text())["out_of_domain"]["examples"] == 5

    # What analyze cannot do is one line, exit 2, never a traceback: a folder it cannot write into, an
    # edited predictions.csv.
    shutil.rmtree(run_dir / "analysis")
    (run_dir / "analysis").write_text("not a folder")
    code, _, err = run_cli(["analyze", str(run_dir), "--data", str(after / "imdb")], capsys)
    assert code == 2 and f"{run_dir / 'analysis'}" in err and "Traceback" not in err and len(err.splitlines()) == 1
    predictions = run_dir / "predictions.csv"
    predictions.write_text(predictions.read_text().replace("0.", "x.", 1))
    code, _, err = run_cli(["analyze", str(run_dir), "--data", str(after / "imdb")], capsys)
    assert code == 2 and "not probabilities" in err and "Traceback" not in err


# --- the report in a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package 'chromium')")
def test_report_renders_in_headless_chromium(tiny_data, tmp_path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    out = tmp_path / "bench"
    suite = Suite(name="t", rows=[SuiteRow(config="tfidf-lr"), SuiteRow(config="nbsvm")], train_sizes=[16, "full"])
    _, paths = run_benchmark(suite, data_overrides(tiny_data), out, show_progress=False)
    report = next(path for path in paths if path.name == "report.html")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.resolve().as_uri())
        sizes = page.eval_on_selector_all(
            "img", "images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(sizes) >= 10 and all(done and width > 50 and height > 50 for done, width, height in sizes)
    assert not errors, errors
