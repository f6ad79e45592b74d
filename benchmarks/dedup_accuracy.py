"""MinHash detection rate vs the theoretical LSH curve 1-(1-s^r)^b, on real text edited to known similarity.

Each pair is a real document (web sentences of lingua-sentences) and a copy with words replaced by other
real words until the Jaccard similarity of their shingle sets is close to a target; the similarity is then
measured exactly on datatrove's shingles. A pair is detected when the two signatures share a band, which
is what makes the dedup stage pair them. Run: `python -m benchmarks.dedup_accuracy [--pairs N]`.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path

from datatrove.utils.text import ngrams

from fineforge.tasks.dedup.config import DedupConfig
from fineforge.tasks.dedup.minhash import MinhashSigner
from testkit.dedup_corpus import sentence_documents, sentences

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIMILARITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
SENTENCES_PER_DOC = (30, 40)


@dataclass
class Level:
    """Detection at one target similarity."""

    target: float
    pairs: int
    mean_jaccard: float
    detected: float
    expected: float
    sigma: float


def lsh_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents of Jaccard `similarity` share at least one of `bands` bands of `rows`."""
    return 1 - (1 - similarity**rows) ** bands


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def edited_copy(tokens: list[str], target: float, n: int, rng: random.Random, vocabulary: list[str]) -> list[str]:
    """`tokens` with the fewest random replacements that bring the n-gram Jaccard down to `target`."""
    original = set(ngrams(tokens, n))
    order = rng.sample(range(len(tokens)), len(tokens))
    replacements = [rng.choice(vocabulary) for _ in order]

    def edited(count: int) -> list[str]:
        copy = list(tokens)
        for index, word in zip(order[:count], replacements[:count], strict=True):
            copy[index] = word
        return copy

    low, high = 0, len(tokens)
    while low < high:
        middle = (low + high) // 2
        if _jaccard(original, set(ngrams(edited(middle), n))) > target:
            low = middle + 1
        else:
            high = middle
    return edited(low)


def detection_table(
    shared_data: Path, similarities=SIMILARITIES, pairs: int = 100, seed: int = 0, config: DedupConfig | None = None
) -> list[Level]:
    """Measured detection rate per target similarity, with the curve's expectation for the measured pairs."""
    config = config or DedupConfig()
    signer = MinhashSigner(config.minhash_config(), language=config.language)
    rng = random.Random(seed)
    pools = sentences(shared_data, ("en",))
    documents = sentence_documents(pools, len(similarities) * pairs, seed, SENTENCES_PER_DOC)
    vocabulary = signer.words(" ".join(pools[0][-300:]))
    levels = []
    for target in similarities:
        jaccards, hits, probabilities = [], 0, []
        for _ in range(pairs):
            tokens = signer.words(next(documents))
            copy = " ".join(edited_copy(tokens, target, config.n_grams, rng, vocabulary))
            original = " ".join(tokens)
            jaccard = _jaccard(set(signer.shingles(original).ravel()), set(signer.shingles(copy).ravel()))
            bands_a, bands_b = signer.signature(original), signer.signature(copy)
            hits += any(a == b for a, b in zip(bands_a, bands_b, strict=True))
            jaccards.append(jaccard)
            probabilities.append(lsh_probability(jaccard, config.num_buckets, config.hashes_per_bucket))
        expected = sum(probabilities) / pairs
        sigma = math.sqrt(sum(p * (1 - p) for p in probabilities)) / pairs
        levels.append(Level(target, pairs, sum(jaccards) / pairs, hits / pairs, expected, sigma))
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs per similarity level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    config = DedupConfig()
    print(f"bands={config.num_buckets} rows={config.hashes_per_bucket} n_grams={config.n_grams} pairs={args.pairs}")
    print("target  jaccard  detected  1-(1-s^8)^14  sigma   z")
    for level in detection_table(args.shared_data, pairs=args.pairs, seed=args.seed, config=config):
        z = (level.detected - level.expected) / level.sigma if level.sigma else 0.0
        print(
            f"{level.target:6.2f}  {level.mean_jaccard:7.3f}  {level.detected:8.3f}  {level.expected:12.3f}"
            f"  {level.sigma:5.3f}  {z:+.1f}"
        )


if __name__ == "__main__":
    main()
