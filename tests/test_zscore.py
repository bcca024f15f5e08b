"""Rolling z-score: fast kernels against the slow references in ``tests/naive.py``."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import streak as streak_mod
from pipeline.zscore import RollingZScore, ZScoreBatch, ZScoreResult, rolling_zscore, streak_guard

from naive import naive_rolling_zscore, naive_streak_guard, naive_sumsq_zscore, tutorial_zscore

TOL = 1e-9


def assert_z_close(got, want, tol=TOL):
    """Equal NaN positions; elsewhere |got - want| <= tol * max(1, |want|)."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    err = np.abs(got[ok] - want[ok]) / np.maximum(1.0, np.abs(want[ok]))
    assert err.size == 0 or err.max() <= tol, f"max scaled error {err.max():.3g} at {np.argmax(err)}"


def assert_same(a, b, tol=TOL):
    """Two results (ZScoreBatch or the naive 4-tuple of lists) agree."""
    assert_z_close(a[0], b[0], tol)
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))
    np.testing.assert_array_equal(np.asarray(a[2], dtype=bool), np.asarray(b[2], dtype=bool))
    np.testing.assert_allclose(np.asarray(a[3], dtype=float), np.asarray(b[3], dtype=float),
                               rtol=tol, atol=tol)


def stream(det, x):
    """Feed ``x`` through ``det.update`` one sample at a time."""
    rs = [det.update(v) for v in x]
    return ZScoreBatch(np.array([r.z for r in rs], dtype=float),
                       np.array([r.streak for r in rs], dtype=np.int64),
                       np.array([r.alert for r in rs], dtype=bool),
                       np.array([r.emitted for r in rs], dtype=float))


def concat(batches):
    return ZScoreBatch(*(np.concatenate([getattr(b, f) for b in batches])
                         for f in ZScoreBatch._fields))


def hostile(n, seed):
    """Noise with NaN/inf sprinkled in, constant stretches, spikes and steps."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.02] = np.nan
    x[rng.random(n) < 0.005] = np.inf
    x[rng.random(n) < 0.003] = -np.inf
    for _ in range(max(1, n // 400)):
        a = int(rng.integers(0, n - 40))
        x[a:a + int(rng.integers(5, 40))] = round(float(rng.normal()), 2)  # constant stretch
    for _ in range(max(1, n // 300)):
        a = int(rng.integers(0, n - 5))
        x[a:a + int(rng.integers(1, 5))] += rng.choice([-1, 1]) * 10 ** rng.uniform(0.5, 6)
    a = n // 2
    x[a:] += 50.0  # a step
    return x


def dyadic_normal(n, seed, scale=1.0, bits=20):
    """Gaussian noise rounded to multiples of 2**-bits, so ``x + offset`` is exact."""
    rng = np.random.default_rng(seed)
    return np.round(scale * rng.standard_normal(n) * 2.0**bits) / 2.0**bits


# --------------------------------------------------------------------------
# the tutorial's mistake, proved numerically
# --------------------------------------------------------------------------
def test_tutorial_z_never_exceeds_samuelson_bound():
    n = 15
    bound = (n - 1) / math.sqrt(n)  # 3.6148: the tutorial's printed z = 5.04 is impossible
    assert 3.6 < bound < 3.62 < 5.04
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000)
    x[rng.integers(0, 3000, 30)] += 1e3 * rng.standard_normal(30)  # spikes of any size
    tz = np.array(tutorial_zscore(x, n))
    assert np.nanmax(np.abs(tz)) <= bound * (1 + 1e-12)
    # the bound is reached by one spike after a flat window, however large the spike
    for spike in (10.0, 1e3, 1e9):
        assert tutorial_zscore([0.0] * 14 + [spike], n)[-1] == pytest.approx(bound, rel=1e-12)
    # scored against the window BEFORE it, the same spike gets the z it deserves
    x = 20.0 + 0.1 * rng.standard_normal(40)
    x[30] += 5.0
    assert tutorial_zscore(x, n)[30] < bound
    assert rolling_zscore(x).z[30] > 30.0


# --------------------------------------------------------------------------
# fast vs naive at every index
# --------------------------------------------------------------------------
@pytest.mark.parametrize("window,min_periods,std_floor,lag,seed", [
    (15, 5, 0.0, 0, 0),
    (15, 15, 0.0, 0, 1),
    (2, 2, 0.0, 0, 2),
    (7, 3, 0.05, 0, 3),
    (40, 2, 0.0, 0, 4),
    (300, 10, 0.0, 0, 5),
    (15, 5, 0.0, 2, 6),
    (2, 2, 0.0, 1, 7),
    (20, 4, 0.0, 300, 8),
])
def test_fast_matches_naive(window, min_periods, std_floor, lag, seed):
    x = hostile(1500, seed)
    kw = dict(window=window, min_periods=min_periods, std_floor=std_floor, lag=lag)
    want = naive_rolling_zscore(x, **kw)
    assert_same(rolling_zscore(x, **kw), want)
    assert_same(stream(RollingZScore(**kw), x), want)
    det = RollingZScore(**kw)
    assert_same(concat([det.update_many(x[i:i + 97]) for i in range(0, x.size, 97)]), want)


def test_alert_paths_agree(monkeypatch):
    """Many onsets (run-length path) and few onsets (forward scan) give the same alerts."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(6000)
    hit = rng.random(6000) < 0.05
    x[hit] += 200.0 * rng.standard_normal(hit.sum())
    want = naive_rolling_zscore(x, window=5, min_periods=3, streak=1, resolve=0.5)
    kw = dict(window=5, min_periods=3, streak=1, resolve=0.5)
    assert (np.asarray(want[1]) >= 1).sum() > streak_mod._FEW_ONSETS
    assert_same(rolling_zscore(x, **kw), want)
    monkeypatch.setattr(streak_mod, "_FEW_ONSETS", 10**9)
    assert_same(rolling_zscore(x, **kw), want)


