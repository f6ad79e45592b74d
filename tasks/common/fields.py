"""Config field types shared by the stages' configs."""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator


def _existing_file(what: str):
    def check(value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{what} not found: {value}")
        return value

    return AfterValidator(check)


ExistingFile = Annotated[str, _existing_file("file")]
"""A path that must name an existing file when the config is read."""
PromptsFile = Annotated[str, _existing_file("prompts file")]
RankingsFile = Annotated[str, _existing_file("rankings file")]
