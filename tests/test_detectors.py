"""The detector protocol, checked for every registered detector.

For each detector in :data:`pipeline.detectors.REGISTRY` (a new one without a setup here fails
``test_every_registered_detector_has_a_setup``):

(a) any chunking of the input gives the same output as one chunk;
(b) the streaming state survives ``get_data`` -> JSON text + ``.npz`` arrays -> ``set_data`` on a
    fresh state: the next chunk's output is identical to the uninterrupted state's;
(c) ``to_data``/``from_data`` of the fitted detector scores identically;
(d) after ``calibrate`` on held-out normal data, a fresh state over that same data raises as
    many alarm events (maximal runs of ``alarm``) as calibration counted, within the budget;
(e) NaN in gives NaN out and never an alarm.

Plus the kernels against slow loops in ``tests/naive.py``: ``flat_runs``, ``hold_alarm``,
``calibrate.cluster_peaks``/``count_events``; the extreme-value threshold on i.i.d.
exponential data against the true quantile; and the CalibrationWarning for short data.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.calibrate import (
    CalibrationWarning,
    calibrate_threshold,
    cluster_peaks,
    count_events,
)
from pipeline.datafile import encode_data, read_data
from pipeline.datasets import synthetic_ekg
from pipeline.detectors import REGISTRY, Budget, Detector, hold_alarm, make_detectors
from pipeline.detectors.flatline import flat_runs
from pipeline.detectors.windowed import WindowDetector

from naive import naive_flat_runs, naive_held_alarm_peaks, naive_hold_alarm, naive_runs_of_true

EKG_RATE = 360
EKG_PERIOD = 1e9 / EKG_RATE
SENSOR_PERIOD = 2e9
EVIDENCE = {"threshold", "method", "budget_per_hour", "budget_per_day", "hours", "n_events",
            "n_peaks", "level", "shape", "scale", "max_stat", "hours_to_confirm", "warning"}


@dataclass
class Case:
    """A detector with its data: fit runs, one held-out normal run, a test run with faults."""

    name: str
    params: dict
    period: float
    fit_runs: list
    heldout: tuple
    test: tuple
    nan_at: tuple  # indices of the test run set to NaN in (e): quiet normal stretches


def _ekg_case(name, params, noise=False):
    d, _ = synthetic_ekg(duration_s=70, normal_s=50, seed=4)  # anomalies at 55 s and 67 s
    x = np.round(d.value.to_numpy() / 0.005) * 0.005  # an ADC's quantum
    t = np.round(np.arange(len(x)) * EKG_PERIOD).astype(np.int64)
    a, b = 20 * EKG_RATE, 50 * EKG_RATE
    tt, xt = t[b:].copy(), x[b:].copy()
    xt[1000:1400] = 0.0  # zeroed samples: a flat line
    xt[3000] += 2.0  # a spike (centred shape segments barely see this series' PVC)
    if noise:  # a second of noise, sd 0.1 mV
        xt[5000:5360] += np.round(np.random.default_rng(7).normal(0, 0.1, 360) / 0.005) * 0.005
    keep = np.r_[0:2000, 2100:len(tt)]  # and a gap of 100 samples
    return Case(name, params, EKG_PERIOD, [(t[:a], x[:a])], (t[a:b], x[a:b]),
                (tt[keep], xt[keep]), (300, 301, 302, 700))


def _sensor_case(name, params):
    rng = np.random.default_rng(2)
    n = 5400 + 10800 + 5400  # 3 h fit, 6 h held out, 3 h test at 2 s
    t = np.arange(n, dtype=np.int64) * 2 * 10**9
    x = 20 + 0.3 * np.sin(2 * np.pi * t / 86400e9) + 0.1 * rng.standard_normal(n)
    a, b = 5400, 16200
    tt, xt = t[b:].copy(), x[b:].copy()
    xt[1500:1503] += 3.0  # a spike
    xt[3000:4800] += np.linspace(0, 3.0, 1800)  # a drift over an hour
    xt = np.round(xt, 2)
    x = np.round(x, 2)
    return Case(name, params, SENSOR_PERIOD, [(t[:a], x[:a])], (t[a:b], x[a:b]), (tt, xt),
                (200, 201, 202, 400))


SETUPS = {
    "shape": lambda: _ekg_case("shape", {"n_clusters": 8}),
    "flatline": lambda: _ekg_case("flatline", {}),
    "step": lambda: _ekg_case("step", {}),
    "noise": lambda: _ekg_case("noise", {}, noise=True),
    "zscore": lambda: _sensor_case("zscore", {}),
    "drift": lambda: _sensor_case("drift", {"halflife_s": 600.0}),
}
LOOSE_EVENTS = 10  # the loose budget allows this many events on the held-out run


PER_KEY = sorted(n for n, kind in REGISTRY.items() if not kind.cross_key)
"""A cross-key detector (the fleet's) is checked against the same points, for a fleet, by
``tests/test_fleet_detector.py``."""


def test_every_registered_detector_has_a_setup():
    assert set(SETUPS) == set(PER_KEY)
    assert set(REGISTRY) - set(PER_KEY) == {"fleet"}
    for name, kind in REGISTRY.items():
        assert kind.name == name and issubclass(kind, Detector)


def _hours(case):
    t = case.heldout[0]
    return (int(t[-1]) - int(t[0]) + case.period) / 3.6e12


def _fit(case, budget=None):
    (det,) = make_detectors([case.name], **{case.name: case.params})
    det.fit(case.fit_runs, case.period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det.calibrate([case.heldout], case.period, budget or Budget(LOOSE_EVENTS / _hours(case)))
    return det


@pytest.fixture(scope="module", params=PER_KEY)
def case(request):
    return SETUPS[request.param]()


@pytest.fixture(scope="module")
def det(case):
    d = _fit(case)
    assert d.enabled_, d.calibration_
    return d


def _concat(outs):
    """One DetectorOutput-like dict from several chunks' outputs."""
    return {"times": np.concatenate([o.times for o in outs]),
            "score": np.concatenate([o.score for o in outs]),
            "alarm": np.concatenate([o.alarm for o in outs]),
            "extra": {k: np.concatenate([o.extra[k] for o in outs]) for k in outs[0].extra},
            "threshold": {o.threshold for o in outs}}


def _assert_same(got, want, det, exact=False):
    np.testing.assert_array_equal(got["times"], want["times"])
    if exact or not det.per_sample:  # segments to the bit
        np.testing.assert_array_equal(got["score"], want["score"])
    else:  # chunk boundaries move the anchors of rolling sums
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    assert got["extra"].keys() == want["extra"].keys() == set(det.extra_fields)
    for k in got["extra"]:
        if exact or got["extra"][k].dtype.kind != "f":
            np.testing.assert_array_equal(got["extra"][k], want["extra"][k], err_msg=k)
        else:
            np.testing.assert_allclose(got["extra"][k], want["extra"][k], rtol=1e-12,
                                       atol=1e-12, err_msg=k)
    assert got["threshold"] == want["threshold"] == {det.threshold_}


def _whole(det, t, x):
    return _concat([det.new_state().update_many(t, x)])


# -- (a) chunking ------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_equals_one_chunk(det, case, data):
    t, x = case.test
    n = len(t)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8), label="cuts"))  # empty chunks too
    state = det.new_state()
    outs = [state.update_many(t[a:b], x[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    want = _whole(det, t, x)
    _assert_same(_concat(outs), want, det)
    assert want["alarm"].any() and not want["alarm"].all()  # the comparison covers alarms


# -- (b) streaming state as data -------------------------------------------------------------
def _through_files(meta, arrays):
    """What a checkpoint does to a state: the data file's own bytes (JSON, no NaN; .npz, no
    pickle), read back."""
    return read_data(io.BytesIO(encode_data(meta, arrays)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_state_as_data_resumes_exactly(det, case, data):
    t, x = case.test
    n = len(t)
    first = data.draw(st.integers(0, n), label="first")
    second = data.draw(st.integers(first, n), label="second")
    a = det.new_state()
    a.update_many(t[:first], x[:first])
    b = det.new_state()
    b.set_data(*_through_files(*a.get_data()))
    # the restored state holds the same data ...
    assert json.dumps(b.get_data()[0], sort_keys=True) == json.dumps(a.get_data()[0], sort_keys=True)
    for k, arr in a.get_data()[1].items():
        np.testing.assert_array_equal(b.get_data()[1][k], arr)
    # ... and goes on exactly as the uninterrupted one, chunk after chunk
    for lo, hi in ((first, second), (second, n)):
        _assert_same(_concat([b.update_many(t[lo:hi], x[lo:hi])]),
                     _concat([a.update_many(t[lo:hi], x[lo:hi])]), det, exact=True)


# -- (c) the fitted detector as data -----------------------------------------------------------
def test_detector_as_data_scores_identically(det, case):
    meta, arrays = det.to_data()
    meta, arrays = _through_files(meta, arrays)
    back = Detector.from_data(meta, arrays)
    assert type(back) is type(det) and back.get_params() == det.get_params()
    assert (back.enabled_, back.threshold_, back.period_ns_) == (det.enabled_, det.threshold_,
                                                               det.period_ns_)
    assert back.calibration_ == json.loads(json.dumps(det.calibration_))
    assert back.to_data()[0] == meta
    _assert_same(_whole(back, *case.test), _whole(det, *case.test), det, exact=True)
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        Detector.from_data({**meta, "name": "nope"}, arrays)


# -- (d) calibration keeps the held-out data within the budget ---------------------------------
@pytest.mark.parametrize("budget_kind", ["tight", "loose"])
def test_calibrated_alarm_events_on_held_out_data_stay_within_the_budget(case, budget_kind):
    hours = _hours(case)
    budget = Budget.per_day(1) if budget_kind == "tight" else Budget(LOOSE_EVENTS / hours)
    det = _fit(case, budget)
    c = det.calibration_
    assert EVIDENCE <= set(c), set(EVIDENCE) - set(c)
    assert c["threshold"] == det.threshold_ and c["hours"] == pytest.approx(hours)
    assert c["budget_per_hour"] == pytest.approx(budget.per_hour)
    assert c["method"] in ("evt", "evt-lattice", "empirical", "max")
    if det.name in ("zscore", "drift"):
        assert c["streak"] == det.streak_
    out = det.new_state().update_many(*case.heldout)
    n_events = naive_runs_of_true(out.alarm)
    assert n_events == c["n_events"] <= math.floor(budget.per_hour * hours)
    if budget_kind == "loose" and c["method"] != "max":
        assert c["n_events"] >= 1  # the loose budget is used: the count is not trivially 0


# -- (e) NaN in, NaN out, never an alarm -------------------------------------------------------
@pytest.fixture
def nan_case(case, request):
    return case


def test_nan_in_nan_out_never_an_alarm(det, nan_case):
    case = nan_case
    t, x = case.test
    y = x.copy()
    nan_at = list(case.nan_at)
    y[nan_at] = np.nan
    out = det.new_state().update_many(t, y)
    clean = det.new_state().update_many(t, x)
    lo, hi = t[max(0, min(nan_at) - 20)], t[max(nan_at) + 20]
    near = (clean.times >= lo) & (clean.times <= hi)
    near_out = (out.times >= lo) & (out.times <= hi)
    # the NaN adds no alarm: none where the clean run has none (per sample), and no more alarm
    # points than the clean run around it (a segment detector re-segments after the break)
    assert out.alarm[near_out].sum() <= clean.alarm[near].sum()
    if det.per_sample:
        assert not (out.alarm & ~clean.alarm).any()
    if det.per_sample:
        assert np.isnan(out.score[nan_at]).all()
    elif isinstance(det, WindowDetector):  # a point whose window holds a NaN sample scores NaN
        near = min(det._offset(det.w_), det._span(det.w_) - 1 - det._offset(det.w_))
        for i in nan_at:
            covering = np.abs(out.times - t[i]) <= near * case.period
            assert covering.any() and np.isnan(out.score[covering]).all()
    else:  # no segment spans a NaN sample: it breaks the run, like a gap (no score, no alarm)
        half = det.segment_len // 2
        for i in nan_at:
            covering = np.abs(out.times - t[i]) < half * case.period
            assert not covering.any()
    # and the state recovers: the end of the run scores as without the NaN
    assert np.isfinite(out.score[-10:]).all()
    # a state that has just seen a NaN is still plain data (a checkpoint holds no NaN)
    k = max(nan_at) + 1
    a = det.new_state()
    a.update_many(t[:k], y[:k])
    b = det.new_state()
    b.set_data(*_through_files(*a.get_data()))
    _assert_same(_concat([b.update_many(t[k:], y[k:])]), _concat([a.update_many(t[k:], y[k:])]),
                 det, exact=True)


# -- kernels against slow loops ----------------------------------------------------------------
_STEPS = st.sampled_from([1.0, 1.0, 1.0, 1.0, 1.4, 1.5, 3.0])
_VALUES = st.sampled_from([0.0, 0.0, 1.0, 1.0, 1.004, 2.0, float("nan"), float("inf"), 1e100, 1e100,
                          1.7e308, -1.7e308])  # beyond 1e100: taken as NaN (docs/extremes.md)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_STEPS, min_size=1, max_size=60), data=st.data(),
       tol=st.sampled_from([0.0, 0.005]))
def test_flat_runs_equals_naive_loop_in_any_chunking(steps, data, tol):
    period = 1000
    t = 10**15 + np.round(np.cumsum([0.0, *steps[1:]]) * period).astype(np.int64)
    v = np.array(data.draw(st.lists(_VALUES, min_size=len(t), max_size=len(t)), label="v"))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(t)), max_size=5), label="cuts"))
    want, want_carry = naive_flat_runs(t, v, tol, period)
    got, carry = [], None
    for a, b in zip([0, *cuts], [*cuts, len(t)], strict=True):
        s, carry = flat_runs(t[a:b], v[a:b], tol, period, carry)
        got.append(s)
    np.testing.assert_array_equal(np.concatenate(got), np.array(want))
    assert carry[0] == want_carry[0] and carry[1] == want_carry[1]
    assert carry[2] == want_carry[2] or (math.isnan(carry[2]) and math.isnan(want_carry[2]))