def test_large_window_matches_numpy_two_pass():
    rng = np.random.default_rng(3)
    w = 1000
    x = 5.0 + rng.standard_normal(6000)
    x[3000:] += 1e4
    win = np.lib.stride_tricks.sliding_window_view(x[:-1], w)
    want = np.full(x.size, np.nan)
    mu = win.mean(axis=1)
    want[w:] = (x[w:] - mu) / win.std(axis=1, ddof=1)
    got = rolling_zscore(x, window=w, min_periods=w, lag=0).z
    assert_z_close(got, want, 1e-9)
    assert_z_close(stream(RollingZScore(window=w, min_periods=w, lag=0), x).z, want, 1e-9)


# --------------------------------------------------------------------------
# hostile numerics: a large offset
# --------------------------------------------------------------------------
def test_offset_1e8_changes_nothing():
    q = dyadic_normal(4000, 11)  # sigma 1; q + 1e8 is exact, so z must not change
    q[2000:2003] += 40.0
    x = q + 1e8
    assert np.array_equal(x - 1e8, q)
    want = naive_rolling_zscore(q)
    assert_same(rolling_zscore(x), want)
    assert_same(stream(RollingZScore(), x), want)
    # a sum-of-squares variance fails the same test badly (the test has teeth)
    bad = np.array(naive_sumsq_zscore(x))
    assert np.nanmax(np.abs(bad - np.array(want[0]))) > 0.1


def test_tiny_variance_at_large_offset():
    q = dyadic_normal(3000, 12, scale=1e-4, bits=30)  # sigma 1e-4 around 1e4
    x = q + 1e4
    assert np.array_equal(x - 1e4, q)
    want = naive_rolling_zscore(q)
    assert_same(rolling_zscore(x), want)
    assert_same(stream(RollingZScore(), x), want)
    bad = np.array(naive_sumsq_zscore(x))
    assert np.nanmax(np.abs(bad - np.array(want[0]))) > 0.1


