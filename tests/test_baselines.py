"""Long (EWMA) and wide (fleet) baselines, against the loops in ``tests/naive.py``."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_zscore import assert_same, assert_z_close, concat, hostile, stream

from pipeline import config
from pipeline.baselines import EWMAZScore, ewma_zscore, fleet_matrix, fleet_zscore
from pipeline.datasets import synthetic_temperature
from pipeline.zscore import ZScoreBatch, rolling_zscore

from naive import naive_ewma_zscore, naive_fleet_zscore


# --------------------------------------------------------------------------
# EWMA
# --------------------------------------------------------------------------
@pytest.mark.parametrize("halflife,min_periods,scale,std_floor,seed", [
    (20.0, None, "noise", 0.0, 0),
    (5.5, 3, "ewm", 0.0, 1),
    (300.0, 50, "noise", 0.01, 2),
    (0.7, 2, "ewm", 0.0, 3),
])
def test_ewma_matches_naive(halflife, min_periods, scale, std_floor, seed):
    x = hostile(2000, seed)
    kw = dict(halflife=halflife, min_periods=min_periods, scale=scale, std_floor=std_floor)
    want = naive_ewma_zscore(x, **kw)
    assert_same(ewma_zscore(x, **kw), want)
    assert_same(stream(EWMAZScore(**kw), x), want)
    det = EWMAZScore(**kw)
    assert_same(concat([det.update_many(x[i:i + 333]) for i in range(0, x.size, 333)]), want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 600),
       cuts=st.lists(st.integers(0, 600), max_size=6),
       per_sample=st.lists(st.booleans(), min_size=7, max_size=7),
       halflife=st.floats(0.5, 100.0), scale=st.sampled_from(["noise", "ewm"]))
def test_ewma_streaming_equals_batch_for_any_chunking(seed, n, cuts, per_sample, halflife, scale):
    x = hostile(max(n, 50), seed)[:n]
    kw = dict(halflife=halflife, min_periods=3, scale=scale, threshold=2.0, resolve=1.0, streak=2)
    whole = ewma_zscore(x, **kw)
    bounds = [0, *sorted(c for c in cuts if c <= n), n]
    det = EWMAZScore(**kw)
    parts = [stream(det, x[a:b]) if per_sample[k] else det.update_many(x[a:b])
             for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
    assert_same(concat(parts), whole)


def test_ewma_offset_1e8_changes_nothing():
    rng = np.random.default_rng(4)
    q = np.round(rng.standard_normal(5000) * 2**20) / 2**20
    q[3000:] += np.round(np.linspace(0, 40, 2000) * 2**20) / 2**20
    assert np.array_equal((q + 1e8) - 1e8, q)  # exact: z must not change
    r0, r1 = ewma_zscore(q, halflife=100), ewma_zscore(q + 1e8, halflife=100)
    assert_same(r1, r0)


def test_ewma_pickle_round_trip_mid_stream():
    x = hostile(1500, 8)
    det = EWMAZScore(halflife=30)
    stream(det, x[:500])
    det.update_many(x[500:800])
    clone = pickle.loads(pickle.dumps(det))
    assert repr(clone) == repr(det)
    a, b = stream(det, x[800:]), stream(clone, x[800:])
    for f in ZScoreBatch._fields:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_ewma_warm_up_and_constant_input():
    det = EWMAZScore(halflife=10.2)
    assert det.min_periods == 11
    x = np.full(40, 7.5)
    x[30] = 8.5
    r = stream(det, x)
    assert np.isnan(r.z[:11]).all()
    assert np.all(r.z[11:30] == 0.0)
    assert r.z[30] == pytest.approx(1.0 / (1e-9 * 7.5), rel=1e-9)
    assert det.n_seen == 40 and det.mean == pytest.approx(7.5, abs=0.2)
    assert math.isnan(EWMAZScore().mean)


@pytest.mark.parametrize("kwargs,name", [
    (dict(halflife=0), "halflife"), (dict(halflife=-1), "halflife"),
    (dict(halflife=float("inf")), "halflife"), (dict(min_periods=1), "min_periods"),
    (dict(threshold=-1), "threshold"), (dict(streak=0), "streak"),
    (dict(resolve=3.0), "resolve"), (dict(std_floor=-1), "std_floor"),
    (dict(scale="mad"), "scale"),
])
def test_ewma_invalid_params(kwargs, name):
    for make in (EWMAZScore, lambda **kw: ewma_zscore([1.0, 2.0], **kw)):
        with pytest.raises(ValueError, match=f"^{name} must"):
            make(**kwargs)


# --------------------------------------------------------------------------
# the overnight drift: invisible to the 15-sample window, seen by the long baseline
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def temperature():
    df = synthetic_temperature()
    return {s: g.value.to_numpy() for s, g in df.groupby("sensor")}


def test_long_baseline_sees_the_drift_the_window_misses(temperature):
    x = temperature["s01"]
    n = x.size
    start = n - int(8 * 3600 / 2)  # the drift: +5 degC over the last 8 h
    ramp = np.zeros(n)
    ramp[start:] = np.linspace(0, 5.0, n - start)
    flat = x - ramp
    # the 15-sample window is blind to the drift: it alerts exactly where it
    # alerts without the drift (noise), and never above the baseline
    short, short_flat = rolling_zscore(x), rolling_zscore(flat)
    np.testing.assert_array_equal(short.alert, short_flat.alert)
    assert not np.any(short.alert[start:] & (short.z[start:] > 0))
    # the long baseline alerts through most of the drift, never before it,
    # and not at all without the drift or on the other normal sensors
    long = ewma_zscore(x)
    assert config.Z_LONG_HALFLIFE == 900
    assert not long.alert[:start].any()
    assert long.alert[start + 1800:].mean() > 0.7  # after the first hour of drift
    assert not ewma_zscore(flat).alert.any()
    for s in ("s03", "s04"):
        assert not ewma_zscore(temperature[s]).alert.any()
    # an EW residual variance absorbs the drift it should detect (documented)
    assert ewma_zscore(x, scale="ewm").alert[start:].mean() < 0.05


# --------------------------------------------------------------------------
# fleet
# --------------------------------------------------------------------------
def test_fleet_matches_naive():
    rng = np.random.default_rng(1)
    v = 20 + rng.standard_normal((300, 9))
    v[rng.random(v.shape) < 0.15] = np.nan
    v[5, :] = np.nan
    v[6, :7] = np.nan  # 2 finite: below min_sensors
    v[7, 2] = np.inf
    v[8, :] = 21.5  # MAD = 0: the floor
    v[8, 4] = 22.5
    v[9] += 1e8
    for kw in (dict(), dict(std_floor=0.05, min_sensors=5)):
        got = fleet_zscore(v, **kw)
        want = np.array(naive_fleet_zscore(v, **kw), dtype=float)
        assert_z_close(got.ravel(), want.ravel(), 1e-12)
    z = fleet_zscore(v)
    assert np.isnan(z[5]).all() and np.isnan(z[6]).all() and np.isnan(z[7, 2])
    assert z[8, 0] == 0.0 and z[8, 4] == pytest.approx(1.0 / (1e-9 * 21.5))


def test_fleet_one_offset_sensor_stands_out():
    rng = np.random.default_rng(2)
    t = np.arange(3000)
    common = 21 + 0.5 * np.sin(2 * np.pi * t / 3000)
    v = common[:, None] + 0.1 * rng.standard_normal((3000, 50))
    v[:, 17] += 3.0
    v[rng.random(v.shape) < 0.05] = np.nan  # missing readings do not count
    z = fleet_zscore(v)
    others = np.delete(z, 17, axis=1)
    assert np.nanmin(z[:, 17]) > 15.0
    assert np.nanmedian(np.abs(others)) < 1.0
    assert np.nanpercentile(np.abs(others), 99.9) < 5.0


def test_fleet_sees_the_offset_sensor_in_synthetic_temperature():
    fm = fleet_matrix(synthetic_temperature())
    assert fm.sensors == ["s00", "s01", "s02", "s03", "s04"] and fm.values.shape == (21600, 5)
    z = fleet_zscore(fm.values)
    first4h = slice(0, 7200)  # before s01 drifts
    med = np.nanmedian(z[first4h], axis=0)
    assert med[2] > 10.0
    assert np.all(np.abs(med[[0, 1, 3, 4]]) < 1.5)


def test_fleet_matrix_and_validation():
    import pandas as pd

    df = pd.DataFrame({"t": [0, 0, 2], "id": ["b", "a", "a"], "v": [2.0, 1.0, 1.5]})
    fm = fleet_matrix(df, time="t", sensor="id", value="v")
    assert fm.times.tolist() == [0, 2] and fm.sensors == ["a", "b"]
    np.testing.assert_array_equal(fm.values, [[1.0, 2.0], [1.5, np.nan]])
    with pytest.raises(ValueError):
        fleet_matrix(pd.concat([df, df]), time="t", sensor="id", value="v")
    with pytest.raises(ValueError, match="2-D"):
        fleet_zscore([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="^min_sensors must be >= 3, got 2"):
        fleet_zscore(np.zeros((2, 4)), min_sensors=2)
    assert np.isnan(fleet_zscore(np.full((5, 4), np.nan))).all()
