"""Parameter-efficient fine-tuning: every method trains only its adapter (and the head), pools the
review's own tokens, saves only the adapter, reloads to the same predictions; LoRA merges."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from helpers import THREE_CLASSES, tiny_reviews, tiny_three_class_reviews

from imdb_sentiment.config import TrainingConfig
from imdb_sentiment.errors import UserError
from imdb_sentiment.models.base import FitContext, SentimentModel
from imdb_sentiment.models.configure import configure
from imdb_sentiment.models.hf.adapters import (
    ADAPTER_METHODS,
    AdapterMethod,
    AdapterSettings,
    AdapterTarget,
    register_adapter_method,
)
from imdb_sentiment.models.hf.model import HFClassifier

METHODS = {
    "lora": {"method": "lora", "rank": 4, "alpha": 8},
    "p-tuning": {"method": "p-tuning", "virtual_tokens": 4, "encoder_hidden_size": 16},
    "prefix": {"method": "prefix", "prefix_length": 4, "projection": 16},
    "prompt": {"method": "prompt", "virtual_tokens": 4},
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight checkpoints with MiniLM's tokenizer, saved like downloaded models."""
    from transformers import AutoModel, BertConfig, DebertaV2Config, RobertaConfig

    from imdb_sentiment.models.hf.encoder import load_tokenizer
    from imdb_sentiment.models.hf.hub import minilm_path

    tokenizer = load_tokenizer(minilm_path())
    sizes = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    folders = {}
    for name, config in (("bert", BertConfig(**sizes)), ("roberta", RobertaConfig(**sizes)),
                         ("deberta-v2", DebertaV2Config(**sizes))):  # fmt: skip
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


def training(**changes) -> TrainingConfig:
    return TrainingConfig(**{"epochs": 1, "max_steps": 4, "batch_size": 8, "learning_rate": 1e-2, "threads": 1,
                             "early_stopping_patience": None, **changes})  # fmt: skip


def fitted(checkpoint: Path, adapter: dict | None, pooling: str = "mean", **params) -> HFClassifier:
    model = HFClassifier({"checkpoint": str(checkpoint), "max_length": 32, "pooling": pooling, "adapter": adapter,
                          **params})  # fmt: skip
    model.fit(tiny_reviews(32, 0), tiny_reviews(8, 1), FitContext(training=training(), show_progress=False))
    return model


def base_state(model: HFClassifier) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return {k: v.clone() for k, v in AutoModel.from_pretrained(model.params.checkpoint).state_dict().items()}


def plain_name(name: str) -> str:
    """The checkpoint's own name of a parameter inside our network and peft's wrappers."""
    for wrapper in ("backbone.", "base_model.", "model."):
        name = name.removeprefix(wrapper)
    return name.replace(".base_layer.", ".")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("method", list(METHODS))
def test_only_the_adapter_and_head_train_and_the_saved_adapter_reloads(
    method: str, pooling: str, checkpoints, tmp_path
) -> None:
    model = fitted(checkpoints["bert"], METHODS[method], pooling)
    trainable = {name for name, p in model.network.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") or "lora_" in name or "prompt" in name or "prefix" in name
                             for name in trainable), sorted(trainable)  # fmt: skip
    assert 0 < model.num_trainable_parameters() < 0.2 * model.num_parameters()

    # the frozen base is bit-identical to the checkpoint it came from
    original = base_state(model)
    current = {
        plain_name(name): value for name, value in model.network.named_parameters() if not value.requires_grad
    }
    compared = 0
    for name, value in original.items():
        if name in current and "lora_" not in name:
            torch.testing.assert_close(current[name], value, rtol=0, atol=0)
            compared += 1
    assert compared == len(original), (compared, len(original))

    texts = tiny_reviews(10, 2).texts
    probabilities = model.predict_proba(texts)
    one_by_one = np.concatenate([model.predict_proba([text], batch_size=1) for text in texts])
    np.testing.assert_allclose(one_by_one, probabilities, atol=1e-4)  # padding never reaches the pooling

    model.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    assert (saved / "adapter").is_dir() and not (saved / "hf_model").exists(), "only the adapter is saved"
    assert model.saved_sizes(saved)["adapter_size_mb"] < 1.0
    loaded = SentimentModel.load(saved)
    np.testing.assert_allclose(loaded.predict_proba(texts), probabilities, atol=1e-5)


def test_virtual_tokens_are_not_pooled(checkpoints) -> None:
    """With prompt tuning the backbone returns virtual + real positions; cls reads the real [CLS]."""
    model = fitted(checkpoints["bert"], METHODS["prompt"], "cls")
    batch = model.encoder.collate([{"input_ids": ids} for ids in model.encoder.encode(["a great film"])])
    with torch.no_grad():
        hidden = model.network.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        features = model.network(batch).features
    assert hidden.last_hidden_state.shape[1] == batch["input_ids"].shape[1] + 4
    torch.testing.assert_close(features, hidden.last_hidden_state[:, 4])


