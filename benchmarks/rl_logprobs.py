"""Benchmark of the two per-token computations on the RL / reward-model path, side by side in one run.

(a) completion log-probs, forward + backward: fineforge's fused `F.cross_entropy` on the logits
    (`completion_logprobs`) vs the textbook `log_softmax(logits).gather(targets)`, which materialises a
    second (B, T, V) float32 tensor;
(b) reward-model scoring, forward + backward: the head on the trunk's hidden states without any vocabulary
    projection (`RewardModel`, via `GPT.hidden_states`) vs a forward that projects every position onto the
    vocabulary (what reading hidden states from a plain `model(tokens)` would cost).

Prints the median seconds of each, the ratios, and on CUDA the peak memory of each. The two log-prob
variants are checked to agree. A GPT-2-sized vocabulary (50,304) on a small trunk, so the vocabulary
projection dominates as it does for small models.

    .venv/bin/python -m benchmarks.rl_logprobs [--device cpu|cuda] [--batch 8] [--length 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.reward_model import RewardModel
from fineforge.model.rl.logprobs import completion_logprobs


def textbook_logprobs(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)


def full_projection_scores(model: RewardModel, tokens: torch.Tensor) -> torch.Tensor:
    captured = []
    handle = model.trunk.ln_f.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        logits, _ = model.trunk(tokens)
    finally:
        handle.remove()
    # keep the vocabulary projection in the graph, as a caller that needed the logits would
    return model.head(captured[0][:, -1]).squeeze(-1) + 0.0 * logits.sum()


def measure(step: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median seconds of forward + backward, and the peak memory in MiB on CUDA."""
    step().sum().backward()  # warm-up
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        started = time.perf_counter()
        step().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return statistics.median(times), peak


def report(name: str, ours: tuple[float, float | None], other: tuple[float, float | None]) -> None:
    line = f"{name}: fineforge {ours[0]:.4f} s, alternative {other[0]:.4f} s, speed-up x{other[0] / ours[0]:.2f}"
    if ours[1] is not None:
        line += f"; peak memory {ours[1]:.0f} MiB vs {other[1]:.0f} MiB (x{other[1] / ours[1]:.2f})"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50304, block_size=args.length, n_layer=2, n_head=4, n_embd=128)
    model = GPT(config).to(device)
    tokens = torch.randint(0, 50257, (args.batch, args.length), device=device)
    print(f"device {device}, batch {args.batch} x {args.length} tokens, vocabulary {config.vocab_size}")

    ours, _ = completion_logprobs(model, tokens)
    assert torch.allclose(ours, textbook_logprobs(model, tokens), atol=1e-4), "the two log-prob variants differ"
    report(
        "(a) completion log-probs",
        measure(lambda: completion_logprobs(model, tokens)[0], device, args.repeats),
        measure(lambda: textbook_logprobs(model, tokens), device, args.repeats),
    )
    rm_tokens = tokens.clone()
    rm_tokens[:, -1] = 50257  # the scored position
    reward_model = RewardModel(model, end_id=50257).to(device)
    report(
        "(b) reward-model scores",
        measure(lambda: reward_model(rm_tokens), device, args.repeats),
        measure(lambda: full_projection_scores(reward_model, rm_tokens), device, args.repeats),
    )


if __name__ == "__main__":
    main()
