"""Per-document keys of exact and URL deduplication: a hash of the normalised text, a normalised URL."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from datatrove.utils.text import TextNormConfig, simplify_text

# 128-bit digests: a collision among 1e9 documents has probability ~1e-21.
TEXT_HASH_BYTES = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WWW = "www."


def normalised_text_hash(text: str, norm_config: TextNormConfig) -> bytes:
    """Digest of datatrove's normalised text (lower case, no punctuation, numbers as 0, ...)."""
    return hashlib.blake2b(simplify_text(text, norm_config).encode(), digest_size=TEXT_HASH_BYTES).digest()


def normalised_url(url: str | None) -> str | None:
    """The URL without scheme, `www.`, default port, fragment and trailing slash; host lower case.

    None for a missing or blank URL (such documents are never URL duplicates).
    """
    if url is None or not url.strip():
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url.lower()
    host = (parts.hostname or "").removeprefix(_WWW)
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{host}{path}{query}"
