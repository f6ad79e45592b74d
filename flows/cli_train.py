"""`fineforge train ...` and `fineforge generate` commands."""

from __future__ import annotations

import typer

train_app = typer.Typer(no_args_is_help=True)


def generate() -> None:
    """Sample continuations from a checkpoint."""
    raise typer.Exit(code=2)
