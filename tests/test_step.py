"""The baseline-step detector (pipeline/detectors/step.py): against a slow reference, on beats.

* ``level_steps`` equals ``tests/naive.py``'s sample-by-sample reference (runs, gaps, NaN,
  time bins) for any data and any chunking, and its points do not depend on where a reading
  starts (what the explorer and a restarted stream rely on);
* on a beat-like signal it finds a baseline step of a quarter of the beat's height at 90 and
  360 Hz, within half a second, and raises nothing on the normal part;
* a slow signal turns it off with the reason; bad parameters get one-line errors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.calibrate import CalibrationWarning
from pipeline.detectors import Budget, StepDetector
from pipeline.detectors.step import level_steps
from pipeline.model_io import load_model, save_model

from naive import naive_level_steps

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
def test_level_steps_equal_the_sample_by_sample_reference_for_any_chunking(data, w, stride):
    n = data.draw(st.integers(0, 80), label="n")
    vals = data.draw(st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(math.nan),
                                        st.just(1e300)), min_size=n, max_size=n), label="values")
    gaps = data.draw(st.lists(st.tuples(st.integers(1, max(1, n - 1)), st.integers(1, 3)),
                              max_size=3), label="gaps")
    t = _times(n, 10, gaps)
    period = 1e8
    want = naive_level_steps(t.tolist(), vals, w, stride, period)
    got = level_steps(t, vals, w, stride, period)
    _same(got[:2], want)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=5), label="cuts")))
    carry, ts, ss = None, [], []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        t1, s1, carry = level_steps(t[a:b], vals[a:b], w, stride, period, carry)
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


def _fitted(rate, seconds=240):
    n = rate * seconds
    t, x = _times(n, rate), _beats(n, rate)
    half = n // 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det = StepDetector().fit([(t[:half], x[:half])], 1e9 / rate)
        det.calibrate([(t[:half], x[:half]), (t[half:], x[half:])], 1e9 / rate, Budget.per_day(1))
    return det


@pytest.mark.parametrize("rate", [90, 360])
def test_finds_a_baseline_step_on_beats_and_nothing_on_the_normal_part(rate):
    det = _fitted(rate)
    assert det.enabled_ and det.w_ == rate // 2
    n = rate * 60
    t = _times(n, rate) + 300 * 10**9
    x = _beats(n, rate, seed=9)
    x[rate * 40:] += 0.25  # a quarter of the beat's height, from 40 s on
    out = det.new_state().update_many(t, x)
    at = t[rate * 40]
    assert not out.alarm[out.times < at - 10**9].any()
    hits = out.times[out.alarm]
    assert len(hits) and abs(int(hits[0]) - at) <= 0.5e9
    # one episode: the alarm is held, then off once both windows sit on the new level
    episodes = np.count_nonzero(np.diff(np.r_[0, out.alarm.astype(int)]) == 1)
    assert episodes == 1 and not out.alarm[-1]


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
