"""pipeline.calibrate: thresholds for an alarm budget from held-out normal data, checked against
slow references and against the alarm rate they give on fresh data of the same kind."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.calibrate import (
    MIN_PEAKS,
    TARGET_PEAKS,
    CalibrationWarning,
    calibrate_threshold,
    cluster_peaks,
    count_events,
    fit_tail,
)

from naive import naive_exponential_threshold, naive_held_alarm_peaks

S = 10**9


def _series(n, seed, kind="gauss"):
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) * S
    if kind == "gauss":
        return t, np.abs(rng.standard_normal(n))
    if kind == "uniform":
        return t, rng.uniform(0, 1, n)
    return t, rng.pareto(3.0, n)


@pytest.mark.parametrize("seed", range(4))
def test_cluster_peaks_and_count_events_equal_the_naive_loop(seed):
    t, s = _series(3000, seed)
    s[::97] = np.nan
    for level, gap in [(1.5, 0), (2.0, 3 * S), (2.5, 30 * S)]:
        want = naive_held_alarm_peaks(t, s, level, gap)
        np.testing.assert_array_equal(cluster_peaks(t, s, level, gap), want)
        assert count_events([(t, s)], level, gap) == len(want)


def test_fit_tail_is_exponential_unless_a_heavy_tail_is_clear():
    rng = np.random.default_rng(0)
    x = rng.exponential(2.0, 2000)
    xi, scale = fit_tail(x)
    assert xi == 0.0 and scale == np.mean(x)
    xi, _ = fit_tail(rng.pareto(2.0, 2000))  # GPD with xi = 0.5
    assert 0.3 < xi <= 0.5
    # a bounded tail (uniform excesses, xi = -1) is never extrapolated as bounded
    xi, scale = fit_tail(rng.uniform(0, 1, 300))
    assert xi == 0.0 and scale == pytest.approx(0.5, rel=0.15)
    # too few excesses or all equal: the mean excess
    assert fit_tail([1.0, 2.0, 3.0]) == (0.0, 2.0)
    assert fit_tail(np.full(50, 0.25)) == (0.0, 0.25)


def test_evt_threshold_equals_the_exponential_formula():
    t, s = _series(4 * 3600, 1)  # 4 h at 1 Hz
    c = calibrate_threshold([(t, s)], 4.0, 0.01, 0, warn=False)
    assert c.method == "evt" and c.shape == 0.0
    peaks = cluster_peaks(t, s, c.level, 0)
    assert c.n_peaks == len(peaks) >= TARGET_PEAKS
    want = naive_exponential_threshold(peaks.tolist(), c.level, 0.01, 4.0)
    assert c.threshold == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind,per_hour", [("gauss", 1.0), ("gauss", 0.1), ("pareto", 1.0)])
def test_realized_alarm_rate_on_fresh_data_is_near_the_budget(kind, per_hour):
    """Calibrate on 6 h, count events on 300 h of fresh data of the same kind: never more than
    3x the budget, and not absurdly below it (the exponential tail is conservative for the
    Gaussian's lighter tail, by up to ~8x at 0.1 per hour; the GPD follows the Pareto's)."""
    gap = 10 * S
    t, s = _series(6 * 3600, 11, kind)
    c = calibrate_threshold([(t, s)], 6.0, per_hour, gap, warn=False)
    t2, s2 = _series(300 * 3600, 12, kind)
    rate = count_events([(t2, s2)], c.threshold, gap) / 300.0
    assert per_hour / 10 <= rate <= per_hour * 3, (c.method, c.shape, rate)


def test_a_bounded_statistic_never_gets_a_threshold_inside_its_range():
    t, s = _series(3600, 3, "uniform")
    c = calibrate_threshold([(t, s)], 1.0, 1 / 24, S, warn=False)
    assert c.threshold > c.max_stat
    assert count_events([_series(100 * 3600, 4, "uniform")], c.threshold, S) == 0


def test_the_level_is_lowered_until_there_are_enough_peaks():
    # 20 min at 1 Hz, 5 s hold: 21 clusters above the 98 % quantile, 42 above the 95 %
    t, s = _series(1200, 5)
    c = calibrate_threshold([(t, s)], 1 / 3, 1.0, 5 * S, warn=False)
    assert len(cluster_peaks(t, s, float(np.quantile(s, 0.98)), 5 * S)) < TARGET_PEAKS
    assert c.level == float(np.quantile(s, 0.95)) and c.n_peaks >= TARGET_PEAKS
    # with a 30 s hold, lower levels merge clusters (14, 11, 4, 1 peaks): the 98 % level stays
    c = calibrate_threshold([(t, s)], 1 / 3, 1.0, 30 * S, warn=False)
    assert c.level == float(np.quantile(s, 0.98)) and c.n_peaks == 14


def test_too_few_peaks_fall_back_to_the_maximum_with_a_warning():
    t = np.arange(100, dtype=np.int64) * S
    s = np.r_[np.zeros(95), [1.0, 2.0, 3.0, 2.0, 1.0]]
    with pytest.warns(CalibrationWarning, match="no tail to extrapolate"):
        c = calibrate_threshold([(t, s)], 100 / 3600, 1 / 24, 10 * S)
    assert c.method == "max" and c.n_peaks < MIN_PEAKS and c.threshold == pytest.approx(3.75)


def test_empirical_floor_when_the_budget_allows_events():
    t, s = _series(10 * 3600, 6)
    c = calibrate_threshold([(t, s)], 10.0, 3.0, 5 * S, warn=False)
    assert count_events([(t, s)], c.threshold, 5 * S) <= math.floor(3.0 * 10) == 30
    assert c.n_events == count_events([(t, s)], c.threshold, 5 * S)


def test_bad_budget_and_empty_data_are_clear_errors():
    t, s = _series(100, 0)
    with pytest.raises(ValueError, match="budget must be a positive"):
        calibrate_threshold([(t, s)], 1.0, 0.0, S)
    with pytest.raises(ValueError, match="no held-out scores"):
        calibrate_threshold([(t, np.full(100, np.nan))], 1.0, 1.0, S)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibrate_threshold([(t, s)], 1.0, 1.0, S, warn=False)  # warn=False stays silent


def _runs_every_half_second(seconds, seed, rate=360):
    """Values that never repeat, except one run of identical readings every 0.5 s: 2 samples plus
    a geometric number more (half of the runs are longer than 2 samples)."""
    rng = np.random.default_rng(seed)
    x = np.arange(seconds * rate) * 0.01  # a ramp: consecutive samples differ
    for start in range(0, len(x) - 40, rate // 2):
        x[start:start + 1 + rng.geometric(0.5)] = x[start]
    return np.arange(len(x)) * (10**9 // rate), x


def test_exceedances_denser_than_the_hold_still_give_a_tail_fit():
    """A flat run's length on a noisy 360 Hz EKG: short runs come twice a second, closer than the
    1 s hold, so above the 90-98 % quantiles they merge into one cluster and there are no peaks
    to fit. A higher level separates them; a threshold from the largest held-out run instead
    (1.25 x it) gave 11-104 alarm events in 4 h of the same normal process at 1 per hour."""
    from pipeline.detectors.flatline import FlatLineDetector, flat_runs

    period = 1e9 / 360
    det = FlatLineDetector().fit([_runs_every_half_second(60, 0)], period)
    with pytest.warns(CalibrationWarning):
        det.calibrate([_runs_every_half_second(120, 1)], period, 1.0)
    assert det.calibration_["method"] == "evt-lattice" and det.calibration_["n_peaks"] >= MIN_PEAKS
    t, x = _runs_every_half_second(4 * 3600, 2)
    flat, _ = flat_runs(t, x, det.tol_, period)
    assert count_events([(t, flat)], det.threshold_, det.hold_ns()) <= 6  # budget: 4 in 4 h


def test_rounding_on_a_lattice_point_makes_no_peaks():
    """A median of quantized readings (the noise detector's) sits on a few lattice points, each
    with rounding noise: 0.015 and 0.015000000000000008. Those were once counted as 77 peaks
    over a 0.015 level, their excesses of 1e-18 fitted as a tail, and the threshold was the
    largest held-out value itself; the next hour's one window a step higher alarmed."""
    rng = np.random.default_rng(0)
    n = 5000
    k = np.where(rng.random(n) < 0.9, 4, 6)  # 0.010 and 0.015 mV
    k[rng.choice(n, 5, replace=False)] = 8  # five windows at 0.020
    stat = k * 0.0025 + rng.integers(-2, 3, n) * np.spacing(0.015)
    t = np.arange(n) * (S // 8)
    with pytest.warns(CalibrationWarning, match="evt-lattice"):
        c = calibrate_threshold([(t, stat)], n / 8 / 3600, 1 / 24, S)
    # the tail fitted on whole steps (0.010 -> 0.015 -> 0.020): above the largest held-out value
    assert c.method == "evt-lattice" and abs(c.level - 0.01) < 1e-9
    assert c.threshold > 0.02 + 0.0025 - 1e-9


def test_times_rounded_to_microseconds_keep_the_flat_line_threshold():
    """Times read from a CSV are rounded to the microsecond: at 360 Hz consecutive samples are
    2777 or 2778 µs apart, and a flat run's length comes out as 0.002777 or 0.002778 s. That is
    still one lattice point; once it was read as a 1 µs lattice and the threshold fell to the
    3-sample floor."""
    from pipeline.detectors.flatline import FlatLineDetector

    period = 1e9 / 360
    got = {}
    for name, rnd in (("ns", 1), ("us", 1000)):
        runs = []
        for seconds, seed in ((60, 0), (120, 1)):
            t, x = _runs_every_half_second(seconds, seed)
            runs.append(((np.round(t / rnd) * rnd).astype(np.int64), x))
        det = FlatLineDetector().fit(runs[:1], period)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            det.calibrate(runs[1:], period, 1.0)
        got[name] = (det.calibration_["method"], det.threshold_ * 360)
    assert got["us"][0] == got["ns"][0] == "evt-lattice"
    assert abs(got["us"][1] - got["ns"][1]) < 0.01  # the same threshold, in sample periods
