"""The windowed detectors (pipeline/detectors/windowed.py): the baseline step and the noise level.

* their scores equal ``tests/naive.py``'s sample-by-sample references (runs, gaps, NaN, time
  bins) for any data and any chunking, and their points do not depend on where a reading
  starts (what the explorer and a restarted stream rely on);
* on a beat-like signal the step detector finds a baseline step of a quarter of the beat's
  height, and the noise detector a second of noise, at 90 and 360 Hz, within half a second,
  and neither raises anything on the normal part;
* a slow signal turns them off with the reason; bad parameters get one-line errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.calibrate import CalibrationWarning
from pipeline.detectors import Budget, NoiseDetector, StepDetector
from pipeline.detectors.step import _step, level_steps
from pipeline.detectors.windowed import window_scores
from pipeline.model_io import load_model, save_model

from naive import naive_level_steps, naive_noise_levels

T0 = 1_767_225_600_000_000_000


def _times(n, rate, gaps=()):
    t = T0 + np.round(np.arange(n) * 1e9 / rate).astype(np.int64)
    for i, d in gaps:  # a gap of d periods before sample i
        t[i:] += int(d * 1e9 / rate)
    return t


def _beats(n, rate, seed=0):
    """A beat every 0.8 s (a narrow peak of height 1), quantized noise: an EKG-like series."""
    rng = np.random.default_rng(seed)
    ph = (np.arange(n) / rate) % 0.8
    x = np.exp(-0.5 * ((ph - 0.3) / 0.015) ** 2) + 0.2 * np.exp(-0.5 * ((ph - 0.55) / 0.05) ** 2)
    return np.round(x + 0.01 * rng.standard_normal(n), 2)


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a[0], np.int64), np.asarray(b[0], np.int64))
    np.testing.assert_array_equal(np.asarray(a[1], float), np.asarray(b[1], float))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), w=st.integers(1, 6), stride=st.integers(1, 4))
def test_scores_equal_the_sample_by_sample_references_for_any_chunking(data, w, stride):
    n = data.draw(st.integers(0, 80), label="n")
    vals = data.draw(st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(math.nan),
                                        st.just(1e300)), min_size=n, max_size=n), label="values")
    gaps = data.draw(st.lists(st.tuples(st.integers(1, max(1, n - 1)), st.integers(1, 3)),
                              max_size=3), label="gaps")
    t = _times(n, 10, gaps)
    period = 1e8
    noise = NoiseDetector()
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=5), label="cuts")))
    for (span, offset, score), naive in (((2 * w, w, _step), naive_level_steps),
                                         ((w + 1, noise._offset(w), noise._score),
                                          naive_noise_levels)):
        want = naive(t.tolist(), vals, w, stride, period)
        _same(window_scores(t, vals, span, offset, stride, period, score)[:2], want)
        carry, ts, ss = None, [], []  # the same in chunks, the carry passed on
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            t1, s1, carry = window_scores(t[a:b], vals[a:b], span, offset, stride, period,
                                          score, carry)
            ts.append(t1)
            ss.append(s1)
        _same((np.concatenate(ts), np.concatenate(ss)), want)


@pytest.mark.parametrize("start", [1, 7, 13, 101])
def test_points_do_not_depend_on_where_a_reading_starts(start):
    t, x = _times(3000, 90), _beats(3000, 90)
    full = level_steps(t, x, 45, 5, 1e9 / 90)
    part = level_steps(t[start:], x[start:], 45, 5, 1e9 / 90)
    keep = full[0] >= part[0][0]
    _same(part[:2], (full[0][keep], full[1][keep]))


def _fitted(rate, seconds=240, kind=StepDetector):
    n = rate * seconds
    t, x = _times(n, rate), _beats(n, rate)
    half = n // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det = kind().fit([(t[:half], x[:half])], 1e9 / rate)
        det.calibrate([(t[:half], x[:half]), (t[half:], x[half:])], 1e9 / rate, Budget.per_day(1))
    return det


def _step_fault(x, rate):
    x[rate * 40:] += 0.25  # a quarter of the beat's height, from 40 s on


def _noise_fault(x, rate):  # one second of noise, sd 5 % of a beat
    x[rate * 40:rate * 41] += np.round(0.05 * np.random.default_rng(5).standard_normal(rate), 2)


@pytest.mark.parametrize("rate", [90, 360])
@pytest.mark.parametrize("kind, fault, other", [(StepDetector, _step_fault, _noise_fault),
                                                (NoiseDetector, _noise_fault, _step_fault)],
                         ids=["step", "noise"])
def test_finds_its_fault_on_beats_and_nothing_on_the_normal_part_nor_on_the_other(
        rate, kind, fault, other):
    det = _fitted(rate, kind=kind)
    assert det.enabled_ and det.w_ == rate // 2
    n = rate * 60
    t = _times(n, rate) + 300 * 10**9
    x = _beats(n, rate, seed=9)
    fault(x, rate)
    out = det.new_state().update_many(t, x)
    at = t[rate * 40]
    assert not out.alarm[out.times < at - 10**9].any()
    hits = out.times[out.alarm]
    assert len(hits) and abs(int(hits[0]) - at) <= 0.5e9
    # one episode: the alarm is held, then off once the windows are past the fault's start
    episodes = np.count_nonzero(np.diff(np.r_[0, out.alarm.astype(int)]) == 1)
    assert episodes == 1 and not out.alarm[-1]
    # a baseline step is not noise, and noise is not a step
    y = _beats(n, rate, seed=9)
    other(y, rate)
    assert not det.new_state().update_many(t, y).alarm.any()


def test_model_file_round_trip_and_a_checkpoint_resume(tmp_path):
    det = _fitted(90, 120)
    save_model(tmp_path / "m.npz", [det])
    (back,) = load_model(tmp_path / "m.npz").detectors
    assert (back.w_, back.stride_, back.threshold_) == (det.w_, det.stride_, det.threshold_)
    t, x = _times(2000, 90) + 10**12, _beats(2000, 90, seed=3)
    x[1200:] -= 0.3
    want = det.new_state().update_many(t, x)
    a = back.new_state()
    first = a.update_many(t[:777], x[:777])
    b = back.new_state()
    b.set_data(*a.get_data())
    rest = b.update_many(t[777:], x[777:])
    np.testing.assert_array_equal(np.r_[first.times, rest.times], want.times)
    np.testing.assert_array_equal(np.r_[first.score, rest.score], want.score)
    np.testing.assert_array_equal(np.r_[first.alarm, rest.alarm], want.alarm)
    assert want.alarm.any()


def test_a_slow_signal_turns_it_off_with_the_reason():
    n = 20000
    t = _times(n, 0.5)  # a sensor every 2 s
    x = np.round(20 + 2 * np.sin(np.arange(n) * 2 * np.pi / 43200) + 0.02 *
                 np.random.default_rng(1).standard_normal(n), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det = StepDetector().fit([(t[:n // 2], x[:n // 2])], 2e9)
        det.calibrate([(t, x)], 2e9, Budget.per_day(1))
    assert det.w_ == 5 and det.slow_ and not det.enabled_
    assert "a slow signal" in det.describe() and "z-score" in det.describe()
    noise = NoiseDetector().fit([(t[:n // 2], x[:n // 2])], 2e9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        noise.calibrate([(t, x)], 2e9, Budget.per_day(1))
    assert not noise.enabled_ and "a noise burst on a slow signal" in noise.describe()
    on = StepDetector(slow="on").fit([(t[:n // 2], x[:n // 2])], 2e9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        on.calibrate([(t, x)], 2e9, Budget.per_day(1))
    assert on.enabled_


@pytest.mark.parametrize("params, message", [
    ({"window_s": 0}, "window_s must be a number of seconds in (0, 86400], got 0"),
    ({"window_s": True}, "window_s must be a number of seconds"),
    ({"min_samples": 1}, "min_samples must be an integer in [2, 1000000], got 1"),
    ({"stride": 0}, "stride must be an integer in [1, 1000000], got 0"),
    ({"slow": "maybe"}, "slow must be 'off' or 'on', got 'maybe'"),
    ({"window_s": 86400}, "window_s = 86400 s is 31,104,000 samples at this rate"),
])
def test_bad_parameters_get_one_line_errors(params, message):
    t = _times(100, 360)
    with pytest.raises(ValueError) as e:
        StepDetector(**params).fit([(t, np.zeros(100))], 1e9 / 360)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_training_on_a_stuck_sensor_is_refused_and_the_detectors_say_why(tmp_path):
    """A training range on one value throughout: ``train`` refuses it with a message (every
    threshold would be 0); fitted by hand, the windowed detectors call it a slow signal with an
    infinite ratio (this used to raise TypeError)."""
    from pipeline.train import TrainError, train

    n = 20000
    t = _times(n, 0.5)
    x = np.full(n, 21.0)
    with pytest.raises(TrainError, match="every training and validation sample is 21: a stuck"):
        train(t[:n // 2], x[:n // 2], t[n // 2:], x[n // 2:], out=tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    for kind in (StepDetector, NoiseDetector):
        det = kind().fit([(t[:n // 2], x[:n // 2])], 2e9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            det.calibrate([(t[n // 2:], x[n // 2:])], 2e9, Budget.per_day(1))
        assert not det.enabled_ and "vary infinitely more than within" in det.describe()


def test_a_long_run_is_scored_in_bounded_memory():
    """Windows are scored in blocks: the same numbers as one block, whatever the run length."""
    import pipeline.detectors.windowed as windowed

    t, x = _times(20000, 360), _beats(20000, 360)
    whole = level_steps(t, x, 180, 3, 1e9 / 360)
    saved = windowed._BLOCK
    try:
        windowed._BLOCK = 1000  # a few windows per block
        _same(level_steps(t, x, 180, 3, 1e9 / 360)[:2], whole[:2])
    finally:
        windowed._BLOCK = saved


def test_a_reader_of_a_window_reads_what_its_first_points_need():
    """The explorer's lead-in covers a window longer than its default minute."""
    from pipeline.window import lead_in_ns

    t = _times(3000, 1)
    det = StepDetector(window_s=90.0).fit([(t, _beats(3000, 1))], 1e9)
    assert det.lookback_ns() == 90 * 10**9 and det.lookahead_ns() == 89 * 10**9
    assert lead_in_ns([det], 1e9) >= det.lookback_ns()
    assert lead_in_ns([StepDetector().fit([(t, _beats(3000, 1))], 1e9)], 1e9) == 64 * 10**9


