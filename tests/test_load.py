"""python -m pipeline.load: exact round trip and clear errors, against a real influxd."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.load import (
    TIME_UNITS,
    LoadError,
    _decimal_to_ns,
    load_csv,
    main,
    parse_time_column,
    read_csv_series,
    write_loaded,
)

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_round_trip_exact(tmp_path, influx, influx_env, fresh_db, capsys):
    rng = np.random.default_rng(1)
    n = 12_345
    vals = np.round(rng.standard_normal(n), 6)
    rows = "\n".join(f"{k / 360:.9f},{v!r}" for k, v in enumerate(vals.tolist()))
    path = _write(tmp_path / "s.csv", "time_s,value\n" + rows + "\n")
    rc = main([path, "--db", fresh_db, "--measurement", "ekg", "--tag", "source=p1",
               "--start", "2026-01-01T00:00:00Z"])
    assert rc == 0
    assert f"wrote {n} points" in capsys.readouterr().out
    r = influx.read_field(fresh_db, "ekg", "value", tags={"source": "p1"})
    expected_t = T0 + np.array([round(k * 10**9 / 360) for k in range(n)])
    np.testing.assert_array_equal(r.times, expected_t)
    np.testing.assert_array_equal(r.values, vals)


def test_rate_without_time_column(tmp_path, influx, influx_env, fresh_db):
    path = _write(tmp_path / "s.csv", "value\n1\n2\n3\n")
    assert main([path, "--db", fresh_db, "--measurement", "m", "--no-time-column",
                 "--start", "2026-01-01T00:00:00Z", "--rate", "360"]) == 0
    r = influx.read_field(fresh_db, "m", "value")
    np.testing.assert_array_equal(r.times, T0 + np.array([0, 2777778, 5555556]))


def test_iso_times(tmp_path):
    path = _write(tmp_path / "s.csv", "time,value\n2026-01-01T00:00:00.5Z,1\n2026-01-01T00:00:01Z,2\n")
    s = read_csv_series(path, time_column="time", time_unit="iso")
    np.testing.assert_array_equal(s.times_ns, [T0 + 500_000_000, T0 + 10**9])


@pytest.mark.parametrize("text, kwargs, message", [
    ("time_s,val\n0,1\n", {}, r"s\.csv, line 1: no column 'value'"),
    ("t,value\n0,1\n", {}, r"no column 'time_s'"),
    ("time_s,value\n0,1\n1,abc\n", {}, r"s\.csv, line 3, column 'value': value 'abc' is not a finite number"),
    ("time_s,value\n0,1\n1,nan\n", {}, r"line 3, column 'value': value 'nan'"),
    ("time_s,value\n0,1\n1,\n", {}, r"line 3, column 'value'"),
    ("time_s,value\n0,1\nx1,2\n", {}, r"line 3, column 'time_s': cannot parse time 'x1'"),
    ("time_s,value\n0,1\n1,2\n0.0,3\n", {}, r"lines 2 and 4, column 'time_s': duplicate timestamp"),
    ("time,value\nyesterday,1\n", {"time_column": "time", "time_unit": "iso"},
     r"line 2, column 'time': cannot parse time 'yesterday' as ISO 8601"),
    ("time_s,value\n", {}, r"no data rows"),
    ("", {}, r"empty"),
])
def test_bad_input_names_file_line_column(tmp_path, text, kwargs, message):
    path = _write(tmp_path / "s.csv", text)
    with pytest.raises(LoadError, match=message):
        read_csv_series(path, **kwargs)


def test_bad_input_writes_nothing(tmp_path, influx, influx_env, fresh_db, capsys):
    good = "\n".join(f"{k},{k}" for k in range(1000))
    path = _write(tmp_path / "s.csv", "time_s,value\n" + good + "\n1000,bad\n")
    assert main([path, "--db", fresh_db, "--measurement", "m"]) == 2
    assert "line 1002" in capsys.readouterr().err
    assert influx.count(fresh_db, "m", "value") == 0


def test_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.csv"), "--db", "x", "--measurement", "m"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unreachable_server_reports_and_fails(tmp_path, monkeypatch, capsys):
    from pipeline.influxd import free_port
    monkeypatch.setenv("INFLUXDB_PORT", str(free_port()))
    path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n")
    assert main([path, "--db", "x", "--measurement", "m"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach InfluxDB" in err and "re-run" in err


@pytest.mark.parametrize("start, message", [
    ("today", "--start: cannot parse time 'today'; use ISO 8601"),  # was the local wall clock
    ("yesterday", "cannot parse time 'yesterday'"),
    ("NaT", "cannot parse time 'NaT'"),
    ("3000-01-01T00:00:00Z", "--start: time '3000-01-01T00:00:00Z' is outside the range"),
])
def test_bad_start_is_a_clear_error(tmp_path, capsys, start, message):
    for time_column in ([], ["--no-time-column", "--rate", "1"]):
        path = _write(tmp_path / "s.csv", "value\n1\n2\n" if time_column else "time_s,value\n0,1\n1,2\n")
        assert main([path, "--db", "x", "--measurement", "m", "--start", start, *time_column]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err


def test_start_accepts_integer_ns_and_naive_iso_as_utc(tmp_path):
    path = _write(tmp_path / "s.csv", "time_s,value\n5,1\n6,2\n")
    for start in (str(T0), "2026-01-01T00:00:00", "2026-01-01 01:00:00+01:00"):
        s = read_csv_series(path, start=start)
        np.testing.assert_array_equal(s.times_ns, [T0, T0 + 10**9])


@pytest.mark.parametrize("env, args, message", [
    ({"INFLUXDB_PORT": "abc"}, [], "INFLUXDB_PORT must be an integer port, got 'abc'"),
    ({"INFLUXDB_SSL": "maybe"}, [], "INFLUXDB_SSL must be one of"),
    ({}, ["--port", "0"], "port must be in 1..65535, got 0"),
])
def test_bad_settings_are_a_clear_error(tmp_path, monkeypatch, capsys, env, args, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n")
    assert main([path, "--db", "x", "--measurement", "m", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: InfluxDB settings: ") and message in err


_TIME_TEXTS = st.one_of(
    st.decimals(min_value=-10**10, max_value=10**10, allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"[+-]?[0-9]{0,12}(\.[0-9]{0,12})?", fullmatch=True),
    st.sampled_from(["1e3", "-2.5E-1", " 7", "8 ", "+.5", "5.", "-0", "00012.3400"]),
)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_TIME_TEXTS, min_size=1, max_size=30),
       unit=st.sampled_from(["s", "ms", "us", "ns"]))
def test_fast_time_parser_equals_the_exact_one_row_at_a_time(texts, unit):
    col = pd.Series(texts, dtype=object)
    want = []
    for t in texts:
        try:
            want.append(_decimal_to_ns(t, TIME_UNITS[unit]))
        except (ValueError, ZeroDivisionError, TypeError, OverflowError):
            want.append(None)
    if None in want or any(not -2**63 <= w < 2**63 for w in want):
        with pytest.raises(LoadError, match=r"line \d+, column 't': cannot parse time"):
            parse_time_column(col, unit, "f.csv", "t")
        return
    np.testing.assert_array_equal(parse_time_column(col, unit, "f.csv", "t"), want)


def test_load_csv_in_many_batches_writes_every_point_exactly(tmp_path, influx, fresh_db):
    """write_loaded encodes a batch while the previous one is written: all arrive, exactly."""
    n = 12_345
    vals = np.round(np.random.default_rng(2).standard_normal(n), 5)
    path = _write(tmp_path / "s.csv", "time_s,value\n"
                  + "".join(f"{k // 100}.{k % 100:02d},{v!r}\n" for k, v in enumerate(vals.tolist())))
    series = read_csv_series(path, start="2026-01-01T00:00:00Z")
    assert write_loaded(influx, fresh_db, "m", series, "v", {"source": "x"}, batch_size=1000) == n
    r = influx.read_field(fresh_db, "m", "v", tags={"source": "x"})
    np.testing.assert_array_equal(r.times, T0 + np.arange(n) * 10_000_000)
    np.testing.assert_array_equal(r.values, vals)
    s2, written = load_csv(path, fresh_db, "m2", influx=influx, start="2026-01-01T00:00:00Z")
    assert written == n and influx.count(fresh_db, "m2", "value") == n
