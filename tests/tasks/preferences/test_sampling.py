"""Sampling K chat completions per prompt from a real (tiny) checkpoint, and storing them once."""

from __future__ import annotations

import json

import pytest

from fineforge.model.chat import render_prompt
from fineforge.model.checkpoint import load_model
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.tokenizer import EOT, IM_END, load_tokenizer
from fineforge.tasks.preferences.config import RankingConfig
from fineforge.tasks.preferences.prompts import RankingPrompt
from fineforge.tasks.preferences.sampling import (
    CompletionSampler,
    SampledPrompt,
    SampleStore,
    completion_id,
    prompt_seed,
)
from testkit.checkpoints import tiny_bytes_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PRIME = RankingPrompt("p-1", [{"role": "user", "content": "Name a prime number."}])
HELLO = RankingPrompt("p-2", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_bytes_checkpoint(tmp_path_factory.mktemp("run"))


def config(run_dir, tmp_path, **overrides) -> RankingConfig:
    prompts = tmp_path / "prompts.jsonl"
    prompts.touch()
    values = {"checkpoint": str(run_dir), "prompts": str(prompts), "dataset": str(tmp_path / "rankings.jsonl"),
              "num_completions": 4, "sampling": {"max_new_tokens": 20, "temperature": 1.0, "seed": 5}}
    return RankingConfig.model_validate(values | overrides)


def test_completions_are_the_engines_samples_of_the_chat_prompt_ending_at_im_end(run_dir, tmp_path):
    sampled = CompletionSampler(config(run_dir, tmp_path)).sample(HELLO)

    tokenizer = load_tokenizer("bytes")
    model, _ = load_model(run_dir)
    stops = (tokenizer.encode_special(IM_END), tokenizer.encode_special(EOT))
    direct = Engine(model, vocab_size=tokenizer.vocab_size).generate(
        render_prompt(HELLO.messages, tokenizer),
        SamplingConfig(max_new_tokens=20, temperature=1.0, num_samples=4, seed=prompt_seed(5, "p-2"),
                       stop_tokens=stops))
    texts = list(dict.fromkeys(tokenizer.decode(s.tokens) for s in direct))
    assert [c.text for c in sampled.completions] == texts and len(texts) == 4
    assert [c.id for c in sampled.completions] == [completion_id("p-2", t) for t in texts]
    assert sampled.prompt == HELLO.messages and sampled.source["step"] == 1
    assert sampled.source["sampling"]["seed"] == 5


def test_a_prompts_completions_do_not_depend_on_the_prompts_sampled_before(run_dir, tmp_path):
    first = CompletionSampler(config(run_dir, tmp_path))
    first.sample(PRIME)
    after_another = first.sample(HELLO)
    alone = CompletionSampler(config(run_dir, tmp_path)).sample(HELLO)
    assert after_another.completions == alone.completions
    unseeded = CompletionSampler(config(run_dir, tmp_path, sampling={"max_new_tokens": 20})).sample(HELLO)
    assert unseeded.completions != alone.completions


def test_identical_texts_are_kept_once():
    sampled = SampledPrompt.from_texts(PRIME, ["7", "11", "7", "7"], {})
    assert [c.text for c in sampled.completions] == ["7", "11"]
    assert completion_id("p-1", "7") != completion_id("p-2", "7")


def test_the_store_keeps_the_first_completions_of_each_prompt(run_dir, tmp_path):
    path = tmp_path / "samples.jsonl"
    sampler = CompletionSampler(config(run_dir, tmp_path))
    store, other_session = SampleStore(path), SampleStore(path)
    stored = store.add(sampler.sample(PRIME))
    assert SampleStore(path).get(PRIME) == stored
    # another session sampled the same prompt meanwhile: it gets the completions stored first
    resampled = SampledPrompt.from_texts(PRIME, ["a", "b"], {})
    assert other_session.add(resampled) == stored
    assert len(path.read_text().splitlines()) == 1
    # the same id with other messages is another prompt
    edited = RankingPrompt("p-1", [{"role": "user", "content": "Name an even prime."}])
    assert store.get(edited) is None
    store.add(SampledPrompt.from_texts(edited, ["2", "two"], {}))
    assert len(SampleStore(path)) == 2


def test_a_store_line_cut_short_is_skipped(tmp_path):
    path = tmp_path / "samples.jsonl"
    good = SampledPrompt.from_texts(PRIME, ["7", "11"], {}).to_json()
    path.write_text(good + "\n" + good[:30] + "\n" + json.dumps({"prompt_id": "p-9"}) + "\n")
    store = SampleStore(path)
    assert len(store) == 1 and [bad.line for bad in store.malformed] == [2, 3]
