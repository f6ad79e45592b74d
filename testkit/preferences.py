"""Rankings with a known rule, and an untrained trunk checkpoint, for reward-model tests and benchmarks.

Rules (the reward model should learn them; accuracy near 1 shows that it did):
- `keyword`: replies are a few random words; one containing "gladly" is best, one containing "never" worst,
  one with neither in between (K = 3), or the "gladly" one against either other (K = 2).
- `keyword_degenerate`: the same, plus a degenerate reply ranked worst of all: one that repeats "gladly" (2 to 8
  times) or one of at most one word. What a judge knows and the `keyword` rule never shows (the blind spots the
  RLHF hacking benchmark's policy finds in a reward model trained by `keyword`).
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
KEYWORD_REPEATS = (2, 8)  # how often a degenerate reply repeats the keyword (inclusive)


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def keyword_prompt(rng: random.Random) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about {' '.join(_words(rng, 3))}."}]


def keyword_reply(rng: random.Random, word: str | None = None, times: int = 1) -> str:
    """A few random words (4 to 8), with `word` inserted `times` times at random places."""
    words = _words(rng, rng.randint(4, 8))
    for _ in range(times if word is not None else 0):
        words.insert(rng.randint(0, len(words)), word)
    return " ".join(words).capitalize() + "."


def _keyword_ranking(rng: random.Random) -> tuple[list[dict], dict[str, str], list[str]]:
    """A prompt, the replies by kind, and the kinds ranked (best first) by the keyword rule."""
    prompt = keyword_prompt(rng)
    replies = {kind: keyword_reply(rng, word) for kind, word in (("good", GOOD), ("plain", None), ("bad", BAD))}
    kinds = ["good", "plain", "bad"] if rng.random() < 0.5 else ["good", rng.choice(["plain", "bad"])]
    return prompt, replies, kinds


def _judgement(rule: str, prompt_id: str, prompt: list[dict], replies: dict[str, str], kinds: list[str],
               rng: random.Random) -> Judgement:
    completions = [(kind, replies[kind]) for kind in rng.sample(kinds, len(kinds))]
    return Judgement.create(prompt_id, prompt, completions, kinds, f"rule:{rule}")


def keyword_judgement(rng: random.Random, number: int) -> Judgement:
    """A ranking by the keyword rule: "gladly" best, neither middle, "never" worst (K = 2 or 3)."""
    return _judgement("keyword", f"kw-{number}", *_keyword_ranking(rng), rng)


def degenerate_reply(rng: random.Random) -> str:
    """A reply repeating "gladly" 2 to 8 times among a few words, or one of at most one word (maybe empty)."""
    if rng.random() < 0.5:
        return keyword_reply(rng, GOOD, rng.randint(*KEYWORD_REPEATS))
    return " ".join(_words(rng, rng.randint(0, 1))).capitalize() + rng.choice((".", ""))


def keyword_degenerate_judgement(rng: random.Random, number: int) -> Judgement:
    """A keyword ranking with a degenerate reply ranked worst (K = 3 or 4)."""
    prompt, replies, kinds = _keyword_ranking(rng)
    replies["degenerate"] = degenerate_reply(rng)
    return _judgement("keyword_degenerate", f"kwd-{number}", prompt, replies, [*kinds, "degenerate"], rng)


def arithmetic_judgement(rng: random.Random, number: int) -> Judgement:
    """A ranking of four answers to a sum: right first, then off by 1, 2 and 5."""
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    prompt = [{"role": "user", "content": f"What is {a}+{b}?"}]
    answers = [("right", a + b)] + [(f"off{e}", a + b + rng.choice((-e, e))) for e in ARITHMETIC_ERRORS]
    completions = [(kind, f"{a}+{b}={value}") for kind, value in rng.sample(answers, len(answers))]
    return Judgement.create(f"sum-{a}-{b}", prompt, completions, [kind for kind, _ in answers], "rule:arithmetic")


RULES = {"keyword": keyword_judgement, "keyword_degenerate": keyword_degenerate_judgement,
         "arithmetic": arithmetic_judgement}


def keyword_conversations(count: int, seed: int = 0) -> list[list[dict]]:
    """Chat conversations for SFT: a keyword prompt answered by one of the keyword rule's reply kinds at random
    ("gladly", neither or "never" once), so a policy trained on them says "gladly" in about a third of its
    replies and never twice."""
    rng = random.Random(seed)
    words = (GOOD, None, BAD)
    return [[*keyword_prompt(rng), {"role": "assistant", "content": keyword_reply(rng, rng.choice(words))}]
            for _ in range(count)]


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
