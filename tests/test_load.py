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


# --------------------------------------------------------------------------
# all or nothing: every check runs before the first write
# --------------------------------------------------------------------------
MIN_NS, MAX_NS = -(2**63) + 2, 2**63 - 2  # what influxd 1.6 stores (one ns beyond is refused)


def _measurements(influx, db):
    if db not in influx.databases():
        return []
    return [r[0] for s in influx.query_json("SHOW MEASUREMENTS", db) for r in s.get("values", [])]


def test_one_time_after_2262_writes_nothing(tmp_path, influx, influx_env, fresh_db, capsys):
    """Was: 60,000 points written (the first batch), then exit 1 and 're-run'."""
    rows = "\n".join(f"{T0 + k * 10**6},{k}" for k in range(60_000))
    path = _write(tmp_path / "s.csv", f"t,value\n{rows}\n{MAX_NS + 1},1\n")
    rc = main([path, "--db", fresh_db, "--measurement", "m", "--time-column", "t",
               "--time-unit", "ns"])
    err = capsys.readouterr().err
    assert rc == 2 and "line 60002, column 't'" in err and "outside the range InfluxDB" in err
    assert "re-run" not in err
    assert _measurements(influx, fresh_db) == []


def test_nat_sentinel_time_is_refused_not_summarized_as_nat(tmp_path, influx, influx_env,
                                                            fresh_db, capsys):
    """Was: 'read 10 points from NaT ...', 10 points written at other times."""
    rows = "\n".join(f"{-(2**63) + k * 10**9},{k}" for k in range(10))
    path = _write(tmp_path / "s.csv", f"t,value\n{rows}\n")
    rc = main([path, "--db", fresh_db, "--measurement", "m", "--time-column", "t",
               "--time-unit", "ns"])
    out, err = capsys.readouterr()
    assert rc == 2 and "NaT" not in out + err
    assert "line 2, column 't': time -9223372036854775808 ns is outside the range" in err
    assert _measurements(influx, fresh_db) == []


def test_the_exact_ends_of_influxdbs_range_load_and_read_back(tmp_path, influx, influx_env,
                                                              fresh_db):
    path = _write(tmp_path / "s.csv", f"t,value\n{MIN_NS},1\n0,2\n{MAX_NS},3\n")
    assert main([path, "--db", fresh_db, "--measurement", "m", "--time-column", "t",
                 "--time-unit", "ns"]) == 0
    r = influx.read_field(fresh_db, "m", "value", MIN_NS, None)
    assert r.times.tolist() == [MIN_NS, 0, MAX_NS] and r.values.tolist() == [1, 2, 3]


