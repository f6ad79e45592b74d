"""K completions per prompt from a checkpoint, sampled once and stored, so that a re-run of a ranking session
shows a person the same completions and the judgements of two sessions name the same completion ids.

The store is a JSONL file, one line per prompt:

    {"prompt_id": "p-1", "prompt": [...], "completions": [{"id": "c-...", "text": "..."}, ...],
     "source": {"checkpoint": "...", "step": 1200, "sampling": {...}, "time": "..."}}

A completion's id is a hash of its prompt's id and its text; identical texts sampled for one prompt are stored
once. When two sessions sample the same prompt at the same time, the first to store it wins and the other
shows those completions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fineforge.tasks.preferences.config import RankingConfig
from fineforge.tasks.preferences.importers import content_id
from fineforge.tasks.preferences.jsonl import AppendOnlyJsonl
from fineforge.tasks.preferences.prompts import RankingPrompt
from fineforge.tasks.preferences.rankings import Completion

log = logging.getLogger(__name__)


def completion_id(prompt_id: str, text: str) -> str:
    """The stable id of a completion of a prompt."""
    return content_id("c", [prompt_id, text])


def prompt_seed(seed: int, prompt_id: str) -> int:
    """A prompt's own sampler seed, so its completions do not depend on which prompts were sampled before it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class SampledPrompt:
    """A prompt and its distinct sampled completions, with where they came from."""

    prompt_id: str
    prompt: list[dict]
    completions: tuple[Completion, ...]
    source: dict[str, Any]

    @classmethod
    def from_texts(cls, prompt: RankingPrompt, texts: list[str], source: dict[str, Any]) -> SampledPrompt:
        """Completions of `prompt` from sampled texts; a text sampled twice is kept once."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) < len(texts):
            log.info("prompt %s: %d of %d completions repeat another", prompt.id, len(texts) - len(distinct),
                     len(texts))
        completions = tuple(Completion(completion_id(prompt.id, text), text) for text in distinct)
        return cls(prompt.id, prompt.messages, completions, source)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> SampledPrompt:
        try:
            completions = tuple(Completion(c["id"], c["text"]) for c in record["completions"])
            return cls(record["prompt_id"], record["prompt"], completions, record.get("source") or {})
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a sampled prompt ({type(error).__name__}: {error})") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def matches(self, prompt: RankingPrompt) -> bool:
        return self.prompt_id == prompt.id and self.prompt == prompt.messages


class SampleStore(AppendOnlyJsonl):
    """The stored completions of each prompt (the first stored per prompt id and messages)."""

    def __init__(self, path: str | Path) -> None:
        self._stored: dict[tuple[str, str], SampledPrompt] = {}
        super().__init__(path)

    @staticmethod
    def _key(prompt_id: str, messages: list[dict]) -> tuple[str, str]:
        return prompt_id, json.dumps(messages, sort_keys=True, ensure_ascii=False)

    def _load(self, record: dict) -> None:
        sampled = SampledPrompt.from_dict(record)
        self._stored.setdefault(self._key(sampled.prompt_id, sampled.prompt), sampled)

    def __len__(self) -> int:
        return len(self._stored)

    def get(self, prompt: RankingPrompt) -> SampledPrompt | None:
        """The stored completions of a prompt (None if it was never sampled)."""
        return self._stored.get(self._key(prompt.id, prompt.messages))

    def add(self, sampled: SampledPrompt) -> SampledPrompt:
        """Store a prompt's completions durably; if another session stored this prompt first, those are kept
        and returned."""
        key = self._key(sampled.prompt_id, sampled.prompt)
        with self._appending() as lines:
            if key not in self._stored:
                self._stored[key] = sampled
                lines.append(sampled.to_json())
        return self._stored[key]


class CompletionSampler:
    """Samples K chat completions of a prompt (ending at <|im_end|>) from the session's checkpoint. The tokenizer
    is checked at once; the weights are loaded on the first prompt that needs sampling."""

    def __init__(self, config: RankingConfig) -> None:
        from fineforge.model.chat import ChatTemplate, require_chat_tokens
        from fineforge.model.checkpoint import find_checkpoint, read_meta
        from fineforge.model.tokenizer import EOT, IM_END, load_tokenizer

        self.config = config
        self.checkpoint = find_checkpoint(config.checkpoint)
        self.meta = read_meta(self.checkpoint)
        self.tokenizer = load_tokenizer(self.meta["tokenizer"]["spec"], config.tokenizer_dir)
        require_chat_tokens(self.tokenizer, self.meta["model"]["vocab_size"])
        self.template = ChatTemplate(self.tokenizer)
        self.stop_tokens = (self.tokenizer.encode_special(IM_END), self.tokenizer.encode_special(EOT))
        self._engine = None

    def _loaded_engine(self):
        if self._engine is None:
            from fineforge.model.checkpoint import load_model
            from fineforge.model.engine import Engine

            model, _ = load_model(self.checkpoint, device=self.config.device)
            self._engine = Engine(model, vocab_size=self.tokenizer.vocab_size)
        return self._engine

    def sample(self, prompt: RankingPrompt) -> SampledPrompt:
        """K completions of one prompt (fewer when some texts repeat)."""
        from fineforge.model.engine import SamplingConfig

        settings = self.config.sampling
        seed = None if settings.seed is None else prompt_seed(settings.seed, prompt.id)
        sampling = SamplingConfig(
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_k=settings.top_k,
            top_p=settings.top_p, num_samples=self.config.num_completions, seed=seed, stop_tokens=self.stop_tokens,
        )
        samples = self._loaded_engine().generate(self.template.render_prompt(prompt.messages), sampling)
        source = {"checkpoint": str(self.checkpoint.resolve()), "step": self.meta.get("step"),
                  "sampling": settings.model_dump(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
        return SampledPrompt.from_texts(prompt, [self.tokenizer.decode(s.tokens) for s in samples], source)

