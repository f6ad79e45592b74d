"""fastText language ID for datatrove's LanguageFilter, loaded from a local model file (never downloaded).

fastText models cannot be pickled, so each worker process loads the model lazily, once, on first use.
"""

from __future__ import annotations

import threading
from pathlib import Path

from datatrove.utils.lid import FT176LID

LABEL_PREFIX = "__label__"  # how fastText names its labels: __label__en
_MODELS: dict[tuple[str, int, int, int], object] = {}
_LOCK = threading.Lock()


def fasttext_model(path: Path):
    """The fastText model at `path`, loaded once per process (again when the file was replaced, e.g. retrained)."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    key = (str(resolved), status.st_ino, status.st_size, status.st_mtime_ns)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from fasttext.FastText import _FastText

            for replaced in [known for known in _MODELS if known[0] == key[0]]:
                del _MODELS[replaced]
            model = _MODELS[key] = _FastText(str(resolved))
    return model


def language_labels(path: Path) -> frozenset[str]:
    """The language codes the fastText model at `path` can predict (176 for lid.176)."""
    return frozenset(label.removeprefix(LABEL_PREFIX) for label in fasttext_model(path).get_labels())


class LocalFastTextLID(FT176LID):
    """datatrove's lid.176 predictor, reading the model from a local file instead of downloading it."""

    def __init__(self, model_path: Path, languages: list[str] | None = None) -> None:
        super().__init__(languages)
        self.model_path = Path(model_path)

    @property
    def model(self):
        return fasttext_model(self.model_path)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}
