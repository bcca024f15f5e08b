"""The quality changes to the detectors against slow references: centred shape segments, the
drift detector's fitted scale, calibration on training data; and, for every detector with the
quality branch's fixtures, streaming == batch for any chunking, state as data, NaN never
alarms and the model file's round trip (tests/test_detectors.py has the protocol's own)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.calibrate import CalibrationWarning
from pipeline.detectors import (
    REGISTRY,
    Budget,
    DriftDetector,
    FlatLineDetector,
    NoiseDetector,
    ShapeDetector,
    StepDetector,
    ZScoreDetector,
)
from pipeline.detectors.shape import SHAPE_RATIO, CenteredKMeans, center_segments, has_shape
from pipeline.detectors.zscores import ewma_residuals, streak_min
from pipeline.kmeans import KMeansReconstructor
from pipeline.model_io import load_model, save_model
from pipeline.train import train

from naive import (
    naive_centered_scores,
    naive_drift_z,
    naive_hold_alarm,
    naive_runs_of_true,
    naive_sliding_segments,
    naive_streak_min,
)

S = 10**9
P2 = 2 * S  # a sensor every 2 s


def _sensor(n, seed, drift_at=None):
    """A temperature-like sensor: daily cycle, AR(1) wander (30 min), noise, 0.01 quantum."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    k = np.arange(n)
    phi = np.exp(-1 / 900)
    wander = lfilter([0.1 * np.sqrt(1 - phi**2)], [1, -phi], rng.standard_normal(n))
    x = 21 + 1.5 * np.cos(2 * np.pi * k / 43200) + wander + 0.03 * rng.standard_normal(n)
    if drift_at is not None:
        x = x + 3.0 * np.clip((k - drift_at) / 5400, 0, 1)      # +3 degC over 3 h
    return (np.arange(n) * P2).astype(np.int64), np.round(x, 2)


@pytest.fixture(scope="module")
def sensor_dets():
    """z-score, drift and flat line fitted on 8 h of a sensor, calibrated to 1 per day."""
    t, x = _sensor(3 * 14400, 5)
    tr, va = slice(0, 14400), slice(14400, 28800)
    dets = [ZScoreDetector(), DriftDetector(), FlatLineDetector()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        for d in dets:
            d.fit([(t[tr], x[tr])], P2)
            runs = [(t[tr], x[tr]), (t[va], x[va])] if d.calibrate_on_training else [(t[va], x[va])]
            d.calibrate(runs, P2, Budget.per_day(1))
    return dets, (t[28800:], x[28800:])


@pytest.fixture(scope="module")
def shape_det(ekg):
    t, v = ekg
    n = 40 * 360
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return ShapeDetector(n_clusters=24).fit([(t[:n], v[:n])], 1e9 / 360).calibrate(
            [(t[n:60 * 360], v[n:60 * 360])], 1e9 / 360, Budget(1.0))


@pytest.fixture(scope="module", params=[StepDetector, NoiseDetector], ids=["step", "noise"])
def window_det(ekg, request):
    t, v = ekg
    n = 40 * 360
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return request.param().fit([(t[:n], v[:n])], 1e9 / 360).calibrate(
            [(t[n:60 * 360], v[n:60 * 360])], 1e9 / 360, Budget(1.0))


def _all(sensor_dets, shape_det, ekg, window_det=None):
    dets, (t, x) = sensor_dets
    te, ve = ekg
    return [(d, t, x) for d in dets] + [(d, te[60 * 360:], ve[60 * 360:])
                                        for d in (shape_det, window_det) if d is not None]


def _concat(outs):
    return (np.concatenate([o.times for o in outs]), np.concatenate([o.score for o in outs]),
            np.concatenate([o.alarm for o in outs]))


def _state_round_trip(det, state):
    meta, arrays = state.get_data()
    new = det.new_state()
    new.set_data(json.loads(json.dumps(meta, allow_nan=False)),
                 {k: np.array(a) for k, a in arrays.items()})
    return new


# ---------------------------------------------------------------------------
# the protocol, for every detector
# ---------------------------------------------------------------------------
def test_every_registered_detector_is_covered(sensor_dets, shape_det):
    # a cross-key detector (fleet) sees a whole fleet at once: tests/test_fleet_detector.py;
    # the windowed ones (step, noise) are the window_det fixture's parameters
    per_key = {n for n, c in REGISTRY.items() if not getattr(c, "cross_key", False)}
    assert {d.name for d in sensor_dets[0]} | {shape_det.name, "step", "noise"} == per_key
    assert set(REGISTRY) - per_key == {"fleet"}


def test_the_windowed_detectors_are_on_for_an_ekg(window_det):
    assert window_det.enabled_ and not window_det.slow_


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(1, 4000), min_size=1, max_size=8), restore=st.integers(0, 8))
def test_streaming_equals_batch_for_any_chunking_and_state_round_trip(sensor_dets, shape_det, ekg,
                                                                       window_det, cuts, restore):
    for det, t, x in _all(sensor_dets, shape_det, ekg, window_det):
        t, x = t[:12000], x[:12000]
        want = det.new_state().update_many(t, x)
        st_, outs, pos = det.new_state(), [], 0
        for i, c in enumerate([*cuts, len(t)]):
            if i == restore:
                st_ = _state_round_trip(det, st_)
            outs.append(st_.update_many(t[pos:pos + c], x[pos:pos + c]))
            pos += c
            if pos >= len(t):
                break
        times, score, alarm = _concat(outs)
        np.testing.assert_array_equal(times, want.times, err_msg=det.name)
        if det.name == "zscore":  # its rolling sums are rebuilt per chunk: equal to ~1e-12
            np.testing.assert_allclose(score, want.score, rtol=1e-9, atol=1e-12, err_msg=det.name)
        else:
            np.testing.assert_array_equal(score, want.score, err_msg=det.name)
        np.testing.assert_array_equal(alarm, want.alarm, err_msg=det.name)


