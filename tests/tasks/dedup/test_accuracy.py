"""MinHash detection rate on real text edited to known similarity follows the 14x8 banding curve."""

from __future__ import annotations

from benchmarks.dedup_accuracy import detection_table, lsh_probability

# a measured rate may stray this many standard deviations (plus one pair) from the curve
TOLERANCE_SIGMAS = 4


def test_detection_rate_follows_banding_curve(shared_data):
    levels = detection_table(shared_data, similarities=(0.5, 0.7, 0.8, 0.9, 1.0), pairs=30, seed=1)
    for level in levels:
        assert abs(level.mean_jaccard - level.target) < 0.05
        assert abs(level.detected - level.expected) <= TOLERANCE_SIGMAS * level.sigma + 1 / level.pairs, level
    rates = [level.detected for level in levels]
    assert rates[0] < 0.2 and rates[-1] == 1.0  # the curve's two ends: rarely at 0.5, always for copies


def test_lsh_probability_is_the_banding_curve():
    assert lsh_probability(1.0, 14, 8) == 1.0
    assert lsh_probability(0.0, 14, 8) == 0.0
    assert abs(lsh_probability(0.8, 14, 8) - 0.924) < 1e-3  # datatrove's own comment on its defaults
