"""`fineforge generate`: sample from a checkpoint."""

from __future__ import annotations

import typer


def generate() -> None:
    """Sample continuations from a checkpoint."""
    raise typer.Exit(code=2)