def test_nan_never_alarms_and_scores_nan(sensor_dets):
    dets, (t, x) = sensor_dets
    y = x[:6000].copy()
    y[2000:2300] = np.nan
    y[2300] = y[2299 - 300] + 50.0  # a huge value right after the NaNs
    for det in dets:
        out = det.new_state().update_many(t[:6000], y)
        assert np.isnan(out.score[2000:2300]).all(), det.name
        # no raw alarm starts on a NaN sample (held alarms from before may continue)
        raw_start = out.alarm[2000:2300] & ~np.r_[out.alarm[1999], out.alarm[2000:2299]]
        assert not raw_start.any(), det.name


def test_model_file_round_trip_carries_the_fitted_state(sensor_dets, shape_det, ekg, window_det,
                                                        tmp_path):
    items = _all(sensor_dets, shape_det, ekg, window_det)
    save_model(tmp_path / "m.npz", [d for d, _, _ in items])
    loaded = load_model(tmp_path / "m.npz").detectors
    for (det, t, x), back in zip(items, loaded, strict=True):
        a, b = det.new_state().update_many(t, x), back.new_state().update_many(t, x)
        np.testing.assert_array_equal(a.score, b.score, err_msg=det.name)
        np.testing.assert_array_equal(a.alarm, b.alarm, err_msg=det.name)
    drift = next(d for d in loaded if d.name == "drift")
    assert drift.scale_ == sensor_dets[0][1].scale_ > 0
    shape = next(d for d in loaded if d.name == "shape")
    assert shape.center_ is True and isinstance(shape.model_, CenteredKMeans)


# ---------------------------------------------------------------------------
# shape: centred segments
# ---------------------------------------------------------------------------
def test_centred_scores_equal_the_naive_loop(ekg):
    t, v = ekg
    m = CenteredKMeans(n_clusters=12, segment_len=16).fit(v[:6000])
    segs = naive_sliding_segments(v[6000:9000], 16, 8)
    want = naive_centered_scores(segs, m.window_.tolist(), m.cluster_centers_.tolist())
    got = m.score_segments(np.array(segs))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_centring_ignores_wander_and_offsets_but_sees_a_step(ekg):
    t, v = ekg
    x, wander = v[:20000], 0.3 * np.sin(np.arange(20000) / 2000.0)
    raw = KMeansReconstructor(n_clusters=24).fit(x[:10000])
    cen = CenteredKMeans(n_clusters=24).fit(x[:10000])
    base = cen.segment_errors(x[10000:]).max()
    assert cen.segment_errors(x[10000:] + wander[10000:] + 5.0).max() < 1.5 * base
    assert raw.segment_errors(x[10000:] + 5.0).min() > 1.0
    step = x[10000:].copy()
    step[5000:] += 1.0
    assert cen.segment_errors(step).max() > 1.5 * base
    # the reconstruction still overlays the series (the baseline is added back)
    rec = cen.reconstruct(x[10000:12000] + 5.0)
    ok = np.isfinite(rec)
    assert np.median(np.abs(rec[ok] - (x[10000:12000] + 5.0)[ok])) < 0.05


