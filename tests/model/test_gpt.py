"""The GPT model: shapes, causality, KV cache, masked loss, FLOP accounting, safetensors, learning on real text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_model, save_file, save_model
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from fineforge.model.gpt import GPT, PRESETS, GPTConfig, main, preset_table
from fineforge.model.optim import adamw
from fineforge.model.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("tiny", **overrides))


def test_parameter_count_matches_the_shape_formula_for_every_preset():
    for name in PRESETS:
        c = GPTConfig.from_preset(name)
        with torch.device("meta"):
            model = GPT(c)
        d, L = c.n_embd, c.n_layer
        # per block: qkv 3d^2, proj d^2, MLP 8d^2, two norms; then the final norm and the tied embedding
        expected = L * (12 * d * d + 2 * d) + d + c.vocab_size * d
        assert model.num_parameters() == expected, name


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": False}, {"bias": True}, {"n_kv_head": 1}])
def test_config_counts_parameters_without_building_the_model(overrides):
    """What checkpoint loading compares with the weight file before it allocates anything."""
    for name in PRESETS:
        config = GPTConfig.from_preset(name, **overrides)
        with torch.device("meta"):
            assert config.num_parameters() == GPT(config).num_parameters(), name


def test_shapes_beyond_the_bounds_are_refused():
    with pytest.raises(ValueError, match=r"n_layer must be in \[1, 1024\], got 4096"):
        GPTConfig(n_layer=4096)
    with pytest.raises(ValueError, match=r"block_size must be in \[1, 65536\]"):
        GPTConfig(block_size=10**9)
    with pytest.raises(ValueError, match="parameters, more than 100,000,000,000"):
        GPTConfig(n_layer=1024, n_embd=65536, n_head=512)
    with pytest.raises(ValueError, match="field 'n_embd': expected int, got 768.0"):
        GPTConfig(n_embd=768.0)


def test_gpt2_presets_have_gpt2_sizes():
    # GPT-2's published sizes: 124M, 350M, 774M, 1.5B (counting its 1,024-row position table we do not have)
    published = {"gpt2-124m": 124e6, "gpt2-350m": 355e6, "gpt2-774m": 774e6, "gpt2-1.6b": 1.558e9}
    for name, size in published.items():
        with torch.device("meta"):
            n = GPT(GPTConfig.from_preset(name)).num_parameters()
        assert abs(n - size) / size < 0.02, (name, n)


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": False}, {"n_kv_head": 2}])
def test_flops_per_token_matches_counted_flops(overrides):
    model = tiny(**overrides)
    T = model.config.block_size
    x = torch.randint(0, model.config.vocab_size, (2, T))
    # the math backend runs attention as plain matmuls, which the counter sees
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    counted = counter.get_total_flops() / x.numel()
    assert abs(counted - model.flops_per_token()) / counted < 0.01


def test_untied_model_counts_its_input_table_but_not_its_flops():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    table = tied.config.vocab_size * tied.config.n_embd
    assert untied.num_parameters() == tied.num_parameters() + table
    assert untied.flops_per_token() == tied.flops_per_token()
    assert tied.lm_head.weight is tied.wte.weight and untied.lm_head.weight is not untied.wte.weight


def test_future_tokens_do_not_change_earlier_logits():
    model = tiny().eval()
    x = torch.randint(0, 256, (1, 40))
    y = x.clone()
    y[0, 30:] = (y[0, 30:] + 1) % 256
    lx, _ = model(x)
    ly, _ = model(y)
    assert torch.allclose(lx[0, :30], ly[0, :30], atol=1e-5)
    assert not torch.allclose(lx[0, 30:], ly[0, 30:], atol=1e-3)


@pytest.mark.parametrize("n_kv_head", [None, 2, 1])
def test_kv_cache_in_chunks_equals_one_full_pass(n_kv_head):
    model = tiny(n_kv_head=n_kv_head).eval()
    x = torch.randint(0, 256, (3, 50))
    full, _ = model(x)
    cache = model.new_kv_cache(batch_size=3)
    pieces = [model(x[:, a:b], kv_cache=cache)[0] for a, b in [(0, 17), (17, 30), (30, 31), (31, 50)]]
    assert cache.pos == 50
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_last_only_gives_the_last_position():
    model = tiny().eval()
    x = torch.randint(0, 256, (2, 20))
    full, _ = model(x)
    last, _ = model(x, last_only=True)
    assert last.shape == (2, 1, model.config.vocab_size)
    assert torch.allclose(last[:, 0], full[:, -1], atol=1e-5)


def test_loss_mask_restricts_the_loss_to_masked_in_positions():
    model = tiny().eval()
    x = torch.randint(0, 256, (2, 16))
    targets = torch.randint(0, 256, (2, 16))
    mask = torch.zeros(2, 16)
    mask[0, 5:9] = 1
    mask[1, 12:] = 1
    logits, loss = model(x, targets, loss_mask=mask)
    picked = mask.bool()
    expected = torch.nn.functional.cross_entropy(logits[picked], targets[picked])
    assert torch.allclose(loss, expected, atol=1e-5)
    _, unmasked = model(x, targets)
    _, all_ones = model(x, targets, loss_mask=torch.ones(2, 16))
    assert torch.allclose(unmasked, all_ones) and not torch.allclose(unmasked, loss)
    with pytest.raises(ValueError, match="loss_mask shape"):
        model(x, targets, loss_mask=torch.ones(2, 15))


def test_targets_of_minus_one_are_ignored():
    model = tiny().eval()
    x = torch.randint(0, 256, (1, 16))
    targets = torch.randint(0, 256, (1, 16))
    ignored = targets.clone()
    ignored[0, :10] = -1
    mask = torch.zeros(1, 16)
    mask[0, 10:] = 1
    assert torch.allclose(model(x, ignored)[1], model(x, targets, loss_mask=mask)[1])


def test_bad_configs_and_inputs_fail_clearly():
    with pytest.raises(ValueError, match="unknown model preset 'gpt5'"):
        GPTConfig.from_preset("gpt5")
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        GPTConfig.from_preset("tiny", n_kv_head=3)
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({**GPTConfig().to_dict(), "n_experts": 8})
    model = tiny()
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_config_round_trips_through_a_dict():
    c = GPTConfig.from_preset("small-cpu", vocab_size=300, n_kv_head=2)
    assert GPTConfig.from_dict(c.to_dict()) == c


def test_tied_weights_save_as_safetensors(tmp_path):
    model = tiny()
    # the shared tensor is why save_file on a state dict refuses; save_model stores it once
    with pytest.raises(RuntimeError, match="share memory"):
        save_file(model.state_dict(), str(tmp_path / "refused.safetensors"))
    save_model(model, str(tmp_path / "model.safetensors"))
    other = tiny()
    torch.nn.init.zeros_(other.wte.weight)
    missing, unexpected = load_model(other, str(tmp_path / "model.safetensors"))
    assert not missing and not unexpected
    assert other.lm_head.weight is other.wte.weight
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_optimizer_decays_matrices_only():
    model = tiny(bias=True)
    opt = adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_parameters()


def test_tiny_model_learns_shakespeare_bytes(shared_data):
    tok = load_tokenizer("bytes")
    text = (shared_data / "corpora" / "tinyshakespeare.txt").read_text()
    data = torch.tensor(tok.encode(text[:200_000]))
    model = tiny(vocab_size=tok.vocab_size, n_layer=2)
    opt = adamw(model, weight_decay=0.1, lr=1e-2, betas=(0.9, 0.99), device_type="cpu")
    g = torch.Generator().manual_seed(0)
    T = model.config.block_size
    losses = []
    for _ in range(100):
        ix = torch.randint(0, len(data) - T - 1, (12,), generator=g)
        x = torch.stack([data[i : i + T] for i in ix])
        y = torch.stack([data[i + 1 : i + T + 1] for i in ix])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # from uniform over 266 ids (ln 266 = 5.6) to well below the unigram entropy of English bytes (~3.3)
    assert losses[0] > 5.0
    assert sum(losses[-10:]) / 10 < 3.0


def test_presets_table_in_docs_is_the_code_output(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fineforge.model.gpt", "--presets"])
    main()
    out = capsys.readouterr().out.strip()
    assert out == preset_table()
    assert out in (ROOT / "docs" / "model.md").read_text()
