"""No traceback on any finite number: extreme magnitudes in the z-score detectors.

The rule (``pipeline.zscore``, ``docs/zscore.md``): a sample with ``|x| >
config.Z_MAX_ABS`` is treated like NaN -- not part of any baseline, ``z =
NaN``, never alarms, counted in ``n_extreme`` by the streaming detectors --
so no square or sum can overflow.  Every streaming detector still equals its
batch twin, and both equal the slow references with the rule applied.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_zscore import assert_same, concat, stream

from pipeline import config, zscore_kernel
from pipeline.baselines import EWMAZScore, ewma_zscore, fleet_zscore
from pipeline.zscore import RollingZScore, rolling_zscore

from naive import naive_ewma_zscore, naive_fleet_zscore, naive_rolling_zscore

BOUND = config.Z_MAX_ABS
EXTREMES = [1.7e308, -1.7e308, 1e300, 1e200, BOUND, -BOUND, np.nextafter(BOUND, np.inf),
            BOUND / 3, 1e50, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 0.0, -0.0]
_floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(EXTREMES),
                    st.floats(-10.0, 10.0), st.sampled_from([np.nan, np.inf, -np.inf]))


def _missing(x):
    """The rule, written plainly: what the detectors must treat as NaN."""
    x = np.asarray(x, dtype=float)
    return np.array([not (abs(v) <= BOUND) for v in x.tolist()], dtype=bool)


def _chunks(det, x, cuts):
    bounds = [0, *sorted(c for c in cuts if c <= x.size), x.size]
    return concat([det.update_many(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])


def _twins_agree(batch_fn, state_cls, x, kw, cuts):
    """Batch, one-shot streaming and chunked streaming agree on ``x`` with no numpy warning;
    extremes score NaN, never alert, and are counted.  Returns the batch result."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy overflow warning fails the test too
        batch = batch_fn(x, **kw)
        det = state_cls(**kw)
        one = stream(det, x)
        chunked = _chunks(state_cls(**kw), x, cuts)
    assert_same(one, batch)
    assert_same(chunked, batch)
    big = _missing(x)
    assert np.isnan(batch.z[big]).all() and not batch.alert[big].any()
    assert det.n_extreme == int(np.count_nonzero(big & np.isfinite(x)))
    return batch


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.lists(_floats, max_size=60), window=st.integers(2, 6), lag=st.integers(0, 3),
       minp=st.integers(2, 6), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_rolling_zscore_takes_any_number(x, window, lag, minp, cuts):
    x = np.array(x, dtype=float)
    kw = dict(window=window, min_periods=min(minp, window), lag=lag, threshold=2.0, resolve=1.0,
              streak=2)
    batch = _twins_agree(rolling_zscore, RollingZScore, x, kw, cuts)
    assert_same(batch, naive_rolling_zscore(np.where(_missing(x), np.nan, x), **kw))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.lists(_floats, max_size=60), halflife=st.floats(0.5, 20.0), minp=st.integers(2, 6),
       scale=st.sampled_from(["noise", "ewm"]), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_ewma_zscore_takes_any_number(x, halflife, minp, scale, cuts):
    x = np.array(x, dtype=float)
    kw = dict(halflife=halflife, min_periods=minp, scale=scale, threshold=2.0, resolve=1.0,
              streak=2)
    batch = _twins_agree(ewma_zscore, EWMAZScore, x, kw, cuts)
    assert_same(batch, naive_ewma_zscore(np.where(_missing(x), np.nan, x), **kw))


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(_floats, min_size=4, max_size=4), min_size=4, max_size=12))
def test_fleet_zscore_takes_any_number(rows):
    v = np.array(rows, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = fleet_zscore(v)
    big = _missing(v.ravel()).reshape(v.shape)
    assert np.isnan(z[big]).all()
    want = np.array(naive_fleet_zscore(np.where(big, np.nan, v)), dtype=float)
    np.testing.assert_allclose(z, want, rtol=1e-12, equal_nan=True)


def test_two_huge_values_near_the_end_of_a_batch():
    """Was: OverflowError 'intermediate overflow in fsum' in RollingZScore._rebuild."""
    x = np.r_[np.random.default_rng(0).standard_normal(100), 1.7e308, 1.7e308, 1.0, 2.0, 3.0]
    det = RollingZScore()
    r = det.update_many(x)
    assert np.isnan(r.z[100:102]).all() and np.isfinite(r.z[102:]).all()
    assert det.n_extreme == 2
    assert_same(r, rolling_zscore(x))


@pytest.mark.parametrize("w", [zscore_kernel._BLOCKED_MAX_WINDOW, zscore_kernel._BLOCKED_MAX_WINDOW + 7_000])
def test_the_bound_holds_for_long_windows(w):
    """Values up to +-Z_MAX_ABS filling a long baseline: no overflow in the blocked kernel's
    prefix sums and error bounds (largest blocked window) nor in the streaming sums (the
    path of longer windows); twins equal.  (At Z_MAX_WINDOW the sums are 1e6 * 4e200.)"""
    rng = np.random.default_rng(1)
    x = np.where(rng.random(w + 300) < 0.5, BOUND, -BOUND) * rng.random(w + 300)
    x[-100:] = rng.standard_normal(100)  # ordinary values scored against the huge baseline
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = rolling_zscore(x, window=w, min_periods=w, lag=0)
        det = RollingZScore(window=w, min_periods=w, lag=0)
        det.update_many(x[:w])
        tail = stream(det, x[w:])
        e = ewma_zscore(x, halflife=config.Z_MAX_HALFLIFE, min_periods=2)
    assert np.isfinite(batch.z[w:]).all() and np.isfinite(e.z[2:]).all()
    assert_same(tail, _tail(batch, w))


def test_long_windows_are_not_quadratic():
    """Beyond the blocked kernel (its error bound grows like window**2) the batch twin runs
    the streaming recurrence: 60,000 samples at window 60,000 took 4.7 s, now ~0.1 s."""
    import time

    x = np.random.default_rng(3).standard_normal(120_000)
    t = time.perf_counter()
    rolling_zscore(x, window=60_000, min_periods=60_000, lag=0)
    assert time.perf_counter() - t < 2.0


def _tail(batch, start):
    """The samples of a ZScoreBatch from ``start`` on."""
    return type(batch)(*(a[start:] for a in batch))


@pytest.mark.parametrize("make, message", [
    (lambda: RollingZScore(window=10_000_000_000),
     "window must be in [2, 1000000], got 10000000000"),
    (lambda: rolling_zscore([1.0, 2.0], window=1_000_001), "window must be in [2, 1000000]"),
    (lambda: RollingZScore(lag=10**7), "lag must be in [0, 1000000], got 10000000"),
    (lambda: RollingZScore(std_floor=1e200), "std_floor must be a finite number in [0, 1e+100]"),
    (lambda: EWMAZScore(halflife=1e300), "halflife must be a finite number in (0, 1e+09], got 1e+300"),
    (lambda: ewma_zscore([1.0], halflife=2e9), "halflife must be a finite number in (0, 1e+09]"),
    (lambda: EWMAZScore(min_periods=10**12), "min_periods must be in [2, 1000000000], got"),
    (lambda: EWMAZScore(std_floor=float("inf")), "std_floor must be a finite number in [0, 1e+100]"),
    (lambda: fleet_zscore(np.zeros((3, 3)), std_floor=1e101), "std_floor must be a finite number"),
])
def test_parameters_are_bounded_with_clear_errors(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)


def test_fleet_refuses_a_sensors_by_times_array():
    """(sensors, times) passed for (times, sensors) ran silently and returned noise."""
    rng = np.random.default_rng(2)
    series = [20 + rng.standard_normal(500) for _ in range(5)]
    with pytest.raises(ValueError) as e:
        fleet_zscore(np.vstack(series))  # (5, 500): a row per sensor
    msg = str(e.value)
    assert "(times, sensors)" in msg and "shape (5, 500)" in msg and "values.T" in msg
    assert fleet_zscore(np.column_stack(series)).shape == (500, 5)
    assert fleet_zscore(np.vstack(series).T).shape == (500, 5)
    one_time = fleet_zscore(np.column_stack(series)[:1])  # one time step: a single row is fine
    assert one_time.shape == (1, 5) and np.isfinite(one_time).all()
