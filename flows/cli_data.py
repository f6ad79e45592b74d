"""`fineforge data ...` commands."""

from __future__ import annotations

import typer

data_app = typer.Typer(no_args_is_help=True)
