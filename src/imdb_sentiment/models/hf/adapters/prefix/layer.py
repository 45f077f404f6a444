"""The trainable prefixes and the attention function that prepends them to every layer's keys / values."""

from __future__ import annotations

import torch
from torch import Tensor, nn

PREFIX_ATTENTION = "imdb-prefix-sdpa"  # the name registered with transformers' attention interfaces


class PrefixEncoder(nn.Module):
    """``length`` key / value vectors for every layer and head, optionally produced by an MLP from a
    smaller embedding (the paper's reparameterisation, which it found to train more stably)."""

    def __init__(
        self, num_layers: int, num_heads: int, head_dim: int, length: int, projection: int | None
    ) -> None:
        super().__init__()
        hidden = num_heads * head_dim
        self.shape = (length, num_layers, 2, num_heads, head_dim)
        out = num_layers * 2 * hidden
        if projection:
            self.embedding = nn.Embedding(length, hidden)
            self.transform: nn.Module = nn.Sequential(
                nn.Linear(hidden, projection), nn.Tanh(), nn.Linear(projection, out)
            )
        else:
            self.embedding = nn.Embedding(length, out)
            nn.init.normal_(self.embedding.weight, std=0.02)  # the scale of trained keys / values
            self.transform = nn.Identity()

    def forward(self) -> Tensor:
        """(length, layers, 2, heads, head_dim)."""
        return self.transform(self.embedding.weight).view(self.shape)

    def layer(self, index: int, batch: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Keys and values of one layer, shaped like the attention's: (batch, heads, length, head_dim)."""
        prefixes = self()[:, index].to(dtype)  # (length, 2, heads, head_dim)
        keys = prefixes[:, 0].transpose(0, 1).unsqueeze(0).expand(batch, -1, -1, -1)
        values = prefixes[:, 1].transpose(0, 1).unsqueeze(0).expand(batch, -1, -1, -1)
        return keys, values


def prefix_attention(
    module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, **kwargs
) -> tuple[Tensor, None]:
    """transformers' SDPA attention with the module's layer prefixes in front of its keys and values.
    The mask (SDPA's boolean form: True = attend, or None without padding) gains always-open columns."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    encoder: PrefixEncoder = module.__dict__["_prefix_encoder"]
    prefix_keys, prefix_values = encoder.layer(module.layer_idx, query.shape[0], key.dtype)
    key = torch.cat([prefix_keys, key], dim=2)
    value = torch.cat([prefix_values, value], dim=2)
    if attention_mask is not None:
        open_columns = attention_mask.new_ones((*attention_mask.shape[:-1], prefix_keys.shape[2]))
        if attention_mask.dtype != torch.bool:  # an additive float mask: 0 means attend
            open_columns = torch.zeros_like(open_columns)
        attention_mask = torch.cat([open_columns, attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_prefix_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PREFIX_ATTENTION, prefix_attention)
    AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)
