"""The inference engine: KV cache vs none, sampling filters, several samples, stop tokens, streaming."""

from __future__ import annotations

import inspect

import pytest
import torch

from fineforge.model.engine import CONTEXT_KEEP, Engine, SamplingConfig, filter_logits
from fineforge.model.gpt import GPT, GPTConfig

BLOCK = 32
PROMPT = [72, 101, 108, 108, 111]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Decoding a tiny model is a long chain of small ops: on a shared machine, intra-op threads only wait
    for each other, so these tests run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> GPT:
    """A small random model whose weights are scaled up so that its greedy output varies and depends on
    the whole context (a freshly initialised one repeats its last token)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", block_size=BLOCK, tie_embeddings=False))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model.eval()


def test_greedy_tokens_are_identical_with_and_without_the_cache(model):
    engine = Engine(model)
    # 3 * BLOCK tokens: the context fills and shifts several times
    n = 3 * BLOCK
    cached = engine.generate(PROMPT, SamplingConfig(max_new_tokens=n, temperature=0, use_kv_cache=True))
    plain = engine.generate(PROMPT, SamplingConfig(max_new_tokens=n, temperature=0, use_kv_cache=False))
    assert len(cached[0].tokens) == n
    assert cached[0].tokens == plain[0].tokens
    assert len(set(cached[0].tokens)) > 10  # a varied sequence, not one token repeated


def test_seeded_sampling_is_reproducible_and_matches_across_cache_modes(model):
    engine = Engine(model)
    config = dict(max_new_tokens=24, temperature=0.8, top_k=40, top_p=0.95, num_samples=3)
    a = engine.generate(PROMPT, SamplingConfig(**config, seed=7))
    b = engine.generate(PROMPT, SamplingConfig(**config, seed=7, use_kv_cache=False))
    c = engine.generate(PROMPT, SamplingConfig(**config, seed=8))
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert [s.tokens for s in a] != [s.tokens for s in c]
    # several samples of one prompt in one batch differ from each other
    assert len({tuple(s.tokens) for s in a}) == 3


def test_greedy_samples_of_one_batch_agree_and_top_k_1_is_greedy(model):
    engine = Engine(model)
    greedy = engine.generate(PROMPT, SamplingConfig(max_new_tokens=20, temperature=0, num_samples=3))
    assert greedy[0].tokens == greedy[1].tokens == greedy[2].tokens
    top1 = engine.generate(PROMPT, SamplingConfig(max_new_tokens=20, temperature=1.5, top_k=1, seed=3))
    assert top1[0].tokens == greedy[0].tokens


def test_stop_token_ends_a_sample_and_is_not_emitted(model):
    engine = Engine(model)
    full = engine.generate(PROMPT, SamplingConfig(max_new_tokens=40, temperature=0))[0].tokens
    stop = full[10]
    first = full.index(stop)
    out = engine.generate(PROMPT, SamplingConfig(max_new_tokens=40, temperature=0, stop_tokens=(stop,)))[0]
    assert out.stopped and out.tokens == full[:first]
    assert not engine.generate(PROMPT, SamplingConfig(max_new_tokens=5, temperature=0))[0].stopped


def test_samples_stop_independently(model):
    engine = Engine(model)
    config = SamplingConfig(max_new_tokens=60, temperature=1.0, num_samples=4, seed=1)
    free = engine.generate(PROMPT, config)
    stop = free[0].tokens[5]
    stopped = engine.generate(PROMPT, SamplingConfig(**{**config.__dict__, "stop_tokens": (stop,)}))
    for f, s in zip(free, stopped, strict=True):
        if stop in f.tokens:
            assert s.stopped and s.tokens == f.tokens[: f.tokens.index(stop)]
        else:
            assert not s.stopped and s.tokens == f.tokens
    assert stopped[0].stopped


def test_stream_yields_step_by_step_what_generate_returns(model):
    engine = Engine(model)
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, num_samples=2, seed=5)
    stream = engine.stream(PROMPT, config)
    assert inspect.isgenerator(stream)
    first = next(stream)  # available before the rest is computed
    steps = [first, *stream]
    assert len(steps) == 12 and all(len(step) == 2 for step in steps)
    samples = engine.generate(PROMPT, config)
    assert [[step[i] for step in steps] for i in range(2)] == [s.tokens for s in samples]


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_full_context_shifts_to_its_newest_tokens(model, use_kv_cache):
    engine = Engine(model)
    full = engine.generate(PROMPT, SamplingConfig(max_new_tokens=2 * BLOCK, temperature=0))[0].tokens
    seq = PROMPT + full
    # the first token that does not fit is predicted from the newest CONTEXT_KEEP of the context only
    keep = int(BLOCK * CONTEXT_KEEP)
    window = seq[BLOCK + 1 - keep : BLOCK + 1]
    after = full[BLOCK + 1 - len(PROMPT) :]
    config = SamplingConfig(max_new_tokens=len(after), temperature=0, use_kv_cache=use_kv_cache)
    assert engine.generate(window, config)[0].tokens == after


def test_long_prompt_keeps_its_last_tokens(model):
    engine = Engine(model)
    long_prompt = list(range(1, 3 * BLOCK))
    config = SamplingConfig(max_new_tokens=8, temperature=0)
    assert engine.generate(long_prompt, config)[0].tokens == engine.generate(long_prompt[-BLOCK:], config)[0].tokens


def test_padded_vocabulary_rows_are_never_sampled(model):
    engine = Engine(model, vocab_size=100)
    samples = engine.generate([1, 2, 3], SamplingConfig(max_new_tokens=50, temperature=2.0, num_samples=4, seed=0))
    assert all(0 <= t < 100 for s in samples for t in s.tokens)


def test_filter_logits_keeps_top_k_and_the_top_p_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    kept = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2, top_p=None)) == [1, 3]
    assert kept(filter_logits(logits, top_k=None, top_p=0.5)) == [1]
    assert kept(filter_logits(logits, top_k=None, top_p=0.7)) == [1, 3]
    assert kept(filter_logits(logits, top_k=None, top_p=0.81)) == [1, 2, 3]
    assert kept(filter_logits(logits, top_k=None, top_p=1.0)) == [0, 1, 2, 3]


def test_bad_requests_fail_clearly(model):
    engine = Engine(model)
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate([], SamplingConfig())
    with pytest.raises(ValueError, match="outside the vocabulary of 266"):
        engine.generate([1, 999], SamplingConfig())
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        SamplingConfig(num_samples=0)
    with pytest.raises(ValueError, match="exceeds the model's 266"):
        Engine(model, vocab_size=300)