@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.integers(1, 50), min_size=0, max_size=60), data=st.data(),
       hold=st.integers(0, 60), start_hit=st.one_of(st.none(), st.integers(-80, 0)))
def test_hold_alarm_equals_naive_loop_in_any_chunking(gaps, data, hold, start_hit):
    t = np.cumsum([0, *gaps]).astype(np.int64)[: len(gaps)]
    raw = np.array(data.draw(st.lists(st.booleans(), min_size=len(t), max_size=len(t))), bool)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(t)), max_size=5), label="cuts"))
    want, want_last = naive_hold_alarm(t, raw, hold, start_hit)
    got, last = [], start_hit
    for a, b in zip([0, *cuts], [*cuts, len(t)], strict=True):
        alarm, last = hold_alarm(t[a:b], raw[a:b], hold, last)
        got.append(alarm)
    assert np.concatenate(got).tolist() == want and last == want_last


@pytest.mark.parametrize("hold", [1, 3, 5])
def test_held_alarm_episodes_are_the_events_calibration_counts(hold):
    t = np.arange(60, dtype=np.int64)
    raw = np.zeros(60, bool)
    # hits hold apart (one event), then more than hold + 1 sample later (another), then alone
    raw[[5, 5 + hold, 5 + 2 * hold + 2, 50]] = True
    alarm, _ = hold_alarm(t, raw, hold, None)
    assert naive_runs_of_true(alarm) == count_events([(t, raw.astype(float))], 0.5, hold) == 3


