"""Pure MinHash logic, datatrove's own: per-document signatures, and which document of a cluster survives.

Signatures come from datatrove's `MinhashDedupSignature` (its text normalisation, n-gram shingles, hash
function and permutation parameters) with changes that give the same values faster or in bounded
memory: the words come from `fast_word_tokenizer` (datatrove's words, memoised per chunk), each shingle
is one slice of the joined words, and the minimum over very long documents is taken in chunks.

`cluster_survivor` replays datatrove's `MinhashDedupCluster` union-find (union by size, ties to the first
document of the pair) on the duplicate pairs of one cluster, in datatrove's order, so the same document is
kept.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable

import numpy as np
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.text import TextNormConfig, simplify_text
from datatrove.utils.word_tokenizers import WordTokenizer

from fineforge.tasks.common.word_tokenizer import fast_word_tokenizer

# Shingles hashed at once: bounds the (shingles x hashes) matrix on very long documents.
SHINGLE_CHUNK = 8192

Signature = list[list[int]]
# One duplicate pair as datatrove orders them: (bucket, band hashes or band key, first doc, second doc).
DuplicatePair = tuple[int, tuple[int, ...] | bytes, int, int]


def minhash_config(
    n_grams: int = 5,
    num_buckets: int = 14,
    hashes_per_bucket: int = 8,
    seed: int = MinhashConfig.seed,
    hash_fc: str = HashConfig.hash_fc,
    precision: int = HashConfig.precision,
    norm_config: TextNormConfig | None = None,
) -> MinhashConfig:
    """datatrove's MinhashConfig for these settings (defaults: datatrove's own)."""
    return MinhashConfig(
        n_grams=n_grams,
        num_buckets=num_buckets,
        hashes_per_bucket=hashes_per_bucket,
        seed=seed,
        norm_config=norm_config or TextNormConfig(),
        hash_config=HashConfig(precision=precision, hash_fc=hash_fc),
    )


class MinhashSigner:
    """Computes datatrove's MinHash signature of a text (one list of hashes per bucket)."""

    def __init__(self, config: MinhashConfig, language: str | WordTokenizer = "en"):
        # The step only writes when run() is called; signatures use its shingling and parameters.
        self._step = MinhashDedupSignature(output_folder=tempfile.gettempdir(), config=config, language=language)
        self._words = fast_word_tokenizer(language) if isinstance(language, str) else self._step.word_tokenizer
        self._hash = create_hash_func(config.hash_config)
        self._big_endian = np.dtype(config.hash_config.np_dtype).newbyteorder(">")
        self.config = config

    def words(self, text: str) -> list[str]:
        """datatrove's words of the normalised text, which the shingles are n-grams of."""
        return self._words.word_tokenize(simplify_text(text, self.config.norm_config))

    def shingles(self, text: str) -> np.ndarray:
        """datatrove's hashed word n-grams of the normalised text (as its `get_shingles`), shape (n, 1)."""
        words, n = self.words(text), self.config.n_grams
        if len(words) < n:
            return np.empty((0, 1), dtype=np.uint64)
        # shingle i = words i..i+n-1 joined by spaces: one slice of the joined words
        joined = " ".join(words)
        starts = list(itertools.accumulate((len(word) + 1 for word in words), initial=0))
        hashes = [self._hash(joined[starts[i] : starts[i + n] - 1]) for i in range(len(words) - n + 1)]
        return np.fromiter(hashes, dtype=np.uint64, count=len(hashes)).reshape((-1, 1))

    def signature(self, text: str) -> Signature | None:
        """The signature, or None when the text has no shingle (empty, or fewer words than n_grams).

        datatrove writes no signature for such documents, so they are never duplicates.
        """
        shingles = self.shingles(text)
        if shingles.size == 0:
            return None
        if len(shingles) <= SHINGLE_CHUNK:
            return self._step.get_signature(shingles)
        chunks = [
            np.asarray(self._step.get_signature(shingles[start : start + SHINGLE_CHUNK]))
            for start in range(0, len(shingles), SHINGLE_CHUNK)
        ]
        return np.min(np.stack(chunks), axis=0).tolist()

    def band_keys(self, text: str) -> list[bytes] | None:
        """Each band's hashes as big-endian bytes, or None without shingles.

        Equal keys are equal bands, and the keys sort in datatrove's band order (its hashes are unsigned),
        in a form that Spark shuffles and compares far faster than arrays of numbers.
        """
        signature = self.signature(text)
        if signature is None:
            return None
        return [band.tobytes() for band in np.asarray(signature, dtype=self._big_endian)]


def cluster_survivor(pairs: Iterable[DuplicatePair]) -> tuple[int, set[int]]:
    """(kept document, all documents) of one cluster, by datatrove's MinhashDedupCluster rule.

    `pairs` are the cluster's duplicate pairs (bucket, band, a, b), with a < b adjacent in the sorted
    band; datatrove reads them bucket by bucket in band order and unions a with b by size, the root of
    `a` winning ties. The root of the cluster is kept.
    """
    parent: dict[int, int] = {}
    size: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for _bucket, _band, a, b in sorted(pairs):
        root_a, root_b = root(a), root(b)
        if root_a == root_b:
            continue
        size_a, size_b = size.get(root_a, 1), size.get(root_b, 1)
        if size_a < size_b:
            root_a, root_b = root_b, root_a
        parent[root_b] = root_a
        size[root_a] = size_a + size_b
        size.pop(root_b, None)
    members = set(parent)
    kept = {root(node) for node in members}
    if len(kept) != 1:
        raise ValueError(f"pairs of one cluster form {len(kept)} clusters")
    return kept.pop(), members