def test_long_stream_with_offset_does_not_drift():
    """1.2M samples at 1e8 with spikes, steps and constant stretches: update(),
    update_many() and rolling_zscore agree to 1e-9 at every index, and the end
    of the stream still matches the naive reference on the offset-free data."""
    n = 1_200_000
    rng = np.random.default_rng(13)
    q = dyadic_normal(n, 13)
    idx = rng.integers(0, n - 10, 400)
    q[idx] += np.round(rng.choice([-1, 1], 400) * 10 ** rng.uniform(1, 6, 400))  # spikes
    for a in rng.integers(0, n - 2000, 40):
        q[a:] += float(np.round(rng.normal(0, 1e3)))  # level shifts
    for a in rng.integers(0, n - 5000, 40):
        q[a:a + 60] = q[a]  # constant stretches (none in the last 5000)
    x = q + 1e8
    assert np.array_equal(x - 1e8, q)
    batch = rolling_zscore(x)
    assert_same(stream(RollingZScore(), x.tolist()), batch)
    det = RollingZScore()
    assert_same(concat([det.update_many(x[i:i + 100_000]) for i in range(0, n, 100_000)]), batch)
    # z depends on deviations only (the floor never binds here): the offset-free
    # reference on the last 3000 samples, with 15 + lag 2 samples of context
    want = naive_rolling_zscore(q[n - 3017:])[0][17:]
    assert_z_close(batch.z[n - 3000:], want)


# --------------------------------------------------------------------------
# streaming == batch, for any chunking; pickle
# --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 700),
       cuts=st.lists(st.integers(0, 700), max_size=8),
       per_sample=st.lists(st.booleans(), min_size=9, max_size=9),
       window=st.integers(2, 40), minp_frac=st.floats(0.0, 1.0),
       lag=st.sampled_from([0, 0, 1, 2, 7]), few=st.booleans())
def test_streaming_equals_batch_for_any_chunking(seed, n, cuts, per_sample, window, minp_frac,
                                                  lag, few):
    x = hostile(max(n, 50), seed)[:n]
    minp = 2 + int(minp_frac * (window - 2))
    kw = dict(window=window, min_periods=minp, streak=2, resolve=1.0, threshold=1.5, lag=lag)
    whole = rolling_zscore(x, **kw)
    bounds = [0, *sorted(c for c in cuts if c <= n), n]
    det = RollingZScore(**kw)
    parts = []
    old = streak_mod._FEW_ONSETS
    streak_mod._FEW_ONSETS = 10**9 if few else 0
    try:
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            parts.append(stream(det, x[a:b]) if per_sample[k] else det.update_many(x[a:b]))
    finally:
        streak_mod._FEW_ONSETS = old
    assert_same(concat(parts), whole)


@pytest.mark.parametrize("lag", [0, 3])
def test_pickle_round_trip_mid_stream(lag):
    x = hostile(2000, 21)
    det = RollingZScore(window=9, min_periods=4, streak=2, lag=lag)
    stream(det, x[:700])
    det.update_many(x[700:1001])
    clone = pickle.loads(pickle.dumps(det))
    assert repr(clone) == repr(det)
    a = stream(det, x[1001:1500])
    b = stream(clone, x[1001:1500])
    for f in ZScoreBatch._fields:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = pickle.loads(pickle.dumps(det)).update_many(x[1500:])
    d = det.update_many(x[1500:])
    for f in ZScoreBatch._fields:
        np.testing.assert_array_equal(getattr(c, f), getattr(d, f))


def test_fresh_state_pickles():
    det = pickle.loads(pickle.dumps(RollingZScore()))
    assert math.isnan(det.update(1.0).z)


# --------------------------------------------------------------------------
# the streak guard and hysteresis, by hand (k = 3, threshold 3, resolve 2)
# --------------------------------------------------------------------------
N = float("nan")


