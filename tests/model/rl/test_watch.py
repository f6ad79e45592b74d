"""Reply statistics and the reward-hacking watch on recorded (step, reward-model score, judge score) series."""

from __future__ import annotations

import json

import pytest

from fineforge.model.rl.watch import (
    RewardHackingWatch,
    WatchConfig,
    distinct_n,
    duplicate_ngram_share,
    fitted_change,
    ngrams,
    reply_statistics,
)


def test_repetition_and_distinct_n_by_hand():
    # "the the the the": bigrams (the the) x 3, one distinct -> 2 of 3 repeat an earlier one
    assert duplicate_ngram_share("the the the the", 2) == pytest.approx(2 / 3)
    assert duplicate_ngram_share("a cat sat on a mat", 2) == 0.0
    assert duplicate_ngram_share("a cat sat on a mat", 1) == pytest.approx(1 / 6)
    assert duplicate_ngram_share("", 2) == 0.0
    assert duplicate_ngram_share([7, 7, 7], 1) == pytest.approx(2 / 3)  # token ids work too
    # unigrams a b c a b d: 4 distinct of 6; bigrams ab bc ab bd: 3 distinct of 4
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([""], 2) == 0.0
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    with pytest.raises(ValueError, match="n must be >= 1"):
        ngrams([1], 0)


def test_reply_statistics_separate_healthy_from_degenerate_replies():
    healthy = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level."]
    degenerate = ["great great great great great great", "great great great great"]
    good, bad = reply_statistics(healthy), reply_statistics(degenerate)
    assert good["length"] == pytest.approx((6 + 9) / 2)
    assert good["repetition"] == 0.0 and bad["repetition"] == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert bad["distinct_1"] == pytest.approx(1 / 10) and good["distinct_1"] == pytest.approx(14 / 15)  # "at" twice
    with pytest.raises(ValueError, match="no replies"):
        reply_statistics([])


def test_fitted_change_is_the_least_squares_rise_across_the_window():
    assert fitted_change([0, 1, 2, 3], [0.35, 0.38, 0.36, 0.33]) == pytest.approx(-0.024)
    assert fitted_change([100, 200, 300], [1.0, 2.0, 3.0]) == pytest.approx(2.0)


# Recorded every 50 steps: the reward model's mean score keeps rising; the judge peaks at step 250 and falls.
STEPS = [50, 100, 150, 200, 250, 300, 350, 400, 450]
REWARD_MODEL = [0.0, 0.5, 1.0, 1.4, 1.9, 2.3, 2.8, 3.3, 3.9]
JUDGE = [0.10, 0.20, 0.30, 0.35, 0.38, 0.36, 0.33, 0.30, 0.26]


def run_watch(config: WatchConfig, reward_model=REWARD_MODEL, judge=JUDGE) -> tuple[RewardHackingWatch, list[bool]]:
    watch = RewardHackingWatch(config)
    return watch, [watch.update(s, r, j) for s, r, j in zip(STEPS, reward_model, judge, strict=True)]


def test_watch_fires_when_the_judge_turns_down_and_names_the_best_step():
    watch, fired = run_watch(WatchConfig(window=4))
    # judge lines over 4 evaluations (per evaluation): ending at 300: 0.30 .35 .38 .36 -> +0.021, no;
    # ending at 350: .35 .38 .36 .33 -> -0.008 while the reward model rises: fire
    assert fired == [False] * 6 + [True] * 3
    assert watch.fired_at == 350
    assert watch.best_step == 250


def test_thresholds_wait_for_a_clear_fall():
    # the fall across the window ending at 350 is 3 x 0.008 = 0.024; at 400 (.38 .36 .33 .30) 3 x 0.027 = 0.081
    watch, _ = run_watch(WatchConfig(window=4, min_fall=0.03))
    assert watch.fired_at == 400 and watch.best_step == 250
    watch, _ = run_watch(WatchConfig(window=4, min_rise=5.0))
    assert watch.fired_at is None


def test_no_alarm_when_both_rise_or_both_fall():
    watch, fired = run_watch(WatchConfig(window=4), judge=[0.1 * i for i in range(9)])
    assert not any(fired) and watch.best_step == 450
    collapsing = list(reversed(REWARD_MODEL))
    watch, fired = run_watch(WatchConfig(window=4), reward_model=collapsing)
    assert not any(fired)


def test_noise_on_a_plateau_needs_min_fall():
    plateau = [0.30, 0.31, 0.29, 0.30, 0.31, 0.30, 0.31, 0.29, 0.30]
    # the window .30 .31 .29 .30 (ending at 200) falls by 3 x 0.002 = 0.006: noise
    watch, _ = run_watch(WatchConfig(window=4), judge=plateau)
    assert watch.fired_at == 200
    watch, _ = run_watch(WatchConfig(window=4, min_fall=0.02), judge=plateau)
    assert watch.fired_at is None and watch.best_step == 100


def test_watch_input_checks():
    with pytest.raises(ValueError, match="WatchConfig.window"):
        WatchConfig(window=2)
    with pytest.raises(ValueError, match="min_rise"):
        WatchConfig(min_rise=-1)
    watch = RewardHackingWatch()
    assert watch.best_step is None
    watch.update(10, 0.0, 0.0)
    with pytest.raises(ValueError, match="steps must increase"):
        watch.update(10, 0.1, 0.1)


def test_a_restored_watch_fires_where_the_uninterrupted_one_does():
    config = WatchConfig(window=4, min_rise=0.5, min_fall=0.02)
    whole, fired = run_watch(config)
    half = RewardHackingWatch(config)
    for step, score, judge in zip(STEPS[:5], REWARD_MODEL[:5], JUDGE[:5], strict=True):
        half.update(step, score, judge)
    resumed = RewardHackingWatch.restored(config, json.loads(json.dumps(half.state())))
    for step, score, judge in zip(STEPS[5:], REWARD_MODEL[5:], JUDGE[5:], strict=True):
        resumed.update(step, score, judge)
    assert resumed.fired_at == whole.fired_at is not None and resumed.best_step == whole.best_step == 250
    assert resumed.points == whole.points