@pytest.mark.parametrize("w", [2, 5, 45, 180])
def test_the_running_median_path_equals_a_median_of_each_window(w):
    """The step's scores from running medians (``_step.at_ends``) equal ``np.median`` of each
    window gathered apart, bit for bit: quantized data with ties, NaN, a value beyond 1e100,
    gaps, chunks of any size. (The noise level has no fast path: its windows are always
    gathered, and ``test_scores_equal_the_sample_by_sample_references_for_any_chunking``
    compares them with the naive reference.)"""
    rng = np.random.default_rng(w)
    n = 20 * w + 500
    x = np.round(rng.standard_normal(n) * 3, 1)
    x[rng.integers(0, n, 5)] = np.nan
    x[rng.integers(0, n, 2)] = 1e300
    x[50:50 + 6 * w] = np.where(np.arange(6 * w) % 3, 0.0, -0.0)  # zeros of both signs
    t = _times(n, 90, gaps=[(n // 3, 2), (n // 2, 5)])
    span, offset, fn = 2 * w, w, _step
    assert hasattr(fn, "at_ends")

    def slow(win):  # no at_ends: window_scores gathers the windows apart
        return fn(win)

    for stride in (1, max(1, w // 8)):
        want = window_scores(t, x, span, offset, stride, 1e9 / 90, slow)
        assert len(want[0]) > 100 and np.isnan(want[1]).any() and np.isfinite(want[1]).any()
        got = window_scores(t, x, span, offset, stride, 1e9 / 90, fn)
        _same(got[:2], want[:2])
        fin = np.isfinite(want[1])  # the sign of a zero step too
        np.testing.assert_array_equal(np.signbit(got[1][fin]), np.signbit(want[1][fin]))
        carry, ts, ss = None, [], []
        for a in range(0, n, 7 * w + 3):
            t1, s1, carry = window_scores(t[a:a + 7 * w + 3], x[a:a + 7 * w + 3], span,
                                          offset, stride, 1e9 / 90, fn, carry)
            ts.append(t1)
            ss.append(s1)
        _same((np.concatenate(ts), np.concatenate(ss)), want[:2])