@pytest.mark.parametrize("text, args, message", [
    (f"t,value\n0,1\n{MIN_NS - 1},2\n", ["--time-column", "t", "--time-unit", "ns"],
     "line 3, column 't': time 1677-09-21T00:12:43.145224193+00:00 (-9223372036854775807 ns) is"),
    ("t,value\n2026-01-01T00:00:00Z,1\n2300-01-01T00:00:00Z,2\n",  # was a pandas traceback
     ["--time-column", "t", "--time-unit", "iso"], "line 3, column 't': time '2300-01-01"),
    ("t,value\n1677-09-21T00:12:43.145224193Z,1\n", ["--time-column", "t", "--time-unit", "iso"],
     "line 2, column 't': time 1677-09-21T00:12:43.145224193+00:00 (-9223372036854775807 ns) is"),
    ("time_s,value\n0,1\n1,2\n2,3\n", ["--start", "2262-04-11T23:47:15Z"],
     "line 4, column 'time_s': time 9223372037000000000 ns (after --start 2262-04-11T23:47:15Z)"),
    ("value\n1\n2\n3\n", ["--no-time-column", "--start", "2262-04-11T23:47:15Z", "--rate", "1"],
     "line 4: time 9223372037000000000 (--start"),  # was an OverflowError traceback
    ("t,value\n99999999999999999999,1\n", ["--time-column", "t", "--time-unit", "ns"],
     "outside the range"),
])
def test_times_outside_influxdbs_range_are_refused_before_writing(tmp_path, influx, influx_env,
                                                                  capsys, text, args, message):
    db = "load_range_refused"
    path = _write(tmp_path / "s.csv", text)
    rc = main([path, "--db", db, "--measurement", "m", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert db not in influx.databases()


def test_field_type_conflict_is_refused_before_writing(tmp_path, influx, influx_env, fresh_db,
                                                       capsys):
    """Was: InfluxDB's 400 'field type conflict', then 're-run the same command'."""
    influx.write_lines(fresh_db, [f'm value="text" {T0 - 10**9}'])
    path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n1,2\n")
    rc = main([path, "--db", fresh_db, "--measurement", "m", "--start", str(T0)])
    err = capsys.readouterr().err
    assert rc == 2 and "already holds string values" in err and "--field" in err
    assert "re-run" not in err
    assert influx.count(fresh_db, "m", "value") == 1  # only the string point


def test_points_beyond_the_retention_policy_are_refused_before_writing(tmp_path, influx,
                                                                       influx_env, capsys):
    db = "load_retention"
    influx.query_json(f'CREATE DATABASE "{db}" WITH DURATION 1h NAME "short"')
    try:
        path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n3600,2\n7200,3\n")
        rc = main([path, "--db", db, "--measurement", "m", "--start", _ago(2 * 3600 + 30)])
        err = capsys.readouterr().err  # the first point is 2 h old, the last 30 s
        assert rc == 2 and "2 of 3 points are older than the default retention policy 'short'" in err
        assert _measurements(influx, db) == []
        path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n")
        assert main([path, "--db", db, "--measurement", "m", "--start", _ago(600)]) == 0
    finally:
        influx.drop_database(db)


def _ago(seconds):
    """Integer ns of ``seconds`` ago (a --start)."""
    import time

    return str(time.time_ns() - int(seconds * 10**9))


def test_long_lines_are_written_in_requests_influxdb_accepts(tmp_path, influx, influx_env,
                                                             fresh_db, capsys):
    """30,000 points with a 1 kB tag: one 50k-line request would be 31 MB, over influxd's
    25 MB max-body-size (HTTP 413; was 're-run the same command', forever)."""
    rows = "\n".join(f"{k},{k}" for k in range(30_000))
    path = _write(tmp_path / "s.csv", f"time_s,value\n{rows}\n")
    rc = main([path, "--db", fresh_db, "--measurement", "m", "--tag", "k=" + "x" * 1000])
    assert rc == 0, capsys.readouterr().err
    assert influx.count(fresh_db, "m", "value") == 30_000


def test_a_refused_request_does_not_say_rerun(influx, fresh_db):
    """The message after a real HTTP 400 (a malformed line) vs. an unreachable server."""
    from pipeline.influx import Influx, InfluxError, InfluxSettings
    from pipeline.influxd import free_port
    from pipeline.load import _after_failure

    with pytest.raises(InfluxError) as e400:
        influx.write_lines(fresh_db, ["m v=1 1", "m v=oops 2"], batch_size=1)
    msg = _after_failure(e400.value, 2)
    assert e400.value.code == 400 and e400.value.written == 1
    assert msg.startswith("1 of 2 points were written") and "will fail the same way" in msg
    assert "re-run the same command when" not in msg
    with pytest.raises(InfluxError) as down:
        Influx(InfluxSettings(port=free_port(), timeout=2)).write_lines("x", ["m v=1 1"])
    assert "re-run the same command when InfluxDB answers again" in _after_failure(down.value, 1)


# --------------------------------------------------------------------------
# authentication (a second, real influxd with auth-enabled = true)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_influxd(tmp_path_factory):
    import requests

    from pipeline.influxd import LocalInfluxd

    srv = LocalInfluxd(tmp_path_factory.mktemp("auth_influxd"), auth=True).start()

    def q(text, user="admin", password="admin-pw"):
        r = requests.post(f"{srv.url}/query", params={"q": text}, auth=(user, password), timeout=10)
        assert r.status_code == 200 and "error" not in r.text, r.text

    q("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
    q("CREATE DATABASE existing")
    q("CREATE USER rw WITH PASSWORD 'rw-pw'")
    q("GRANT ALL ON existing TO rw")
    yield srv
    srv.stop()


def _auth_env(monkeypatch, srv, user, password):
    monkeypatch.setenv("INFLUXDB_HOST", "127.0.0.1")
    monkeypatch.setenv("INFLUXDB_PORT", str(srv.http_port))
    monkeypatch.setenv("INFLUXDB_USERNAME", user)
    monkeypatch.setenv("INFLUXDB_PASSWORD", password)
    monkeypatch.delenv("INFLUXDB_SSL", raising=False)


def test_wrong_password_is_its_own_clear_error(tmp_path, auth_influxd, monkeypatch, capsys):
    _auth_env(monkeypatch, auth_influxd, "admin", "wrong-secret")
    path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n")
    assert main([path, "--db", "existing", "--measurement", "m"]) == 1
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401" in err and "INFLUXDB_PASSWORD" in err
    assert "re-run the same command when" not in err and "Nothing was written" in err
    assert "wrong-secret" not in err  # no secret in messages


def test_a_user_who_may_write_but_not_create_databases_can_load(tmp_path, auth_influxd,
                                                                monkeypatch, capsys):
    """Was: CREATE DATABASE on every load, so a non-admin user always failed (HTTP 403)."""
    _auth_env(monkeypatch, auth_influxd, "rw", "rw-pw")
    path = _write(tmp_path / "s.csv", "time_s,value\n0,1\n1,2\n")
    assert main([path, "--db", "existing", "--measurement", "m"]) == 0, capsys.readouterr().err
    assert main([path, "--db", "new_db", "--measurement", "m"]) == 1  # creating one: refused
    err = capsys.readouterr().err
    assert "refused the permission (HTTP 403" in err and "re-run the same command when" not in err


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
        with pytest.raises(LoadError, match=r"line \d+, column 't': (cannot parse time|time .* is outside)"):
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
