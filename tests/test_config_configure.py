"""The configure step: machine checks before any run folder for every family, a server asked once per
command, YAML that cannot hang the reader, finite numbers only, resumes that cannot change the run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fake_openai import FakeOpenAI
from helpers import one_line_user_error, run_cli, tiny_causal_lm_folder

from imdb_sentiment.config import dump_config
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.registry import available_models, get_model_class
from imdb_sentiment.pipelines.suites import Suite, SuiteRow, expand_suite
from imdb_sentiment.runs import write_status

CLI = Path(sys.executable).with_name("imdb-sentiment")
REPO = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
WORD = {"embeddings": "random", "embedding_dim": 16, "max_length": 24, "min_freq": 1}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------- devices, kinds
@NO_GPU
def test_llm_score_on_a_missing_gpu_is_refused_before_a_run_folder(tmp_path, tiny_imdb_80) -> None:
    result = cli("train", str(REPO / "configs" / "llm-score.yaml"), "--set", "training.device=cuda",
                 "--set", f"model.params.checkpoint={tiny_causal_lm_folder()}", "--data", str(tiny_imdb_80),
                 "--output-dir", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert_one_line_refusal(result, "training.device", "no CUDA GPU")
    assert not (tmp_path / "runs").exists()


@NO_GPU
def test_an_ensemble_with_a_torch_member_checks_the_device_before_a_run_folder(tmp_path, tiny_imdb_80) -> None:
    members = [{"model": "nbsvm", "params": {"min_df": 1}}, {"model": "fasttext", "params": WORD}]
    config = tmp_path / "ensemble.yaml"
    config.write_text(
        json.dumps({"model": {"name": "ensemble", "params": {"members": members, "combine": "mean"}}})
    )
    result = cli("train", str(config), "--set", "training.device=cuda", "--data", str(tiny_imdb_80),
                 "--output-dir", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert_one_line_refusal(result, "training.device", "no CUDA GPU")
    assert not (tmp_path / "runs").exists()
    # a member's own device is named by its own field; a linear-only ensemble needs no device at all
    members[1]["training"] = {"device": "cuda:3"}
    raw = {"model": {"name": "ensemble", "params": {"members": members, "combine": "mean"}}}
    one_line_user_error(lambda: configure(raw), "model.params.members.1.training.device")
    linear = {"model": {"name": "ensemble", "params": {"members": [members[0], members[0]], "combine": "mean"}}}
    configure(linear, ["training.device=cuda"])


def test_models_lists_each_family_by_its_capabilities(capsys) -> None:
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines() if line.count("│") >= 3
    }
    assert rows["nbsvm"] == "scikit-learn" and rows["cnn"] == "pytorch (shared loop)"
    assert rows["llm-score"].startswith("pytorch (frozen LM") and rows["llm-prompt"].startswith("remote")
    assert rows["ensemble"] == "ensemble"
    for name in available_models():
        capabilities = get_model_class(name).capabilities
        assert rows[name] and capabilities.kind.startswith(rows[name])  # the table may wrap it
        assert not capabilities.supports_resume or capabilities.trains_with_loop  # resume is the loop's


def test_metrics_record_the_device_the_model_computed_on() -> None:
    from imdb_sentiment.models.ensemble import EnsembleModel

    class Member:
        def __init__(self, device: str) -> None:
            self.device = device

        def device_used(self) -> str:
            return self.device

    ensemble = EnsembleModel({"members": [{"model": "nbsvm"}, {"model": "cnn"}]})
    ensemble.members = [Member("cpu"), Member("cuda")]  # type: ignore[list-item]
    assert ensemble.device_used() == "cpu,cuda"  # not the "cpu" a non-loop model used to claim


# ------------------------------------------------------------------------------- one server check
def test_a_suite_asks_its_llm_server_once(tmp_path) -> None:
    with FakeOpenAI() as server:
        params = [f"model.params.base_url={server.base_url}", "model.params.model=fake"]
        suite = Suite(name="s", rows=[SuiteRow(config="llm-prompt", set=params)], seeds=3, train_sizes=[8, 16])
        planned, _ = expand_suite(suite, [], tmp_path, include_gpu_rows=False, gpu_available=False)
        assert len(planned) == 6
        assert server.model_listings == 1
        other = Suite(name="s", rows=[SuiteRow(config="llm-prompt", set=params),
                                      SuiteRow(config="llm-prompt", name="b", set=[*params, "model.params.shots=2"])])  # fmt: skip
        expand_suite(other, [], tmp_path, include_gpu_rows=False, gpu_available=False)
        assert server.model_listings == 2  # a new command checks again, once for the one server


def test_validation_does_no_io_and_finished_runs_skip_machine_checks(tmp_path) -> None:
    with FakeOpenAI() as server:
        raw = {"model": {"name": "llm-prompt", "params": {"base_url": server.base_url, "model": "fake"}}}
        configure(raw, for_training=False)
        assert server.model_listings == 0
        configure(raw)
        assert server.model_listings == 1


# ------------------------------------------------------------------------------- hostile YAML
def alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["training:\n  epochs", "name"])
def test_a_yaml_alias_bomb_is_refused_quickly_in_one_line(tmp_path, field: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("x: &x\n" + "".join(f"  {line}\n" for line in alias_bomb().splitlines()) + f"{field}: *x\n")
    assert bomb.stat().st_size < 1200
    for command in (["show-config", str(bomb)], ["train", str(bomb), "--output-dir", str(tmp_path / "runs")]):
        started = time.monotonic()
        result = cli(*command, timeout=60)
        assert time.monotonic() - started < 30
        assert_one_line_refusal(result, str(bomb), "aliases expand to")
        assert len(result.stderr) < 400
    assert not (tmp_path / "runs").exists()


def test_an_alias_bomb_in_an_override_is_refused(capsys) -> None:
    bomb = "[" + ", ".join(["&b0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]) + "]"  # fmt: skip
    code, _, err = run_cli(["show-config", "nbsvm", "--set", f"name={bomb}"], capsys)
    assert code == 2 and "Override name: its aliases expand to" in err and len(err) < 400


def test_error_messages_quote_a_bounded_excerpt() -> None:
    message = one_line_user_error(lambda: configure({"name": ["word" * 1000] * 1000}), "name:")
    assert len(message) < 300


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["model.params.C=1e400"], "model.params.C"),
        (["model.params.C=inf"], "model.params.C"),
        (["training.grad_clip=.inf"], "training.grad_clip"),
        (["data.valid_fraction=.nan"], "data.valid_fraction"),
        (["model.params.nb_alpha=nan"], "model.params.nb_alpha"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(overrides: list[str], field: str) -> None:
    one_line_user_error(lambda: configure({"model": {"name": "nbsvm"}}, overrides), field, "finite number")


def test_non_finite_numbers_in_yaml_are_refused_by_show_config(tmp_path, capsys) -> None:
    path = tmp_path / "inf.yaml"
    path.write_text("model:\n  name: nbsvm\n  params:\n    C: .inf\n")
    code, out, err = run_cli(["show-config", str(path)], capsys)
    assert code == 2 and "model.params.C" in err and "finite" in err and "C: null" not in out
    code, _, err = run_cli(["show-config", "nbsvm", "--set", "model.params.C=1e400"], capsys)
    assert code == 2 and "model.params.C: Input should be a finite number" in err


def test_yaml_that_nests_too_deeply_or_holds_a_huge_integer_is_one_line(tmp_path, capsys) -> None:
    for name, text in {"deep.yaml": "name: " + "[" * 20000 + "]" * 20000 + "\n",
                       "digits.yaml": "seed: " + "9" * 5000 + "\n"}.items():  # fmt: skip
        (tmp_path / name).write_text(text)
        code, _, err = run_cli(["show-config", str(tmp_path / name)], capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------- resume
@pytest.fixture
def interrupted_lstm_run(tmp_path, tiny_imdb_80) -> Path:
    """A run folder as an interruption leaves it (config.yaml, run.json "interrupted", no checkpoint
    needed: the refusals come before anything reads one)."""
    config = configure({"model": {"name": "lstm", "params": {**WORD, "hidden_size": 8}}},
                       [f"data.path={json.dumps(str(tiny_imdb_80))}", "training.epochs=1", "training.threads=1"])  # fmt: skip
    run_dir = tmp_path / "lstm-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_config(config))
    write_status(run_dir, "interrupted", started="2026-01-01T00:00:00Z")
    return run_dir


def test_resume_refuses_a_shape_changing_override_before_touching_anything(interrupted_lstm_run, capsys) -> None:
    run_dir = interrupted_lstm_run
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    for override in ("model.params.hidden_size=16", "data.limit=20", "seed=7"):
        code, _, err = run_cli(["train", "--resume", str(run_dir), "--set", override, "--quiet"], capsys)
        assert code == 2 and "Traceback" not in err, err
        assert f"{override.split('=')[0]} cannot change on resume" in err and len(err.strip().splitlines()) == 1
    assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before  # still resumable as it was


def test_resume_with_another_model_is_one_line(interrupted_lstm_run, capsys) -> None:
    before = (interrupted_lstm_run / "config.yaml").read_bytes()
    for given in ("cnn", "gru"):
        code, _, err = run_cli(["train", given, "--resume", str(interrupted_lstm_run), "--quiet"], capsys)
        assert code == 2 and f"{given!r} is not this run's model (model.name '{given}', the run's 'lstm')" in err
        assert len(err.strip().splitlines()) == 1
    assert (interrupted_lstm_run / "config.yaml").read_bytes() == before