def test_prefix_tuning_works_on_roberta_and_refuses_deberta_before_training(checkpoints) -> None:
    model = fitted(checkpoints["roberta"], METHODS["prefix"], "mean")
    assert model.predict_proba(["a great film"]).shape == (1, 2)
    config = {"model": {"name": "hf", "params": {"checkpoint": str(checkpoints["deberta-v2"]), "pooling": "mean",
                                                 "adapter": METHODS["prefix"]}}}  # fmt: skip
    with pytest.raises(UserError, match=r"model\.params\.adapter: prefix tuning does not support 'deberta-v2'"):
        configure(config)


def test_lora_merges_into_the_base_with_the_same_predictions(checkpoints) -> None:
    model = fitted(checkpoints["bert"], METHODS["lora"], "mean")
    texts = tiny_reviews(10, 3).texts
    before = model.predict_proba(texts)
    merged = model.merged()
    assert merged.params.adapter is None
    assert not any("lora_" in name for name, _ in merged.network.named_parameters())
    np.testing.assert_allclose(merged.predict_proba(texts), before, atol=1e-5)
    with pytest.raises(UserError, match="only lora can be merged"):
        fitted(checkpoints["bert"], METHODS["prompt"], "mean").merged()


def test_lora_with_the_checkpoints_own_head(checkpoints, tmp_path) -> None:
    model = fitted(checkpoints["bert"], METHODS["lora"], "model")
    trainable = [name for name, p in model.network.named_parameters() if p.requires_grad]
    assert any("classifier" in name for name in trainable) and any("lora_" in name for name in trainable)
    model.save(tmp_path / "saved")
    np.testing.assert_allclose(SentimentModel.load(tmp_path / "saved").predict_proba(["great"]),
                               model.predict_proba(["great"]), atol=1e-5)  # fmt: skip


def test_lora_with_the_checkpoints_own_head_on_three_classes(checkpoints, tmp_path) -> None:
    """peft's SEQ_CLS head (modules_to_save) has one output per class, is saved with the adapter,
    restored at that size, and merges."""
    # fp32: on a bf16 host merging's rounding moves a probability by ~5e-5, beyond the 1e-5 compared here
    model = HFClassifier({"checkpoint": str(checkpoints["bert"]), "max_length": 32, "pooling": "model",
                          "adapter": METHODS["lora"], "inference_precision": "fp32"})  # fmt: skip
    model.fit(tiny_three_class_reviews(32, 0), tiny_three_class_reviews(9, 1),
              FitContext(training=training(), show_progress=False))  # fmt: skip
    heads = [
        module
        for name, module in model.network.named_modules()
        if name.endswith("classifier.modules_to_save.default")
    ]
    assert heads and heads[0].out_features == 3 and heads[0].weight.requires_grad
    texts = tiny_three_class_reviews(9, 2).texts
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (9, 3)
    model.save(tmp_path / "saved")
    loaded = SentimentModel.load(tmp_path / "saved")
    assert loaded.classes == THREE_CLASSES
    np.testing.assert_allclose(loaded.predict_proba(texts), probabilities, atol=1e-5)
    merged = model.merged()
    assert merged.classes == THREE_CLASSES
    np.testing.assert_allclose(merged.predict_proba(texts), probabilities, atol=1e-5)


def test_config_errors_name_the_field(checkpoints) -> None:
    with pytest.raises(UserError, match=r"model\.params\.pooling: prompt"):
        configure({"model": {"name": "minilm", "params": {"pooling": "model", "adapter": {"method": "prompt"}}}})
    with pytest.raises(UserError, match=r"model\.params\.adapter: lora adapts pretrained weights"):
        configure({"model": {"name": "bert-scratch", "params": {"adapter": {"method": "lora"}}}})
    with pytest.raises(UserError, match=r"model\.params\.adapter\.rank"):
        configure({"model": {"name": "minilm", "params": {"adapter": {"method": "lora", "rank": 0}}}})
    with pytest.raises(UserError, match=r"model\.params\.adapter: method must be one of lora, p-tuning"):
        configure({"model": {"name": "minilm", "params": {"adapter": {"method": "ia3"}}}})
    with pytest.raises(UserError, match=r"model\.params\.adapter: llm-sft supports lora \(or null\), not prompt"):
        configure({"model": {"name": "llm-sft", "params": {"adapter": {"method": "prompt"}}}}, for_training=False)


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_an_int8_base_trains_its_adapter_on_cpu(method: str, checkpoints, tmp_path) -> None:
    model = fitted(checkpoints["bert"], METHODS[method], "mean", quantize_base="int8")
    query = next(m for name, m in model.network.named_modules() if name.endswith("layer.0.attention.self.query"))
    weight = getattr(query, "base_layer", query).weight
    assert getattr(weight, "qdata", weight).dtype == torch.int8, type(weight)  # torchao's Int8Tensor
    texts = tiny_reviews(6, 4).texts
    probabilities = model.predict_proba(texts)
    model.save(tmp_path / "saved")
    np.testing.assert_allclose(
        SentimentModel.load(tmp_path / "saved").predict_proba(texts), probabilities, atol=1e-5
    )
    with pytest.raises(UserError, match=r"model\.params\.quantize_base"):
        configure({"model": {"name": "minilm", "params": {"quantize_base": "int8"}}})