@pytest.mark.parametrize("z,streak,alert", [
    # the style guide's table: hits [0,1,1,0,1,1,1]
    ([0, 4, 4, 0, 4, 4, 4], [0, 1, 2, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0, 1]),
    # |z| == threshold does not count; the sign does not matter
    ([3, 3, 3, 3], [0, 0, 0, 0], [0, 0, 0, 0]),
    ([-4, -4, -4, 4], [1, 2, 3, 4], [0, 0, 1, 1]),
    # hysteresis: held while |z| > resolve, off at the first |z| <= resolve
    ([4, 4, 4, 2.9, 2.1, 3.5, 2.0, 4, 4], [1, 2, 3, 0, 0, 1, 0, 1, 2], [0, 0, 1, 1, 1, 1, 0, 0, 0]),
    ([4, 4, 4, -2.5, 1.0, 2.5], [1, 2, 3, 0, 0, 0], [0, 0, 1, 1, 0, 0]),
    # NaN resets the streak and ends an alert; a NaN never raises one
    ([4, 4, N, 4, 4, 4], [1, 2, 0, 1, 2, 3], [0, 0, 0, 0, 0, 1]),
    ([4, 4, 4, N, 4, 4], [1, 2, 3, 0, 1, 2], [0, 0, 1, 0, 0, 0]),
    ([N, N, N], [0, 0, 0], [0, 0, 0]),
    # a long streak keeps alerting
    ([4] * 6, [1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 1, 1]),
    ([], [], []),
])
def test_streak_guard_table(z, streak, alert, monkeypatch):
    for few in (10**9, 0):  # both alert paths
        monkeypatch.setattr(streak_mod, "_FEW_ONSETS", few)
        r = streak_guard(z, threshold=3.0, streak=3, resolve=2.0)
        assert r.streak.tolist() == streak
        assert r.alert.astype(int).tolist() == alert
        want_e = [abs(v) if a else 0.0 for v, a in zip(z, alert, strict=True)]
        assert r.emitted.tolist() == want_e
    s, a, _ = naive_streak_guard([float(v) for v in z], 3.0, 3, 2.0)
    assert (s, [int(v) for v in a]) == (streak, alert)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_guard_with_carried_state_matches_naive(k, monkeypatch):
    rng = np.random.default_rng(k)
    for few in (10**9, 0):
        monkeypatch.setattr(streak_mod, "_FEW_ONSETS", few)
        for _ in range(200):
            z = rng.choice([0.0, 1.0, 2.5, 3.5, -4.0, N], size=int(rng.integers(1, 30)))
            run, on = int(rng.integers(0, 6)), bool(rng.random() < 0.5)
            nr = streak_mod._above(z, 2.0)
            s, a, e = streak_mod._guard(z, nr, 3.0, k, 2.0, run, on)
            ws, wa, we = naive_streak_guard(z.tolist(), 3.0, k, 2.0, run, on)
            assert s.tolist() == ws and a.tolist() == wa and e.tolist() == we


# --------------------------------------------------------------------------
# floor, warm-up, NaN, edges
# --------------------------------------------------------------------------
@pytest.mark.parametrize("level", [0.0, 5.0, -3.25, 1e8])
def test_constant_input_scores_zero_and_a_step_is_large_and_finite(level):
    x = np.full(60, level)
    x[40] = level + 1.0
    r = rolling_zscore(x, lag=0)
    s = stream(RollingZScore(lag=0), x)
    floor = 1e-9 * max(1.0, abs(level))
    for res in (r, s):
        assert np.all(res.z[5:40] == 0.0)
        assert res.z[40] == pytest.approx(1.0 / floor, rel=1e-12)
        assert np.isfinite(res.z[5:]).all()


def test_constant_stretch_after_noise_scores_exactly_zero():
    rng = np.random.default_rng(5)
    x = np.concatenate([100 + rng.standard_normal(1000), np.full(500, 101.3),
                        100 + rng.standard_normal(300)])
    for res in (rolling_zscore(x), stream(RollingZScore(), x)):
        assert np.all(res.z[1017:1500] == 0.0)  # 15 + lag 2 samples into the stretch


def test_std_floor_applies():
    x = [10.0, 10.0, 10.0, 10.0, 10.0, 12.0]
    assert rolling_zscore(x, std_floor=0.5, lag=0).z[-1] == pytest.approx(2.0 / (0.5 + 1e-8))