def test_held_alarm_episodes_are_the_events_calibration_counts_one_sample_past_the_hold():
    t = np.array([0, 1, 2], np.int64)
    raw = np.array([True, False, True])
    alarm, _ = hold_alarm(t, raw, 1, None)
    assert naive_runs_of_true(alarm) == count_events([(t, raw.astype(float))], 0.5, 1)


@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.integers(1, 30), min_size=1, max_size=60), data=st.data(),
       level=st.sampled_from([0.0, 1.0, 2.5]), gap_ns=st.integers(0, 40))
def test_cluster_peaks_and_count_events_equal_naive_loop(gaps, data, level, gap_ns):
    t = np.cumsum(gaps).astype(np.int64)
    s = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, float("nan")]),
                                    min_size=len(t), max_size=len(t))))
    want = naive_held_alarm_peaks(t, s, level, gap_ns)
    assert cluster_peaks(t, s, level, gap_ns).tolist() == want
    k = len(t) // 2  # several runs: events never merge across runs
    runs = [(t[:k], s[:k]), (t[k:], s[k:])]
    assert count_events(runs, level, gap_ns) == sum(
        len(naive_held_alarm_peaks(a, b, level, gap_ns)) for a, b in runs)
    # and those are the runs of the held alarm
    alarm, _ = hold_alarm(t, s > level, gap_ns, None)
    assert naive_runs_of_true(alarm) == len(want)


