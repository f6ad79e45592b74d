"""Training a byte-level BPE tokenizer on a random sample of the corpus, read with Spark."""

from __future__ import annotations

from collections.abc import Iterator

from fineforge.model.tokenizer import BPETrainingConfig, Tokenizer, train_bpe
from fineforge.tasks.common.documents import parquet_files
from fineforge.tasks.tokens.config import TokenizerTrainingConfig
from fineforge.tasks.tokens.documents import validation_split


def sample_texts(spark, inputs: list[str], sample_docs: int | None = None, fraction: float | None = None,
                 text_column: str = "text", id_column: str = "id", val_fraction: float = 0.0,
                 seed: int = 0) -> Iterator[str]:
    """Texts of a random sample of the corpus's training documents (validation-split ids left out)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    files = parquet_files(inputs)
    if not files:
        raise FileNotFoundError(f"no Parquet files in {inputs}")
    frame = spark.read.parquet(*[str(f) for f in files])
    if val_fraction > 0:
        is_train = F.udf(lambda doc_id: validation_split(doc_id, val_fraction) == "train", BooleanType())
        frame = frame.where(is_train(F.col(id_column).cast("string")))
    frame = frame.select(text_column).where(F.length(text_column) > 0)
    if fraction is not None:
        frame = frame.sample(fraction=fraction, seed=seed)
    if sample_docs is not None:
        frame = frame.orderBy(F.rand(seed)).limit(sample_docs)
    for row in frame.toLocalIterator():
        yield row[0]


def train_bpe_tokenizer(spark, config: TokenizerTrainingConfig) -> Tokenizer:
    """Train a byte-level BPE on a Spark sample of the corpus; save it as JSON at `config.output`."""
    texts = sample_texts(spark, config.input, config.sample_docs, config.fraction, val_fraction=config.val_fraction,
                         seed=config.seed)
    training = BPETrainingConfig(vocab_size=config.vocab_size, min_frequency=config.min_frequency)
    return train_bpe(texts, config.output, training)
