"""The sample stage's config: which stage to sample, how much of it, and the seed of the choice."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The output folder of the sample stage, beside the stage it samples: <workdir>/<dump>/sampled/.
SAMPLED = "sampled"


class SampleConfig(BaseModel):
    """Keep a deterministic fraction of a stage's documents, chosen by a seeded hash of their ids."""

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(gt=0.0, le=1.0, description="Share of the documents kept (by a hash of the id).")
    seed: int = Field(0, description="Another seed keeps another, independent sample.")
    input: str = Field("scrubbed", pattern=r"^[\w.-]+$", description="The stage sampled (its folder name).")