@pytest.mark.parametrize("x", [[], [1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [N] * 30, [1.0, N, 2.0, np.inf, 3.0, 4.0]])
def test_too_short_input_gives_nan_and_no_alert(x):
    r = rolling_zscore(x, min_periods=5)
    assert r.z.shape == (len(x),) and np.isnan(r.z).all()
    assert not r.alert.any() and not r.streak.any() and not r.emitted.any()
    assert r.z.dtype == np.float64 and r.streak.dtype == np.int64 and r.alert.dtype == bool


def test_non_finite_is_not_absorbed():
    rng = np.random.default_rng(9)
    x = rng.standard_normal(300)
    y = x.copy()
    y[[10, 50, 51, 200]] = [np.nan, np.inf, -np.inf, np.nan]
    fin = np.isfinite(y)
    ry = rolling_zscore(y)
    assert np.isnan(ry.z[~fin]).all()
    assert_z_close(ry.z[fin], rolling_zscore(y[fin]).z, 0.0)
    det = RollingZScore()
    stream(det, x[:20])
    n = det.n_baseline
    r = det.update(float("nan"))
    assert math.isnan(r.z) and r == (r.z, 0, False, 0.0) and det.n_baseline == n


def test_update_returns_plain_python_types():
    det = RollingZScore(window=3, min_periods=2)
    for v in (1, np.float32(2.5), np.float64(2.0)):
        r = det.update(v)
    assert isinstance(r, ZScoreResult)
    assert type(r.z) is float and type(r.streak) is int
    assert type(r.alert) is bool and type(r.emitted) is float


def test_update_many_empty_keeps_state():
    det = RollingZScore()
    stream(det, np.arange(20.0))
    before = pickle.dumps(det)
    out = det.update_many([])
    assert out.z.size == 0 and pickle.dumps(det) == before


def test_rejects_2d_input():
    with pytest.raises(ValueError, match="1-D"):
        rolling_zscore(np.zeros((3, 3)))


@pytest.mark.parametrize("kwargs,name,got", [
    (dict(window=1), "window", "1"),
    (dict(window=2.5), "window", "2.5"),
    (dict(window=True), "window", "True"),
    (dict(min_periods=1), "min_periods", "1"),
    (dict(window=10, min_periods=11), "min_periods", "11"),
    (dict(threshold=0.0), "threshold", "0.0"),
    (dict(threshold=float("nan")), "threshold", "nan"),
    (dict(streak=0), "streak", "0"),
    (dict(resolve=-1.0), "resolve", "-1.0"),
    (dict(resolve=3.0), "resolve", "3.0"),
    (dict(std_floor=-0.1), "std_floor", "-0.1"),
    (dict(std_floor="x"), "std_floor", "'x'"),
    (dict(lag=-1), "lag", "-1"),
])
def test_invalid_params_name_the_parameter(kwargs, name, got):
    for make in (RollingZScore, lambda **kw: rolling_zscore([1.0, 2.0], **kw)):
        with pytest.raises(ValueError) as ei:
            make(**kwargs)
        msg = str(ei.value)
        assert msg.startswith(name + " must") and msg.endswith("got " + got)


# --------------------------------------------------------------------------
# a level shift and the lag
# --------------------------------------------------------------------------
@pytest.mark.parametrize("step", [1.0, 4.0, 100.0, 1e6])
def test_level_shift_needs_a_lag_to_alert(step):
    """With lag=0 the first shifted sample enters the next baselines and
    inflates their std: a step of any size gives a streak of 2 at most, so a
    streak of 3 never alerts.  With lag = streak - 1 the streak is judged
    against a clean baseline and the step alerts, then resolves."""
    rng = np.random.default_rng(1)
    x = 20 + 0.1 * rng.standard_normal(200)
    x[100:] += step  # 10 sigma and up
    no_lag = rolling_zscore(x, lag=0)
    assert no_lag.streak.max() <= 2 and not no_lag.alert.any()
    lagged = rolling_zscore(x)  # the default lag is streak - 1 = 2
    assert_same(lagged, naive_rolling_zscore(x, lag=2))
    assert lagged.alert[102] and lagged.streak[102] == 3
    assert not lagged.alert[:100].any() and not lagged.alert[130:].any()