def test_center_segments_is_blockwise_exact():
    rng = np.random.default_rng(0)
    segs = rng.normal(0, 1, (1000, 32)) + 1e6
    w = np.sin(np.pi * np.arange(32) / 32) ** 2
    whole = center_segments(segs, w)
    parts = np.concatenate([center_segments(segs[a:a + 7], w) for a in range(0, 1000, 7)])
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize("period,want", [(3.0, True), (10.0, True), (40.0, False), (3000.0, False)])
def test_has_shape_centres_signals_with_shape_at_the_segment_scale(period, want):
    x = np.sin(np.arange(20000) / period) + 0.01 * np.random.default_rng(1).standard_normal(20000)
    centre, ratio = has_shape([x], 32)
    assert centre is want and (ratio < SHAPE_RATIO) is want


def test_shape_center_auto_follows_the_data(ekg):
    t, v = ekg
    slow_t, slow = _sensor(20000, 3)
    ekg_det = ShapeDetector(n_clusters=8).fit([(t[:8000], v[:8000])], 1e9 / 360)
    sensor_det = ShapeDetector(n_clusters=8).fit([(slow_t, slow)], P2)
    assert ekg_det.center_ is True and sensor_det.center_ is False
    assert type(sensor_det.model_) is KMeansReconstructor
    assert ShapeDetector(n_clusters=8, center=False).fit([(t[:8000], v[:8000])], 1e9 / 360).center_ \
        is False
    with pytest.raises(ValueError, match="center must be"):
        ShapeDetector(center="yes").fit([(t[:8000], v[:8000])], 1e9 / 360)


# ---------------------------------------------------------------------------
# drift: EWMA residual over a scale fitted on training data
# ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), cuts=st.lists(st.integers(1, 400), max_size=6),
       nan_at=st.lists(st.integers(0, 1199), max_size=20))
def test_drift_z_equals_the_naive_loop(seed, cuts, nan_at):
    rng = np.random.default_rng(seed)
    x = 1e6 + np.cumsum(rng.normal(0, 1, 1200))  # hostile offset
    x[nan_at] = np.nan
    det = DriftDetector(halflife_s=100.0)
    det.period_ns_, det.scale_, det.std_floor_ = 2e9, 0.7, 0.0
    want, _ = naive_drift_z(x, 50.0, 0.7, 50)
    got, carry, pos = [], None, 0
    for c in [*cuts, len(x)]:
        z, carry = det._z(x[pos:pos + c], carry)
        got.append(z)
        pos += c
    got = np.concatenate(got)[:len(x)]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], np.asarray(want)[~np.isnan(got)],
                               rtol=1e-6, atol=1e-6)


def test_ewma_residuals_doc_example_and_streak_min_against_naive():
    r, st_ = ewma_residuals([10.0, 12.0, np.nan, 12.0], 0.5)
    assert np.isnan(r[0]) and r[1] == 2.0 and np.isnan(r[2]) and r[3] == 1.0 and st_[0] == 3
    z = np.random.default_rng(4).normal(0, 2, 500)
    z[::37] = np.nan
    for k in (1, 3, 10):
        np.testing.assert_array_equal(streak_min(z, k), naive_streak_min(z.tolist(), k))


def test_drift_scale_is_the_robust_spread_of_training_residuals():
    t, x = _sensor(20000, 8)
    det = DriftDetector(halflife_s=1800).fit([(t, x)], P2)
    r, _ = ewma_residuals(x, det._alpha())
    r = r[det._warm():]
    assert det.scale_ == pytest.approx(1.4826 * np.median(np.abs(r - np.median(r))))


