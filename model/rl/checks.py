"""The checks of an RL run before launch: the checkpoint to start from and its tokenizer (with the chat tokens),
the verifier, the prompt sets (every prompt holds what the verifier needs and fits the context with its token
budget) and the frozen reference (same shape, same tokenizer). Each failure is a ConfigError naming the field.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fineforge.model.chat import ChatFormatError, ChatTemplate, require_chat_tokens
from fineforge.model.checkpoint import (
    CHECKPOINTS_SUBDIR,
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    model_config,
    read_meta,
)
from fineforge.model.config import ConfigError
from fineforge.model.gpt import GPTConfig
from fineforge.model.rl.prompts import Prompt, read_prompt_set
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.shards import file_sha256
from fineforge.model.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from fineforge.model.verifiers import MissingAnswerError, Verifier, check_prompt_set, get_verifier

log = logging.getLogger(__name__)

# Checkpoints RL may start from: language models (a testkit or converted checkpoint may name no stage).
INIT_STAGES = (None, "pretrain", "sft", "rl", "rlhf")
TOKENIZER_IDENTITY = ("name", "vocab_size", "fingerprint")  # what two checkpoints' tokenizers must share


def field_error(name: str, message: str) -> ConfigError:
    return ConfigError(f"rl config field {name!r}: {message}")


def resolve_verifier(spec: str) -> Verifier:
    """A registered verifier by name, or the Verifier object at "package.module:attribute" (importing the module
    registers nothing: the object itself is used)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep:
        try:
            return get_verifier(spec)
        except ValueError as exc:
            raise field_error("verifier", str(exc)) from exc
    try:
        verifier = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise field_error("verifier", f"cannot import {spec!r}: {exc}") from exc
    if not isinstance(verifier, Verifier):
        raise field_error("verifier", f"{spec!r} is a {type(verifier).__name__}, not a Verifier")
    return verifier


def checkpoint_model(name: str, spec: str) -> tuple[Path, dict, GPTConfig]:
    """The checkpoint a field names, its metadata and its shape without dropout (the importance ratio and the
    KL need a deterministic policy)."""
    try:
        path = find_checkpoint(spec)
        meta = read_meta(path)
        shape = model_config(path, meta)
    except CheckpointError as exc:
        raise field_error(name, str(exc)) from exc
    if meta.get("stage") not in INIT_STAGES:
        raise field_error(name, f"{path} is a {meta['stage']!r} checkpoint, not a language model")
    return path, meta, GPTConfig.from_dict({**shape.to_dict(), "dropout": 0.0})


def checkpoint_tokenizer(path: Path, meta: dict, shape: GPTConfig, tokenizer_dir: str | None) -> Tokenizer:
    """The tokenizer a checkpoint was trained with, which must carry the chat tokens inside the model's embedding."""
    spec = (meta.get("tokenizer") or {}).get("spec")
    if not spec:
        raise field_error("init_checkpoint", f"{path} names no tokenizer in its metadata")
    try:
        tokenizer = load_tokenizer(spec, tokenizer_dir)
        require_chat_tokens(tokenizer, shape.vocab_size)
    except TokenizerError as exc:
        raise field_error("tokenizer_dir", f"cannot load {path}'s tokenizer {spec!r}: {exc}") from exc
    except ChatFormatError as exc:
        raise field_error("init_checkpoint", f"{path}: {exc}") from exc
    return tokenizer


def check_reference(config: RLConfig, init_meta: dict, shape: GPTConfig) -> Path | None:
    """The frozen reference of the KL term (None without one): same shape and tokenizer as the policy."""
    if config.kl_beta == 0:
        return None
    name = "reference_checkpoint" if config.reference_checkpoint else "init_checkpoint"
    path, meta, ref_shape = checkpoint_model(name, config.reference_checkpoint or config.init_checkpoint)
    if ref_shape != shape:
        diff = {k: (v, shape.to_dict()[k]) for k, v in ref_shape.to_dict().items() if shape.to_dict()[k] != v}
        raise field_error(name, f"{path} holds another model shape than the policy: {diff} (reference vs policy)")
    ours, theirs = init_meta.get("tokenizer") or {}, meta.get("tokenizer") or {}
    if any(ours.get(k) != theirs.get(k) for k in TOKENIZER_IDENTITY):
        raise field_error(name, f"{path} was trained with tokenizer {theirs.get('name')!r} "
                                f"({theirs.get('vocab_size')} ids), the policy with {ours.get('name')!r} "
                                f"({ours.get('vocab_size')} ids)")
    return path


@dataclass
class PromptSet:
    """A checked prompt set: its prompts, their chat-rendered ids and the sha256 of its file."""

    path: Path
    prompts: list[Prompt]
    ids: list[list[int]]
    sha256: str

    @property
    def metadata(self) -> list[dict]:
        return [p.metadata for p in self.prompts]


def prompt_set(name: str, path: str, verifier: Verifier, template: ChatTemplate, room: int) -> PromptSet:
    """Read, check and render the prompt set a field names; every prompt must hold what the verifier needs and
    fit in `room` tokens (the context less the token budget)."""
    prompts = read_prompt_set(path, f"rl config field {name!r}")
    try:
        check_prompt_set(verifier, [p.metadata for p in prompts])
    except MissingAnswerError as exc:
        raise field_error(name, f"{path}: {exc}") from exc
    ids = [template.render_prompt(p.messages) for p in prompts]
    too_long = [i for i, prompt in enumerate(ids) if len(prompt) > room]
    if too_long:
        raise field_error(name, f"{path}: {len(too_long)} prompt(s) longer than the {room} tokens the context leaves "
                                f"beside max_new_tokens (the first: {prompt_names(prompts, too_long[:3])}); "
                                "lower max_new_tokens or drop them")
    return PromptSet(Path(path), prompts, ids, file_sha256(Path(path)))


def prompt_names(prompts: Sequence[Prompt], indices: Sequence[int]) -> list[str]:
    """How a message names prompts: their ids when the records have one, else their place in the file."""
    return [str(prompts[i].metadata.get("id", f"#{i + 1}")) for i in indices]


def check_resume_prompts(config: RLConfig, sha256: str) -> None:
    """A run that resumes reads the prompt set its checkpoint was trained on (its data position counts prompts)."""
    latest = latest_checkpoint(Path(config.run_dir) / CHECKPOINTS_SUBDIR) if config.resume else None
    if latest is None:
        return
    saved = (read_meta(latest).get("data_position") or {}).get("prompts_sha256")
    if saved != sha256:
        raise field_error("prompts", f"{config.prompts} is not the prompt set the run in {config.run_dir} was trained "
                                     "on (its sha256 differs): use that file, or a new run_dir")
