from __future__ import annotations

import pytest

from imdb_sentiment.config import ExperimentConfig, dump_config, parse_override, read_yaml
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.configure import configure, load_config


def test_defaults_validate_and_fill_model_params() -> None:
    config = configure({"model": {"name": "tfidf-lr"}})
    assert config.model.params["C"] == 8.0  # model defaults are filled in and recorded
    assert config.data.valid_fraction == 0.1


def test_overrides_parse_yaml_values() -> None:
    config = configure({}, ["training.learning_rate=3e-4", "model.name=tfidf-lr", "data.limit=100"])
    assert config.training.learning_rate == pytest.approx(3e-4)
    assert config.data.limit == 100
    assert parse_override("name=null") == (["name"], None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["training.learning_rate=0.8"], "training.learning_rate"),  # the write-up's GRU bug
        (["training.optimizer=sgd", "training.learning_rate=0.8"], "training.learning_rate"),
        (["training.epochs=0"], "training.epochs"),
        (["training.epoch=3"], "training.epoch"),
        (["data.valid_fraction=0.7"], "data.valid_fraction"),
        (["model.name=tfidf-lr", "model.params.C=-1"], "model.params.C"),
        (["model.name=tfidf-lr", "model.params.Cee=1"], "model.params.Cee"),
        (["training.objective.name=dropout"], "training.objective.name"),
        (["training.backend=trainer"], "training.backend"),  # HF Trainer cannot fit NBSVM
    ],
)
def test_bad_fields_are_named_in_one_line(overrides: list[str], field: str) -> None:
    with pytest.raises(UserError) as error:
        configure({}, overrides)
    message = str(error.value)
    assert field in message and "\n" not in message


def test_unknown_model_lists_registered_ones() -> None:
    with pytest.raises(UserError, match=r"Registered models: .*nbsvm"):
        configure({"model": {"name": "nope"}})


def test_load_config_from_yaml_and_model_name(tmp_path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("name: mine\nmodel:\n  name: nbsvm\n  params:\n    C: 0.5\n")
    config = load_config(str(path), ["seed=7"])
    assert (config.run_name, config.seed, config.model.params["C"]) == ("mine", 7, 0.5)
    assert load_config("tfidf-lr").model.name == "tfidf-lr"
    with pytest.raises(UserError, match="neither a config file nor a registered model"):
        load_config("not-a-thing")
    (tmp_path / "broken.yaml").write_text("model: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(tmp_path / "broken.yaml"))


def test_dump_round_trips() -> None:
    import yaml

    config = configure({"model": {"name": "nbsvm"}})
    assert ExperimentConfig.model_validate(yaml.safe_load(dump_config(config))) == config


def test_every_bundled_config_validates() -> None:
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        raw = read_yaml(path)
        configure(raw, for_training=False)  # well-formed
        try:  # and runnable here, unless it needs what this offline machine may lack: a hub checkpoint,
            configure(raw)  # a fetched LLM (imdb-sentiment llm fetch) or a running LLM server
        except UserError as exc:
            allowed = ("Hugging Face hub cannot be reached", "is not fetched yet", "cannot reach http://127.0.0.1")
            assert any(reason in str(exc) for reason in allowed), (path, exc)


def test_trainer_backend_rejected_for_word_models() -> None:
    with pytest.raises(UserError, match=r"training\.backend"):
        configure({"model": {"name": "cnn", "params": {"embeddings": "random"}}}, ["training.backend=trainer"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a tab before a key: yaml's own message is only "while scanning for the next token"
        (
            "model:\n  name: nbsvm\n\tparams: {}\n",
            "line 3, column 1: found character '\\t' that cannot start any token; YAML indents with spaces",
        ),
        ("model:\n  name: nbsvm\ndata: {limit: 10\ntraining: {}\n", "line 4, column 9: expected ',' or '}'"),
        ("model:\n  name: nbsvm\n  params: {C: @1}\n", "line 3, column 15: found character '@'"),
    ],
    ids=["tab", "unclosed-flow-mapping", "reserved-character"],
)
def test_yaml_syntax_error_names_file_line_and_column(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"Config file {path} is not valid YAML: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_flow_error_points_back_to_where_the_bracket_opened(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  name: nbsvm\n  params: [1, 2\ndata: {}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"line 4, column 5: .*flow sequence started at line 3, column 11"):
        load_config(str(path))
