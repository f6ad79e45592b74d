"""Supervised training of a tiny chat model on conversations, in-process, for tests and benchmarks.

The conversations are rendered with the real chat template and loss mask (tool output masked out, as in
SFT) and trained with the project's AdamW on random batches; the model starts from scratch. It is a
stand-in for the SFT stage where a test or benchmark needs a model in seconds or minutes on a CPU.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence

import torch

from fineforge.model import optim
from fineforge.model.chat import ChatTemplate, Conversation
from fineforge.model.gpt import GPT, GPTConfig

log = logging.getLogger(__name__)
LOG_EVERY = 100


def rendered_batch(template: ChatTemplate, conversations: Sequence[Sequence[dict]], block_size: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, loss mask) of the conversations, padded to the longest; ValueError when one does not fit."""
    rendered = [template.render(Conversation.from_messages(list(messages))) for messages in conversations]
    width = max(len(ids) for ids, _ in rendered)
    if width > block_size:
        raise ValueError(f"the conversations need a context of {width}, got {block_size}")
    inputs = torch.zeros(len(rendered), width - 1, dtype=torch.long)
    targets = torch.full((len(rendered), width - 1), -1, dtype=torch.long)
    mask = torch.zeros(len(rendered), width - 1)
    for i, (ids, loss_mask) in enumerate(rendered):
        n = len(ids) - 1
        inputs[i, :n] = torch.tensor(ids[:-1])
        targets[i, :n] = torch.tensor(ids[1:])
        mask[i, :n] = torch.tensor(loss_mask[1:], dtype=torch.float)
    return inputs, targets, mask


def memorised(model: GPT, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> bool:
    """Whether the model's most likely next token is the target at every trainable position of the batch: then
    greedy decoding of each prompt writes its assistant turn exactly (given the same tool outputs)."""
    inputs, targets, mask = batch
    with torch.no_grad():
        logits, _ = model(inputs)
    return bool(((logits.argmax(-1) == targets) | (mask == 0)).all())


def scheduled_rate(step: int, steps: int, peak: float, warmup_steps: int, anneal_steps: int) -> float:
    """The learning rate of step `step` (0-based): a linear warm-up to `peak`, constant, then a linear decay to 0
    over the last `anneal_steps` (a cosine decay from the start slowed the tiny models' learning to copy)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return peak * min(1.0, (steps - step) / anneal_steps) if anneal_steps else peak


def train_chat_model(template: ChatTemplate, conversations: Sequence[Sequence[dict]], steps: int,
                     shape: dict, learning_rate: float, batch_size: int | None = None, seed: int = 0,
                     block_size: int = 512, until_memorised: bool = False, warmup_steps: int = 0,
                     anneal_steps: int = 0, start: GPT | None = None) -> GPT:
    """A `tiny`-preset GPT of `shape` over the template's tokenizer, trained `steps` steps on random batches of
    the conversations (all of them when batch_size is None) at `scheduled_rate`; returned in eval mode.
    `until_memorised`: stop as soon as it has `memorised` every conversation (checked every LOG_EVERY steps),
    whatever the machine's arithmetic. `start`: train a copy of this model instead of a new one."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if start is not None:
        model = copy.deepcopy(start).train()
    else:
        model = GPT(GPTConfig.from_preset("tiny", vocab_size=template.tokenizer.vocab_size, block_size=block_size,
                                          **shape))
    optimizer = optim.adamw(model, weight_decay=0.0, lr=learning_rate, betas=(0.9, 0.95), device_type="cpu")
    everything = rendered_batch(template, conversations, block_size) if batch_size is None else None
    for step in range(1, steps + 1):
        batch = everything or rendered_batch(template, rng.sample(conversations, batch_size), block_size)
        for group in optimizer.param_groups:
            group["lr"] = scheduled_rate(step - 1, steps, learning_rate, warmup_steps, anneal_steps)
        _, loss = model(batch[0], targets=batch[1], loss_mask=batch[2])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % LOG_EVERY == 0 or step == steps:
            log.info("step %d/%d: loss %.4f", step, steps, loss.item())
        if until_memorised and step % LOG_EVERY == 0 and memorised(model, rendered_batch(template, conversations,
                                                                                         block_size)):
            log.info("every conversation memorised after %d steps", step)
            break
    return model.eval()
