"""The per-document part of the sample stage: whether a document is kept, from its id alone."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from fineforge.tasks.common.documents import hash_below


def keep(doc_id: str, fraction: float, seed: int = 0) -> bool:
    """True for a stable `fraction` share of ids: the same id, fraction and seed always give the same answer,
    and a larger fraction keeps a superset. The seed is part of the hashed key, so that a sample is independent
    of the train/validation split, which hashes the bare id."""
    return hash_below(f"{seed}:{doc_id}", fraction)


def sample_batch(batch: pa.RecordBatch, fraction: float, seed: int) -> pa.RecordBatch:
    """The rows of `batch` whose id is kept."""
    mask = [keep(doc_id, fraction, seed) for doc_id in pc.cast(batch.column("id"), pa.string()).to_pylist()]
    return batch.filter(pa.array(mask, pa.bool_()))