# -- the extreme-value threshold ---------------------------------------------------------------
@pytest.mark.parametrize("hours, per_hour, tol", [
    (20.0, 1.0, 0.5),    # 20 events allowed: well inside the data
    (10.0, 0.1, 1.0),    # one event in 10 h: at the edge of the data, extrapolated by the tail
    (10.0, 0.01, 1.5),   # one in 100 h: beyond the data, only the tail fit says where
])
def test_evt_threshold_on_exponential_data_is_near_the_true_quantile(hours, per_hour, tol):
    """1 Hz i.i.d. Exp(1) statistic: the rate of hits above t is 3600 e^-t per hour, so the
    threshold for ``per_hour`` events per hour is ln(3600 / per_hour)."""
    true_t = math.log(3600 / per_hour)
    got = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = int(hours * 3600)
        t = np.arange(n, dtype=np.int64) * 10**9
        c = calibrate_threshold([(t, rng.exponential(size=n))], hours, per_hour, gap_ns=0,
                                warn=False)
        assert c.method in ("evt", "empirical") and c.n_peaks >= 100
        assert c.shape == pytest.approx(0.0, abs=0.1) and c.scale == pytest.approx(1.0, rel=0.1)
        got.append(c.threshold)
    assert abs(np.median(got) - true_t) < tol / 2, (got, true_t)
    assert max(abs(g - true_t) for g in got) < tol, (got, true_t)