# ------------------------------------------------------------------ a method registered from outside
class BitFitAdapter(AdapterSettings):
    """BitFit (Ben Zaken et al. 2021): train the bias terms only."""

    method: Literal["bitfit"] = "bitfit"


def apply_bitfit(backbone: torch.nn.Module, settings: BitFitAdapter, target: AdapterTarget) -> torch.nn.Module:
    backbone.requires_grad_(False)
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_(name.endswith(".bias"))
    return backbone


def save_bitfit(backbone: torch.nn.Module, settings: BitFitAdapter, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({name: p.detach().contiguous() for name, p in backbone.named_parameters() if p.requires_grad},
              str(folder / "biases.safetensors"))  # fmt: skip


def load_bitfit(backbone: torch.nn.Module, settings: BitFitAdapter, folder: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    backbone = apply_bitfit(backbone, settings, None)
    backbone.load_state_dict(load_file(str(folder / "biases.safetensors")), strict=False)
    return backbone


@pytest.fixture
def bitfit():
    """Registered the way a method's own module registers it: no other file names it."""
    method = register_adapter_method(AdapterMethod(
        settings=BitFitAdapter, apply=apply_bitfit, load=load_bitfit, save=save_bitfit, merge=lambda backbone: backbone,
    ))  # fmt: skip
    yield method
    del ADAPTER_METHODS["bitfit"]


def test_a_method_registered_by_its_own_module_validates_trains_saves_and_merges(bitfit, checkpoints, tmp_path):
    config = configure({"model": {"name": "hf", "params": {"checkpoint": str(checkpoints["bert"]),
                                                              "pooling": "mean", "adapter": {"method": "bitfit"}}}})  # fmt: skip
    assert config.model.params["adapter"] == {"method": "bitfit"}
    with pytest.raises(UserError, match=r"model\.params\.adapter\.rank: unknown field"):
        configure({"model": {"name": "minilm", "params": {"adapter": {"method": "bitfit", "rank": 2}}}})
    with pytest.raises(
        UserError, match=r"model\.params\.pooling: bitfit does not train the checkpoint's own classifier"
    ):
        configure({"model": {"name": "minilm", "params": {"pooling": "model", "adapter": {"method": "bitfit"}}}})

    model = fitted(checkpoints["bert"], {"method": "bitfit"}, "mean")
    trainable = {name for name, p in model.network.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") or name.endswith(".bias") for name in trainable)
    texts = tiny_reviews(6, 5).texts
    probabilities = model.predict_proba(texts)
    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "adapter" / "biases.safetensors").is_file()
    assert not (tmp_path / "saved" / "hf_model").exists(), "only the adapter is saved"
    np.testing.assert_allclose(
        SentimentModel.load(tmp_path / "saved").predict_proba(texts), probabilities, atol=1e-5
    )
    np.testing.assert_allclose(model.merged().predict_proba(texts), probabilities, atol=1e-5)


def test_every_method_lives_in_its_own_module_and_the_tree_never_branches_on_its_name() -> None:
    from imdb_sentiment.models.hf.adapters import ADAPTER_METHODS

    assert sorted(ADAPTER_METHODS) == ["lora", "p-tuning", "prefix", "prompt"]
    for name, method in ADAPTER_METHODS.items():
        assert method.settings.__module__.endswith(name.replace("-", "_")), (name, method.settings.__module__)
    source = Path(__file__).resolve().parents[2] / "src" / "imdb_sentiment"
    for path in source.rglob("*.py"):
        if "adapters" in path.parts:
            continue
        text = path.read_text()
        for pattern in (
            'method == "',
            "method in (",
            "isinstance(params.adapter",
            "LoraAdapter)",
            "PrefixAdapter",
        ):
            assert pattern not in text, f"{path} branches on the adapter method ({pattern})"
