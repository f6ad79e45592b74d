"""The batched engine: different prompts in one batch give each row what it would get alone, with or without
the KV cache, across context shifts; per-row budgets, stop tokens, seeds and streaming."""

from __future__ import annotations

import pytest
import torch

from fineforge.model.decoding import draw
from fineforge.model.engine import LENGTH, STOP, Engine, Request, SamplingConfig, row_seed
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.ragged_batch import RaggedBatch, encode_windows, length_groups

BLOCK = 32
# rows of very different lengths: 1 token, a few, and the whole context
PROMPTS = [[72], [101, 108, 108, 111, 32, 119], list(range(40, 40 + BLOCK)), [7, 8, 9]]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model() -> GPT:
    """A small random model with scaled-up weights, so that its output varies and depends on the whole context."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny", block_size=BLOCK, tie_embeddings=False))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model.eval()


def alone(engine: Engine, request: Request, config: SamplingConfig) -> list[int]:
    return engine.generate_batch([request], config)[0].tokens


def test_padded_rows_get_the_logits_they_get_alone(model):
    """Left padding, per-row positions and the mask leave each row's logits as if it ran by itself."""
    prompts = [p[: BLOCK - 2] for p in PROMPTS]  # room for two more tokens
    batch, logits = RaggedBatch.encode(model, prompts)
    nxt = torch.tensor([[5], [6], [7], [8]])
    after = batch.extend(nxt)
    for i, prompt in enumerate(prompts):
        _, solo = RaggedBatch.encode(model, [prompt])
        torch.testing.assert_close(logits[i], solo[0], atol=1e-4, rtol=1e-4)
        _, solo_next = RaggedBatch.encode(model, [prompt + [int(nxt[i, 0])]])
        torch.testing.assert_close(after[i], solo_next[0], atol=1e-4, rtol=1e-4)
    # a row taken out and put back into another batch keeps its cache
    moved = RaggedBatch.concat([batch.select([3]), batch.select([1, 0])])  # lengths 4, 7, 2 after one token
    assert moved.lengths.tolist() == [4, 7, 2] and moved.pos == 7
    again = moved.extend(torch.tensor([[1], [2], [3]]))
    _, solo = RaggedBatch.encode(model, [PROMPTS[0] + [5, 3]])
    torch.testing.assert_close(again[2], solo[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_every_row_of_a_batch_gets_what_it_gets_alone(model, temperature):
    engine = Engine(model)
    # 3 * BLOCK new tokens: every row's context fills and shifts several times, at different steps
    config = SamplingConfig(max_new_tokens=3 * BLOCK, temperature=temperature, top_k=50, top_p=0.95)
    requests = [Request(p, seed=100 + i) for i, p in enumerate(PROMPTS)]
    cached = engine.generate_batch(requests, config)
    plain = engine.generate_batch(requests, SamplingConfig(**{**config.__dict__, "use_kv_cache": False}))
    assert [c.tokens for c in cached] == [c.tokens for c in plain]
    for request, completion in zip(requests, cached, strict=True):
        assert completion.tokens == alone(engine, request, config)
        assert len(completion.tokens) == 3 * BLOCK and completion.finish_reason == LENGTH
        assert completion.loss_mask == [1] * len(completion.tokens)
    assert len({tuple(c.tokens) for c in cached}) == len(PROMPTS)


def test_samples_of_one_prompt_share_its_encoding_and_differ(model):
    engine = Engine(model)
    config = SamplingConfig(max_new_tokens=20, temperature=1.0, seed=3)
    requests = [Request(p) for p in PROMPTS[:2] for _ in range(3)]
    completions = engine.generate_batch(requests, config)
    assert len({tuple(c.tokens) for c in completions}) == 6
    # row r is seeded with row_seed(seed, r): the same row alone, given that seed, samples the same tokens
    for r, (request, completion) in enumerate(zip(requests, completions, strict=True)):
        assert completion.tokens == alone(engine, Request(request.prompt, seed=row_seed(3, r)), config)
    assert engine.generate_batch(requests, config)[4].tokens == completions[4].tokens
    assert engine.generate_batch(requests, SamplingConfig(**{**config.__dict__, "seed": 4}))[4].tokens != \
        completions[4].tokens


def test_rows_have_their_own_budgets_and_stop_tokens(model):
    engine = Engine(model)
    config = SamplingConfig(max_new_tokens=30, temperature=0)
    free = [c.tokens for c in engine.generate_batch([Request(p) for p in PROMPTS], config)]
    stop = free[1][6]
    requests = [
        Request(PROMPTS[0], max_new_tokens=5),
        Request(PROMPTS[1], stop_tokens=[stop]),
        Request(PROMPTS[2], max_new_tokens=0),
        Request(PROMPTS[3]),
    ]
    out = engine.generate_batch(requests, config)
    assert out[0].tokens == free[0][:5] and out[0].finish_reason == LENGTH
    assert out[1].tokens == free[1][: free[1].index(stop)] and out[1].finish_reason == STOP and out[1].stopped
    assert out[2].tokens == [] and out[2].finish_reason == LENGTH
    assert out[3].tokens == free[3] and not out[3].stopped


def test_stream_batch_yields_each_rows_tokens_as_they_come(model):
    engine = Engine(model)
    config = SamplingConfig(max_new_tokens=12, temperature=1.0, seed=5)
    requests = [Request(PROMPTS[1], max_new_tokens=4), Request(PROMPTS[3])]
    stream = engine.stream_batch(requests, config)
    first = next(stream)  # available before the rest is computed
    assert sorted(e.row for e in first) == [0, 1] and all(len(e.tokens) == 1 for e in first)
    events = first + [e for step in stream for e in step]
    streamed = [[t for e in events if e.row == r for t in e.tokens] for r in range(2)]
    assert streamed == [c.tokens for c in engine.generate_batch(requests, config)]
    assert [e.finish_reason for e in events if e.finish_reason] == [LENGTH, LENGTH]
    assert not any(e.inserted for e in events)


def test_row_seeds_are_distinct_and_stable():
    seeds = {row_seed(s, r) for s in range(20) for r in range(50)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert row_seed(7, 1) == row_seed(7, 1) != row_seed(8, 0)


def test_bad_requests_fail_before_anything_runs(model):
    engine = Engine(model)
    with pytest.raises(ValueError, match="no requests"):
        engine.stream_batch([], SamplingConfig())
    with pytest.raises(ValueError, match="empty prompt"):
        engine.stream_batch([Request([1]), Request([])], SamplingConfig())
    with pytest.raises(ValueError, match="outside the vocabulary of 266"):
        engine.generate_batch([Request([1, 266])], SamplingConfig())
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        Request([1], max_new_tokens=-1)


def test_draw_samples_each_row_from_its_distribution():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.5, 0.0, 0.5]])
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    draws = torch.tensor([draw(probs.log(), 1.0, None, None, generators) for _ in range(6000)])
    for row, expected in enumerate(probs):
        frequency = torch.bincount(draws[:, row], minlength=5) / len(draws)
        assert torch.allclose(frequency, expected, atol=0.02), (row, frequency)  # 3.5 standard errors
        assert frequency[expected == 0].sum() == 0  # never a token of probability 0
    # top-k and top-p filter before the draw; greedy takes the most likely token
    top2 = {tuple(draw(probs.log(), 1.0, 2, None, generators)) for _ in range(200)}
    assert top2 == {(3, 2), (3, 4), (2, 2), (2, 4)}
    assert draw(probs.log(), 0.0, None, None, generators) == [3, 2]


def test_windows_are_encoded_in_groups_of_similar_length(model):
    assert length_groups([10, 100, 95, 12, 90, 11, 30]) == [[1, 2, 4], [6], [3, 5, 0]]
    assert length_groups([100, 95, 90, 50]) == [[0, 1, 2, 3]]  # 16 % padding
    assert length_groups([7, 7, 7]) == [[0, 1, 2]]
    windows = [PROMPTS[1], PROMPTS[0], PROMPTS[3], PROMPTS[1], PROMPTS[2]]
    batch, logits = encode_windows(model, windows)
    assert batch.lengths.tolist() == [len(w) for w in windows]
    _, together = RaggedBatch.encode(model, windows)
    torch.testing.assert_close(logits, together, atol=1e-4, rtol=1e-4)
