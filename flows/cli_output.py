"""What every `fineforge` command prints: results on stdout, one unwrapped error line on stderr."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """One clear error line on stderr and a nonzero exit (2: bad usage or config, 1: bad data)."""
    errors.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code=code)


def validation_message(error) -> str:
    """A pydantic ValidationError as one line that names each bad field (a whole-config check names its fields
    in its message)."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()]
    return "invalid config: " + "; ".join(parts)