def test_lattice_statistic_threshold_keeps_the_true_rate_within_budget():
    """flat_s-like statistic at 90 Hz, 1 Hz for 2 h: k whole periods with P(k >= r) = 0.05^r."""
    rng = np.random.default_rng(1)
    n = 7200
    k = rng.geometric(0.95, size=n) - 1
    t = np.arange(n, dtype=np.int64) * 10**9
    stat = k / 90 + rng.uniform(0, 1e-9, n)  # the ns rounding of real timestamps
    c = calibrate_threshold([(t, stat)], 2.0, 1 / 24, 0, warn=False)
    r = math.floor(c.threshold * 90 + 1e-6)  # alarms where k > r
    true_per_day = 86400 * 0.05 ** (r + 1)
    assert true_per_day <= 1.0, (c.threshold * 90, c.method, c.shape, c.scale)


def test_calibration_warns_when_the_held_out_data_cannot_confirm_the_budget():
    rng = np.random.default_rng(0)
    t = np.arange(7200, dtype=np.int64) * 10**9  # 2 h at 1 Hz
    stats = [(t, rng.exponential(size=7200))]
    with pytest.warns(CalibrationWarning, match=r"covers 2 h; confirming a budget of 1 alarm "
                                                r"events per hour needs about 3 h \(rule of three\)"):
        c = calibrate_threshold(stats, 2.0, 1.0, 0)
    assert c.hours_to_confirm == 3.0 and "rule of three" in c.warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        c = calibrate_threshold(stats, 2.0, 1.5, 0)  # 3 / 1.5 = 2 h: enough
    assert c.warning is None
    # too few peaks for a tail: the fallback says so
    with pytest.warns(CalibrationWarning, match="no tail to extrapolate"):
        c = calibrate_threshold([(t[:100], np.arange(100.0))], 100 / 3600, 1.0, 10**12)
    assert c.method == "max" and c.threshold == pytest.approx(99 * 1.25)
    with pytest.raises(ValueError, match="budget must be a positive number"):
        calibrate_threshold(stats, 2.0, 0.0, 0)
    with pytest.raises(ValueError, match="no held-out scores"):
        calibrate_threshold([(t[:3], np.full(3, np.nan))], 2.0, 1.0, 0)
