"""`fineforge train ...` commands."""

from __future__ import annotations

import typer

train_app = typer.Typer(no_args_is_help=True)
