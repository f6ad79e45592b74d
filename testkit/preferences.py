"""Rankings with a known rule, and an untrained trunk checkpoint, for reward-model tests and benchmarks.

Rules (the reward model should learn them; accuracy near 1 shows that it did):
- `keyword`: replies are a few random words; one containing "gladly" is best, one containing "never" worst,
  one with neither in between (K = 3), or the "gladly" one against either other (K = 2).
- `arithmetic`: "What is a+b?" answered "a+b=c" with c right (best) or off by 1, 2 or 5 (worse the further).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from fineforge.model.checkpoint import save_checkpoint
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.optim import adamw
from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.preferences.rankings import Judgement, RankingsDataset

WORDS = ("the sky is blue today and we walk to the market with a friend while birds sing over green hills "
         "near an old river where boats drift slowly past quiet houses").split()
GOOD, BAD = "gladly", "never"
ARITHMETIC_ERRORS = (1, 2, 5)  # how far the wrong answers are off, in rank order


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def keyword_judgement(rng: random.Random, number: int) -> Judgement:
    """A ranking by the keyword rule: "gladly" best, neither middle, "never" worst (K = 2 or 3)."""
    prompt = [{"role": "user", "content": f"Tell me about {' '.join(_words(rng, 3))}."}]
    replies = {}
    for kind, word in (("good", GOOD), ("plain", None), ("bad", BAD)):
        words = _words(rng, rng.randint(4, 8))
        if word is not None:
            words.insert(rng.randint(0, len(words)), word)
        replies[kind] = " ".join(words).capitalize() + "."
    kinds = ["good", "plain", "bad"] if rng.random() < 0.5 else ["good", rng.choice(["plain", "bad"])]
    completions = [(kind, replies[kind]) for kind in rng.sample(kinds, len(kinds))]
    return Judgement.create(f"kw-{number}", prompt, completions, kinds, "rule:keyword")


def arithmetic_judgement(rng: random.Random, number: int) -> Judgement:
    """A ranking of four answers to a sum: right first, then off by 1, 2 and 5."""
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    prompt = [{"role": "user", "content": f"What is {a}+{b}?"}]
    answers = [("right", a + b)] + [(f"off{e}", a + b + rng.choice((-e, e))) for e in ARITHMETIC_ERRORS]
    completions = [(kind, f"{a}+{b}={value}") for kind, value in rng.sample(answers, len(answers))]
    return Judgement.create(f"sum-{a}-{b}", prompt, completions, [kind for kind, _ in answers], "rule:arithmetic")


RULES = {"keyword": keyword_judgement, "arithmetic": arithmetic_judgement}


def write_rule_rankings(path: Path, rule: str, count: int, seed: int = 0) -> Path:
    """`count` rankings by a known rule appended to a rankings dataset (a prompt drawn twice is kept once)."""
    rng = random.Random(seed)
    RankingsDataset(path).append_judgements(RULES[rule](rng, n) for n in range(count))
    return path


def untrained_checkpoint(run_dir: Path, tokenizer_spec: str = "bytes", seed: int = 0, **shape) -> Path:
    """A freshly initialised GPT saved as the trainer saves one (stage "pretrain") in `run_dir/checkpoints`;
    returns `run_dir`. `shape`: GPTConfig fields over a 2-layer, 64-wide model of context 128 whose vocabulary
    is the tokenizer's, padded to a multiple of 64."""
    tokenizer = load_tokenizer(tokenizer_spec)
    torch.manual_seed(seed)
    vocab_size = -(-tokenizer.vocab_size // 64) * 64
    config = GPTConfig(**{"vocab_size": vocab_size, "block_size": 128, "n_layer": 2, "n_head": 2, "n_embd": 64,
                          **shape})
    model = GPT(config)
    optimizer = adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    meta = {"model": config.to_dict(), "stage": "pretrain",
            "tokenizer": {"spec": tokenizer_spec, "name": tokenizer.name, "vocab_size": tokenizer.vocab_size}}
    save_checkpoint(Path(run_dir) / "checkpoints", 1, model, optimizer, meta)
    return Path(run_dir)
