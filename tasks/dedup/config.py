"""The dedup stage's config: which deduplications run, and MinHash's settings (FineWeb's by default)."""

from __future__ import annotations

from typing import Literal

from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig
from pydantic import BaseModel, ConfigDict, Field

from fineforge.tasks.dedup.minhash import minhash_config

DEDUPLICATED = "deduplicated"  # the stage's output folder: <workdir>/<dump or all-dumps>/deduplicated/


class DedupConfig(BaseModel):
    """Which deduplications run, and MinHash's settings (defaults: FineWeb's, with datatrove's hashing)."""

    model_config = ConfigDict(extra="forbid")

    minhash: bool = Field(True, description="MinHash near-duplicate removal (FineWeb).")
    n_grams: int = Field(5, ge=1, description="Words per shingle.")
    num_buckets: int = Field(14, ge=1, description="LSH bands.")
    hashes_per_bucket: int = Field(8, ge=1, description="MinHash values per band.")
    hash_fc: Literal["xxhash", "sha1"] = Field(HashConfig.hash_fc, description="Shingle hash function.")
    precision: Literal[32, 64] = Field(HashConfig.precision, description="Bits of the shingle hashes.")
    seed: int = Field(MinhashConfig.seed, description="Seed of the MinHash permutations (datatrove's default).")
    language: str = Field("en", description="Language of datatrove's word tokenizer for shingles.")
    exact: bool = Field(False, description="Remove documents whose normalised text is identical.")
    url: bool = Field(False, description="Keep one document per normalised URL: the most recent crawl.")
    scope: Literal["dump", "all"] = Field("dump", description="Deduplicate within each dump, or across all.")
    long_document_chars: int = Field(1_000_000, description="Documents longer than this are counted as long.")

    @classmethod
    def original_fineweb(cls, **overrides) -> DedupConfig:
        """The setting of the original FineWeb run: 64-bit SHA-1 shingle hashes."""
        return cls(**{"hash_fc": "sha1", "precision": 64, **overrides})

    def minhash_config(self) -> MinhashConfig:
        """The same settings as datatrove's MinhashConfig."""
        return minhash_config(
            n_grams=self.n_grams,
            num_buckets=self.num_buckets,
            hashes_per_bucket=self.hashes_per_bucket,
            seed=self.seed,
            hash_fc=self.hash_fc,
            precision=self.precision,
        )

    @property
    def active(self) -> bool:
        """Whether any deduplication runs (else the stage is left out)."""
        return self.minhash or self.exact or self.url
