"""A decoder-only transformer (GPT) with size presets, a KV cache and FLOP accounting.

Architecture (see docs/model.md for the reasons): pre-norm residual blocks with RMSNorm, rotary
position embeddings (no learned position table), causal self-attention through
`F.scaled_dot_product_attention` with optional grouped-query attention, a GELU MLP of 4x width,
no biases by default, and the token embedding tied to the output head by default.

Tied weights share one tensor, which safetensors' `save_file` refuses; save and load with
`safetensors.torch.save_model` / `load_model`, which store a shared tensor once.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from fineforge.model.config import check_types

log = logging.getLogger(__name__)

INIT_STD = 0.02  # GPT-2's initialisation of every weight matrix
MLP_RATIO = 4  # hidden width of the MLP relative to n_embd
# Upper bounds of a model's shape, far above any preset: a config (or a checkpoint's metadata) beyond
# them is refused before anything is allocated.
MAX_SHAPE = {"vocab_size": 1 << 22, "block_size": 1 << 16, "n_layer": 1024, "n_head": 1024, "n_embd": 1 << 16}
MAX_PARAMETERS = 10**11


@dataclass
class GPTConfig:
    """Shape and regularisation of a GPT. `n_kv_head=None` means one key/value head per query head."""

    vocab_size: int = 50304
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None
    dropout: float = 0.0
    bias: bool = False
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_types(self)
        for name, most in MAX_SHAPE.items():
            if not 0 < getattr(self, name) <= most:
                raise ValueError(f"GPTConfig.{name} must be in [1, {most}], got {getattr(self, name)}")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head dimension, got {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ValueError(f"{self.num_parameters():,} parameters, more than {MAX_PARAMETERS:,}")

    def num_parameters(self) -> int:
        """Distinct parameters of the model this config describes (a tied matrix counts once), computed
        without building it."""
        c, kv_width, linear = self.n_embd, 2 * self.n_kv_head * self.head_dim, self._linear_parameters
        block = 2 * c + linear(c, c + kv_width) + linear(c, c) + linear(c, MLP_RATIO * c) + linear(MLP_RATIO * c, c)
        embeddings = self.vocab_size * c * (1 if self.tie_embeddings else 2)
        return embeddings + self.n_layer * block + c

    def _linear_parameters(self, n_in: int, n_out: int) -> int:
        return n_in * n_out + (n_out if self.bias else 0)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """Plain JSON-serialisable fields (for checkpoint metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Rebuild from `to_dict()` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A named preset (see PRESETS) with some fields overridden, e.g. vocab_size of the tokenizer."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# CPU models default to the bytes tokenizer's 266 ids (256 bytes + 10 special tokens); GPT-2 shapes to
# GPT-2's 50,257 tokens padded to 50,304 (a multiple of 64, faster matmuls), as in nanoGPT. Override
# vocab_size with the tokenizer's `vocab_size` for any other tokenizer.
PRESETS: dict[str, dict] = {
    # nanoGPT's CPU Shakespeare configuration
    "tiny": dict(vocab_size=266, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # nanoGPT's shakespeare_char GPU configuration, still trainable on a CPU
    "small-cpu": dict(vocab_size=266, block_size=256, n_layer=6, n_head=6, n_embd=384),
    "gpt2-124m": dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768),
    "gpt2-350m": dict(vocab_size=50304, block_size=1024, n_layer=24, n_head=16, n_embd=1024),
    "gpt2-774m": dict(vocab_size=50304, block_size=1024, n_layer=36, n_head=20, n_embd=1280),
    "gpt2-1.6b": dict(vocab_size=50304, block_size=1024, n_layer=48, n_head=25, n_embd=1600),
}


class KVCache:
    """Keys and values of every layer for a batch of sequences, preallocated up to `max_len` positions."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # number of positions already stored

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values of one layer after the cached ones; return all of them."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions needed, {self.max_len} allocated")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as stored (called once per forward, after every layer wrote them)."""
        self.pos += n

    def reset(self) -> None:
        self.pos = 0

    def expand(self, batch_size: int) -> None:
        """Replicate a cache of batch 1 (a prefilled prompt) to `batch_size` sequences."""
        if self.batch_size != 1:
            raise ValueError(f"only a cache of batch 1 can be expanded, this one holds {self.batch_size}")
        self.k = self.k.expand(-1, batch_size, -1, -1, -1).contiguous()
        self.v = self.v.expand(-1, batch_size, -1, -1, -1).contiguous()


def rotary_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, shape (length, head_dim / 2)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension of x (B, H, T, D) by position."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        kv_dim = 2 * config.n_kv_head * config.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + kv_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        kv_width = self.n_kv_head * self.head_dim
        q, k, v = self.c_attn(x).split([C, kv_width, kv_width], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        start = 0
        if kv_cache is not None:
            start = kv_cache.pos
            k, v = kv_cache.update(self.layer, k, v)
        if attn_mask is not None:
            mask, causal = attn_mask, False  # the caller's (rows of different lengths in one batch)
        elif start == 0:
            mask, causal = None, True  # the usual square causal mask
        elif T == 1:
            mask, causal = None, False  # one new query sees every cached key
        else:
            # queries at positions start..start+T-1 see keys 0..their own position
            q_pos = torch.arange(start, start + T, device=x.device)[:, None]
            mask, causal = torch.arange(k.shape[2], device=x.device)[None, :] <= q_pos, False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, MLP_RATIO * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(MLP_RATIO * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin, kv_cache, attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer language model."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.RMSNorm(config.n_embd, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        # derived from the config, so not part of the saved weights
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) to keep the stream's variance flat
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) — (B, 1, V) with `last_only` — and the mean next-token loss when targets are given.

        Targets equal to -1 are ignored; `loss_mask` (B, T, 0/1) further restricts the loss to the
        positions where it is 1 (e.g. the assistant's tokens in SFT). With `kv_cache`, idx holds only
        the new tokens and the cache supplies (and receives) the earlier keys and values.

        Rows of different lengths in one batch (inference) pass `positions` (B, T), each token's rotary
        position in its own row, and `attn_mask` (B, 1, T, S) of the keys each query may see (True: seen),
        S counting the cached positions too; without them positions count from the cache's start and
        attention is causal.
        """
        x = self.hidden_states(idx, kv_cache, positions, attn_mask)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        if last_only:
            raise ValueError("loss needs logits at every position; do not pass last_only with targets")
        losses = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction="none"
        )
        weights = (targets.reshape(-1) != -1).float()
        if loss_mask is not None:
            if loss_mask.shape != targets.shape:
                raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} != targets {tuple(targets.shape)}")
            weights = weights * loss_mask.reshape(-1).float()
        loss = (losses * weights).sum() / weights.sum().clamp(min=1.0)
        return logits, loss

    def hidden_states(
        self,
        idx: torch.Tensor,
        kv_cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final normalised hidden states (B, T, C) that the language head projects onto the vocabulary;
        a scalar head (the reward model) reads them instead of the logits. The arguments as in `forward`."""
        T = idx.shape[1]
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} positions exceeds the model's context of {self.config.block_size}"
            )
        if positions is None:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        else:  # (B, 1, T, head_dim / 2): broadcast over heads
            cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        x = self.drop(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin, kv_cache, attn_mask)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.ln_f(x)

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty cache on the model's device and dtype, up to the model's context by default."""
        c = self.config
        p = self.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_kv_head, max_len or c.block_size, c.head_dim, p.device, p.dtype)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Distinct parameters (a tied matrix counts once); `non_embedding` leaves out the input table
        when it is a separate lookup (untied), since a lookup does no matmul."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        if non_embedding and not self.config.tie_embeddings:
            n -= self.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward) at full context, as in PaLM / nanoGPT MFU:
        6 N for the matmuls with the N weights, plus 12 L H Q T for attention scores and values."""
        c = self.config
        n = self.num_parameters(non_embedding=True)
        return 6 * n + 12 * c.n_layer * c.n_head * c.head_dim * c.block_size


def preset_table() -> str:
    """A markdown table of every preset's shape, parameter count and training FLOPs per token."""
    rows = [
        "| preset | layers | heads | dims | context | vocab | parameters | FLOPs/token (train) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PRESETS:
        config = GPTConfig.from_preset(name)
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = GPT(config)
        rows.append(
            f"| {name} | {config.n_layer} | {config.n_head} | {config.n_embd} | {config.block_size} "
            f"| {config.vocab_size} | {model.num_parameters():,} | {model.flops_per_token():,} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="GPT model presets")
    parser.add_argument("--presets", action="store_true", help="print the preset table (markdown)")
    args = parser.parse_args()
    if args.presets:
        print(preset_table())
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
