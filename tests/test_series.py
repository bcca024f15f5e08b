"""Boundary validation of regular series, against the obvious loop in tests/naive.py."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.series import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    IrregularSeriesError,
    format_timestamp,
    infer_period,
    parse_timestamp,
    resample_regular,
    run_breaks,
    validate_series,
)

from naive import runs_and_gaps

T0 = 1_767_225_600_000_000_000
P = 2_777_778  # ~360 Hz


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.sampled_from([1.0, 0.95, 1.05, 2.0, 3.0, 17.0, 1.0, 1.0, 1.0]),
                      min_size=1, max_size=200))
def test_runs_equal_naive_loop(steps):
    t = T0 + np.concatenate([[0], np.cumsum(np.round(np.array(steps) * P))]).astype(np.int64)
    v = np.arange(len(t), dtype=float)
    rs = validate_series(t, v, period_ns=P)
    runs, gaps, irregular = runs_and_gaps(t, P)
    assert not irregular
    assert rs.runs == runs and rs.gaps == gaps
    # runs tile the series and every run is on grid
    assert sum(b - a for a, b in rs.runs) == len(t)
    for a, b in rs.runs:
        d = np.diff(rs.times[a:b])
        assert ((d >= 0.9 * P) & (d <= 1.1 * P)).all()


@pytest.mark.parametrize("step", [0.5, 1.2, 1.45, 0.8])
def test_irregular_step_is_a_clear_error(step):
    t = T0 + np.array([0, P, 2 * P, int(2 * P + step * P), int(3 * P + step * P)])
    with pytest.raises(IrregularSeriesError, match=r"not regularly sampled: 1 step.*Resample explicitly"):
        validate_series(t, np.ones(5), period_ns=P)


def test_sorts_dedupes_and_drops_nonfinite():
    t = np.array([30, 0, 10, 20, 20, 40, 50])
    v = np.array([3.0, 0.0, 1.0, 2.0, 2.5, np.inf, 5.0])
    rs = validate_series(t, v)
    assert rs.times.tolist() == [0, 10, 20, 30, 50]
    assert rs.values.tolist() == [0.0, 1.0, 2.5, 3.0, 5.0]  # the last duplicate wins
    assert (rs.n_duplicates, rs.n_nonfinite) == (1, 1)
    assert rs.runs == [(0, 4), (4, 5)] and rs.gaps == [(30, 50)]
    assert [len(r) for r in rs.run_values()] == [4, 1]


def test_values_beyond_the_detectors_range_are_gaps():
    v = np.arange(10.0)
    v[[3, 7]] = -1.7e308, 1e101
    v[5] = 1e100  # in range: scored
    rs = validate_series(np.arange(10) * 10, v)
    assert rs.values.tolist() == [0, 1, 2, 4, 1e100, 6, 8, 9] and rs.n_nonfinite == 2
    assert rs.gaps == [(20, 40), (60, 80)]


@pytest.mark.parametrize("times, values, message", [
    ([0.5, 1.5], [1.0, 2.0], "times_ns must be integers"),
    ([0, 1, 2], [1.0, 2.0], "equally long"),
    ([0, 1], ["a", "b"], "values must be numbers"),
    ([0, 1], [np.nan, 1.0], "at least 2 finite samples"),
    ([5], [1.0], "at least 2 finite samples"),
])
def test_bad_input_is_a_clear_error(times, values, message):
    with pytest.raises(ValueError, match=message):
        validate_series(np.array(times), values)


def test_period_and_parameter_checks():
    assert infer_period([0, 10, 20, 20, 40, 50]) == 10
    with pytest.raises(ValueError, match="at least 2 distinct"):
        infer_period([7, 7])
    with pytest.raises(ValueError, match="period_ns must be > 0"):
        run_breaks(np.arange(3), 0)
    with pytest.raises(ValueError, match=r"jitter_tol must be in \[0, 0.5\)"):
        run_breaks(np.arange(3), 1.0, jitter_tol=0.7)


def test_resample_makes_an_irregular_series_valid_and_keeps_gaps():
    rng = np.random.default_rng(0)
    n = 2000
    t = T0 + np.round(np.arange(n) * P + rng.uniform(-0.3, 0.3, n) * P).astype(np.int64)
    t = np.delete(t, np.arange(1000, 1050))  # a real gap of 50 samples
    v = np.sin(np.arange(n) / 20.0)
    v = np.delete(v, np.arange(1000, 1050))
    with pytest.raises(IrregularSeriesError):
        validate_series(t, v, period_ns=P)
    gt, gv = resample_regular(t, v, P)
    rs = validate_series(gt, gv, period_ns=P)
    assert len(rs.gaps) == 1 and rs.gaps[0][0] < t[1000] < rs.gaps[0][1]
    # linear interpolation: each grid value lies between its two neighbours
    j = np.searchsorted(t, gt, side="right").clip(1, len(t) - 1)
    lo = np.minimum(v[j - 1], v[j]) - 1e-12
    hi = np.maximum(v[j - 1], v[j]) + 1e-12
    exact = gt == t[j]
    assert (((gv >= lo) & (gv <= hi)) | exact).all()
    assert np.all(np.diff(gt) % P == 0)


@pytest.mark.parametrize("text, want", [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T00:00:00", T0),  # no zone: UTC, never the local zone
    ("2026-01-01", T0),
    (" 2026-01-01 00:00:00.000000001 ", T0 + 1),
    ("2026-01-01T01:00:00+01:00", T0),
    (str(T0), T0),
    ("-5", -5),
    (T0, T0),
    ("1677-09-21T00:12:43.145224194Z", MIN_TIME_NS),
    ("2262-04-11T23:47:16.854775806Z", MAX_TIME_NS),
])
def test_parse_timestamp_accepts_iso_integer_ns(text, want):
    assert parse_timestamp(text) == want


def test_parse_timestamp_now_is_utc_now():
    a = time.time_ns()
    assert a <= parse_timestamp("now") <= time.time_ns()


@pytest.mark.parametrize("text, message", [
    ("today", "cannot parse time 'today'"),  # pandas would give the local wall clock
    ("yesterday", "cannot parse time"),
    ("tomorrow", "cannot parse time"),
    ("NaT", "cannot parse time"),
    ("nan", "cannot parse time"),
    ("inf", "cannot parse time"),
    ("-inf", "cannot parse time"),
    ("", "cannot parse time"),
    ("12:00", "cannot parse time"),  # today at noon, local
    ("Jan 1 2026", "cannot parse time"),
    ("2026-13-01", "cannot parse time"),
    ("1.5", "cannot parse time"),
    (1.5, "cannot parse time"),
    ("2262-04-12", "outside the range InfluxDB can store"),
    ("1677-09-21", "outside the range"),
    ("9999-12-31T00:00:00Z", "outside the range"),
    ("1677-09-21T00:12:43.145224193Z", "outside the range"),
    (str(2**63 - 1), "outside the range"),
    (str(2**70), "outside the range"),
])
def test_parse_timestamp_rejects_with_what_value_and_forms(text, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_timestamp(text, what="--start")
    msg = str(e.value)
    assert msg.startswith("--start: ") and repr(text) in msg
    assert "ISO 8601" in msg and "integer nanoseconds" in msg and "now" in msg


def test_format_timestamp_is_iso_utc_and_never_raises():
    assert format_timestamp(T0) == "2026-01-01T00:00:00+00:00"
    assert format_timestamp(np.int64(T0 + 1)) == "2026-01-01T00:00:00.000000001+00:00"
    assert parse_timestamp(format_timestamp(MAX_TIME_NS)) == MAX_TIME_NS  # round trip
    assert format_timestamp(None) == "(none)"
    assert format_timestamp(-(2**63)) == str(-(2**63))  # NaT's value
    assert format_timestamp(2**70) == str(2**70)
    assert format_timestamp(float("nan")) == "nan"


def test_irregular_error_names_the_time_in_iso():
    t = T0 + np.array([0, P, 2 * P, 2 * P + P // 2])
    with pytest.raises(IrregularSeriesError, match=r"at 2026-01-01T00:00:00\.00694"):
        validate_series(t, np.ones(4), period_ns=P)