def test_drift_sees_a_slow_drift_and_is_quiet_on_normal_data():
    t, x = _sensor(3 * 14400, 5)
    _, y = _sensor(3 * 14400, 5, drift_at=30000)
    tr, va = slice(0, 14400), slice(14400, 28800)
    drift = DriftDetector().fit([(t[tr], x[tr])], P2).calibrate(
        [(t[tr], x[tr]), (t[va], x[va])], P2, Budget.per_day(0.1))
    assert drift.enabled_
    normal = drift.new_state().update_many(t[28800:], x[28800:])
    drifted = drift.new_state().update_many(t[28800:], y[28800:])
    assert naive_runs_of_true(normal.alarm) == 0
    first = int(np.flatnonzero(drifted.alarm[1200:])[0]) + 28800 + 1200
    assert 30000 < first < 30000 + 5400  # during the drift, not before
    # the held alarm: naive hold over the raw streak condition
    raw = np.asarray(naive_streak_min(drifted.score.tolist(), drift.streak_)) > drift.threshold_
    np.testing.assert_array_equal(drifted.alarm, naive_hold_alarm(t[28800:], raw,
                                                                  drift.hold_ns())[0])


def test_drift_too_short_to_warm_up_is_off_with_the_reason(ekg, tmp_path):
    t, v = ekg
    res = train(t[:20 * 360], v[:20 * 360], t[20 * 360:40 * 360], v[20 * 360:40 * 360],
                detectors=["drift", "flatline"], budget=Budget(10.0), out=tmp_path / "m.npz")
    drift = res.detectors[0]
    assert not drift.enabled_ and "too short for its baseline to warm up" in drift.describe()
    back = load_model(tmp_path / "m.npz").detectors[0]
    assert np.isnan(back.scale_) and not back.enabled_


# ---------------------------------------------------------------------------
# calibration on training data for the detectors that learn a number or two
# ---------------------------------------------------------------------------
def test_only_the_few_parameter_detectors_calibrate_on_training_data():
    # slow statistics, whose alarms come from slow normal variation that a held-out part alone
    # holds too little of (docs/detectors.md, "Drift" and "Fleet"), the baseline step
    # and the noise level, which learn only the data's resolution (docs/detectors.md,
    # "Baseline step and noise level")
    assert {n for n, c in REGISTRY.items() if c.calibrate_on_training} == \
        {"drift", "fleet", "step", "noise"}


def test_train_calibrates_them_on_training_and_validation_hours(tmp_path):
    t, x = _sensor(3 * 14400, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = train(t[:14400], x[:14400], t[14400:28800], x[14400:28800], out=tmp_path / "m.npz",
                    detectors=["zscore", "drift", "flatline"])
    for d in res.detectors:
        if d.enabled_:
            want = 16.0 if d.calibrate_on_training else 8.0
            assert d.calibration_["hours"] == pytest.approx(want, rel=1e-3), d.name


def test_drift_fed_one_sample_at_a_time_equals_fed_at_once():
    """The streak tail must not shrink when a chunk is shorter than the streak (live follow
    feeds one sample per poll): a negative slice start kept too few values and never alarmed."""
    import numpy as np

    from pipeline.detectors import DriftDetector

    rng = np.random.default_rng(3)
    n = 6000
    t = np.arange(n, dtype=np.int64) * 2 * 10**9
    x = 20 + 0.1 * rng.standard_normal(n)
    det = DriftDetector(halflife_s=60.0, streak=10).fit([(t[:3000], x[:3000])], 2e9)
    det = det.calibrate([(t[:3000], x[:3000])], 2e9, 1.0)
    y = x[3000:].copy()
    y[1000:] += np.linspace(0, 5, len(y) - 1000)
    whole = det.new_state().update_many(t[3000:], y)
    st = det.new_state()
    ones = [st.update_many(t[3000 + i:3001 + i], y[i:i + 1]) for i in range(len(y))]
    alarm = np.concatenate([o.alarm for o in ones])
    assert whole.alarm.any()
    np.testing.assert_array_equal(alarm, whole.alarm)
