"""`fineforge generate` end to end on a checkpoint written by the training code's `save_checkpoint`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.flows.cli_generate import stream_text
from fineforge.model.checkpoint import save_checkpoint
from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.optim import adamw
from fineforge.model.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "ROMEO:"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, GPT]:
    """A tiny random model for the bytes tokenizer, saved as the trainer saves it."""
    tokenizer = load_tokenizer("bytes")
    torch.manual_seed(0)
    # padded past the tokenizer's 266 ids, as the trainer pads
    config = GPTConfig.from_preset("tiny", vocab_size=320, block_size=48, tie_embeddings=False)
    model = GPT(config)
    with torch.no_grad():  # scaled-up random weights give varied text rather than one repeated byte
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    optimizer = adamw(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    meta = {
        "model": config.to_dict(),
        "tokenizer": {"spec": "bytes", "name": tokenizer.name, "vocab_size": tokenizer.vocab_size},
    }
    run_dir = tmp_path_factory.mktemp("run")
    save_checkpoint(run_dir / "checkpoints", 7, model, optimizer, meta)
    return run_dir, model.eval()


def expected_text(model: GPT, config: SamplingConfig) -> list[str]:
    tokenizer = load_tokenizer("bytes")
    prompt = tokenizer.encode(PROMPT)
    samples = Engine(model, vocab_size=tokenizer.vocab_size).generate(prompt, config)
    return [tokenizer.decode(prompt + s.tokens) for s in samples]


def test_generate_prints_the_engine_samples(checkpoint):
    run_dir, model = checkpoint
    args = ["generate", "--checkpoint", str(run_dir), "--prompt", PROMPT, "--max-new-tokens", "60",
            "--temperature", "0.9", "--top-k", "50", "--top-p", "0.95", "--seed", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tok = load_tokenizer("bytes")
    config = SamplingConfig(max_new_tokens=60, temperature=0.9, top_k=50, top_p=0.95, seed=3,
                            stop_tokens=(tok.eot_id,))
    assert result.stdout == expected_text(model, config)[0] + "\n"
    no_cache = CliRunner().invoke(app, [*args, "--no-kv-cache"])
    assert no_cache.stdout == result.stdout


def test_several_samples_in_one_batch(checkpoint):
    run_dir, model = checkpoint
    result = CliRunner().invoke(app, ["generate", "-c", str(run_dir / "checkpoints" / "step_00000007"), "-p",
                                      PROMPT, "--max-new-tokens", "30", "--num-samples", "3", "--seed", "1",
                                      "--no-stop-at-eot"])
    assert result.exit_code == 0, result.output
    texts = expected_text(model, SamplingConfig(max_new_tokens=30, temperature=0.8, num_samples=3, seed=1))
    assert len(set(texts)) == 3
    assert result.stdout == "".join(f"--- sample {i + 1} ---\n{t}\n" for i, t in enumerate(texts))


def test_installed_command_streams_to_stdout(checkpoint):
    run_dir, _ = checkpoint
    # the real console script, as a user runs it
    fineforge = Path(sys.executable).with_name("fineforge")
    out = subprocess.run([str(fineforge), "generate", "--checkpoint", str(run_dir), "--prompt", PROMPT,
                          "--max-new-tokens", "20", "--temperature", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(PROMPT) and len(out.stdout) > len(PROMPT) + 1


def test_stream_text_never_splits_a_character():
    tok = load_tokenizer("bytes")
    text = "naïve café — 日本語 ok"
    pieces = list(stream_text(tok.decode, tok.encode("x"), tok.encode(text)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(pieces) == len(text)  # one piece per character: each arrives once its last byte has


def test_bad_input_fails_clearly(checkpoint, tmp_path):
    run_dir, _ = checkpoint
    runner = CliRunner()
    cases = [
        (["--checkpoint", str(tmp_path / "nowhere"), "--prompt", "x"], "no checkpoint found"),
        (["--checkpoint", str(run_dir), "--top-p", "2"], "top_p must be in (0, 1]"),
        (["--checkpoint", str(run_dir), "--num-samples", "0"], "num_samples must be >= 1"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["generate", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)


def test_damaged_checkpoint_is_one_error_line(checkpoint, tmp_path):
    """Zeroed weights used to load silently and print garbage with exit 0."""
    run_dir, _ = checkpoint
    damaged = tmp_path / "step_00000007"
    shutil.copytree(run_dir / "checkpoints" / "step_00000007", damaged)
    blob = bytearray((damaged / "model.safetensors").read_bytes())
    blob[-100_000:] = bytes(100_000)
    (damaged / "model.safetensors").write_bytes(bytes(blob))
    result = CliRunner().invoke(app, ["generate", "--checkpoint", str(damaged), "--prompt", PROMPT])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors: damaged (its sha256 does not match meta.json)" in lines[0]
