"""InfluxDB I/O: exact line-protocol bytes, and round trips against a real influxd."""

import time
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.influx import (
    PARALLEL_MIN_LINES,
    Influx,
    InfluxNameError,
    InfluxQueryError,
    InfluxSettings,
    InfluxUnavailableError,
    ReadResult,
    _parse_csv,
    _parse_tag_column,
    encode_lines,
    quote_ident,
)
from pipeline.influxd import free_port
from pipeline.line_protocol import _name_problem, float_texts

from naive import line_protocol, naive_as_stored, naive_by_group

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def test_line_protocol_exact_bytes():
    lines = encode_lines(
        "my ekg,x",
        np.array([T0, T0 + 1]),
        {"max_error": np.array([1.25, np.nan]), "anomaly": np.array([True, False]),
         "n": np.array([7, -1]), "note": np.array(['say "hi"\\', "ok"])},
        {"source": "a,b c", "model": "m=1"},
    )
    assert lines == [
        'my\\ ekg\\,x,model=m\\=1,source=a\\,b\\ c anomaly=true,max_error=1.25,n=7i,'
        'note="say \\"hi\\"\\\\" ' + str(T0),
        'my\\ ekg\\,x,model=m\\=1,source=a\\,b\\ c anomaly=false,n=-1i,note="ok" ' + str(T0 + 1),
    ]


def test_line_protocol_floats_round_trip_exactly():
    v = np.array([0.1, 1 / 3, -2.5e-300, 1e300])
    lines = encode_lines("m", np.arange(4), {"v": v})
    back = np.array([float(line.split("=")[1].split(" ")[0]) for line in lines])
    assert (back == v).all()


def test_line_protocol_rejects_bad_input():
    with pytest.raises(ValueError, match="times_ns must be integers"):
        encode_lines("m", np.array([1.5]), {"v": np.array([1.0])})
    with pytest.raises(ValueError, match="shape"):
        encode_lines("m", np.array([1, 2]), {"v": np.array([1.0])})
    with pytest.raises(ValueError, match="measurement"):
        encode_lines("", np.array([1]), {"v": np.array([1.0])})
    with pytest.raises(ValueError, match="line break"):
        encode_lines("m", np.array([1]), {"v": np.array([1.0])}, {"t": "a\nb"})
    with pytest.raises(ValueError, match="outside the range InfluxDB stores"):
        encode_lines("m", np.array([2**63 - 1]), {"v": np.array([1.0])})


def test_quote_ident_and_tag_parsing():
    assert quote_ident('a"b\\c') == '"a\\"b\\\\c"'
    assert _parse_tag_column("source=a\\ b\\,c,x=1\\=2") == {"source": "a b,c", "x": "1=2"}
    assert _parse_tag_column("sensor=C:\\temp") == {"sensor": "C:\\temp"}  # was 'C:temp'


def test_settings_from_env_and_flags():
    env = {"INFLUXDB_HOST": "h", "INFLUXDB_PORT": "1234", "INFLUXDB_USERNAME": "u",
           "INFLUXDB_PASSWORD": "pw", "INFLUXDB_SSL": "true"}
    s = InfluxSettings.from_env(env)
    assert (s.host, s.port, s.username, s.password, s.ssl) == ("h", 1234, "u", "pw", True)
    assert s.url == "https://h:1234"
    assert "pw" not in repr(s)
    assert InfluxSettings.from_env(env, port=99, host=None).port == 99
    with pytest.raises(ValueError, match="INFLUXDB_PORT"):
        InfluxSettings.from_env({"INFLUXDB_PORT": "x"})
    with pytest.raises(ValueError, match="INFLUXDB_SSL"):
        InfluxSettings.from_env({"INFLUXDB_SSL": "maybe"})


def test_round_trip_exact_with_tags_and_groups(influx, fresh_db):
    rng = np.random.default_rng(0)
    n = 30_000
    t = T0 + np.cumsum(rng.integers(1, 10**9, n))
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    assert influx.write_series(fresh_db, "ekg", t, {"value": a}, {"source": "p 1"}, batch_size=10_000) == n
    assert influx.write_series(fresh_db, "ekg", t[::2], {"value": b[::2]}, {"source": "p,2"}) == n // 2
    r = influx.read_field(fresh_db, "ekg", "value", tags={"source": "p 1"})
    np.testing.assert_array_equal(r.times, t)
    np.testing.assert_array_equal(r.values, a)
    # half-open range and exclusive start
    r = influx.read_field(fresh_db, "ekg", "value", t[10], t[20], tags={"source": "p 1"})
    np.testing.assert_array_equal(r.times, t[10:20])
    r = influx.read_field(fresh_db, "ekg", "value", t[10], t[20], tags={"source": "p 1"},
                          include_start=False)
    np.testing.assert_array_equal(r.times, t[11:20])
    g = influx.read_field(fresh_db, "ekg", "value", group_by="source").by_group()
    assert sorted(g) == ["p 1", "p,2"]
    np.testing.assert_array_equal(g["p,2"].values, b[::2])
    np.testing.assert_array_equal(g["p,2"].times, t[::2])
    assert influx.last_time(fresh_db, "ekg", "value", {"source": "p,2"}) == t[::2][-1]
    assert influx.first_time(fresh_db, "ekg", "value", t[11], tags={"source": "p,2"}) == t[12]
    assert influx.first_time(fresh_db, "ekg", "value", t[12], tags={"source": "p,2"},
                             include_start=False) == t[14]
    assert influx.first_time(fresh_db, "ekg", "value", t[11], t[12], {"source": "p,2"}) is None
    assert influx.first_time(fresh_db, "ekg", "value", t[-1] + 1) is None
    assert influx.tag_values(fresh_db, "ekg", "source") == ["p 1", "p,2"]
    assert influx.count(fresh_db, "ekg", "value") == n + n // 2
    assert influx.count(fresh_db, "ekg", "value", {"source": "p 1"}) == n


def test_injection_is_bound_not_concatenated(influx, fresh_db):
    influx.write_series(fresh_db, "m", np.array([T0]), {"v": np.array([1.0])}, {"s": "x"})
    evil = "x' OR 1=1 --"
    r = influx.read_field(fresh_db, "m", "v", tags={"s": evil})
    assert len(r) == 0
    r = influx.read_field(fresh_db, 'm"; DROP DATABASE "x', "v")
    assert len(r) == 0
    assert fresh_db in influx.databases()


def test_non_numeric_values_are_counted_not_zeroed(influx, fresh_db):
    # a string field (the user pointed at the wrong field, or a bad writer)
    influx.write_lines(fresh_db, [f'm v="oops" {T0}', f'm v="1.5x" {T0 + 1}'])
    r = influx.read_field(fresh_db, "m", "v")
    assert r.n_malformed == 2 and len(r) == 0


def test_values_beyond_the_detectors_range_are_counted_as_malformed(influx, fresh_db):
    # docs/extremes.md: |x| > 1e100 is a sentinel or a decoding error, never scored
    vals = np.array([1.5, 1.7e308, -1e101, 1e100, -1e100, 5e-324, 2.0])
    influx.write_series(fresh_db, "m", T0 + np.arange(7), {"v": vals})
    r = influx.read_field(fresh_db, "m", "v")
    assert r.n_malformed == 2
    np.testing.assert_array_equal(r.values, [1.5, 1e100, -1e100, 5e-324, 2.0])


def test_csv_parser_drops_and_counts_mixed_values():
    body = b"name,tags,time,v\nm,,1,1.5\nm,,2,oops\nm,,3,true\nm,,4,-2\n"
    r = _parse_csv(body, "v", None)
    assert r.n_malformed == 2
    np.testing.assert_array_equal(r.times, [1, 4])
    np.testing.assert_array_equal(r.values, [1.5, -2.0])


def _by_group_seconds(r, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        r.by_group()
        best = min(best, time.perf_counter() - t0)
    return best


def test_by_group_with_many_keys_equals_the_obvious_split_and_scales():
    rng = np.random.default_rng(5)
    n = 20_000
    keys = np.array([f"s{i:03d}" for i in range(500)] + ["", "a b,c"], dtype=object)
    groups = keys[rng.integers(0, len(keys), n)]
    r = ReadResult(np.arange(n, dtype=np.int64) + T0, rng.standard_normal(n), groups, n_malformed=4)
    got, want = r.by_group(), naive_by_group(r.times, r.values, groups)
    assert list(got) == list(want)  # same keys, in order of first appearance
    for k, (times, values) in want.items():
        np.testing.assert_array_equal(got[k].times, times)  # read (time) order kept
        np.testing.assert_array_equal(got[k].values, values)
        assert got[k].n_malformed == 0 and got[k].groups is None
    assert r.n_malformed == 4  # the whole result keeps the count
    assert ReadResult(r.times, r.values).by_group()[""].times is r.times  # ungrouped: itself
    # O(points log points), not O(points x keys): 100x the keys costs about the same
    n = 100_000
    t = np.arange(n, dtype=np.int64)
    few = ReadResult(t, np.zeros(n), np.array([f"k{i % 10}" for i in range(n)], dtype=object))
    many = ReadResult(t, np.zeros(n), np.array([f"k{i % 1000}" for i in range(n)], dtype=object))
    assert _by_group_seconds(many) < 8 * _by_group_seconds(few) + 0.02


def test_unknown_database_is_a_clear_error(influx):
    with pytest.raises(InfluxQueryError, match="database 'nope' not found"):
        influx.read_field("nope", "m", "v")


def test_bad_query_is_a_clear_error(influx, fresh_db):
    with pytest.raises(InfluxQueryError, match="error parsing query"):
        influx.query_csv("SELECT FROM", fresh_db)


def test_unreachable_server_is_a_clear_error():
    ix = Influx(InfluxSettings(port=free_port(), timeout=2))
    with pytest.raises(InfluxUnavailableError, match="Is influxd running"):
        ix.ping()
    with pytest.raises(InfluxUnavailableError):
        ix.write_lines("db", ["m v=1 1"])


_text = st.text(alphabet=st.sampled_from(list("ab %s{}=, \\\"'é")), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(measurement=_text, tags=st.dictionaries(_text, _text, max_size=3),
       n=st.integers(0, 20), data=st.data(),
       kinds=st.lists(st.sampled_from(["f", "fnan", "i", "b"]), min_size=1, max_size=4))
def test_encode_lines_equals_the_naive_encoder(measurement, tags, n, data, kinds):
    """Every fast path of encode_lines (one field, all finite, some missing) gives the naive bytes."""
    fields = {}
    for j, kind in enumerate(kinds):
        if kind.startswith("f"):
            vals = np.array(data.draw(st.lists(st.floats(allow_nan=kind == "fnan",
                                                         allow_infinity=kind == "fnan"),
                                               min_size=n, max_size=n)), dtype=float)
        elif kind == "i":
            vals = np.array(data.draw(st.lists(st.integers(-2**62, 2**62), min_size=n, max_size=n)),
                            dtype=np.int64)
        else:
            vals = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        fields[f"f{j} %s,={j}"] = vals
    times = T0 + np.arange(n, dtype=np.int64)
    names_ok = _name_problem(measurement, "measurement") is None and all(
        _name_problem(k, "tag key") is None and _name_problem(v, "tag value") is None
        for k, v in tags.items())
    if not names_ok:  # refused before anything is encoded (tests/test_names.py has the rules)
        with pytest.raises(InfluxNameError):
            encode_lines(measurement, times, fields, tags)
        return
    assert encode_lines(measurement, times, fields, tags) == line_protocol(
        measurement, times, fields, tags, float_text=lambda v: float_texts([v])[0])


_FLOAT_EDGES = [0.0, -0.0, 0.1, 1 / 3, 1e-4, 1e-05, 2.5e-05, 1e-09, -3.4558419206478605e-09,
                1e15, 1e16, 1.2345e17, 9007199254740993.0, 5e-324, 2.2250738585072014e-308,
                1.7976931348623157e308, -1.5e300, -2.5e-300]


@settings(max_examples=300, deadline=None)
@given(v=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=30),
       raw=st.binary(min_size=0, max_size=8 * 30))
def test_float_texts_have_the_digits_of_repr_and_read_back_bit_for_bit(v, raw):
    bits = np.frombuffer(raw[: len(raw) // 8 * 8], np.float64)
    x = np.concatenate([_FLOAT_EDGES, v, bits[np.isfinite(bits)]])
    texts = float_texts(x)
    assert len(texts) == len(x)
    for t, f in zip(texts, x.tolist(), strict=True):
        assert np.float64(float(t)).tobytes() == np.float64(f).tobytes(), (t, f)
        assert Decimal(t) == Decimal(repr(f)), (t, f)  # the same shortest digits as repr
    # float32 and big-endian columns are written as the float64 repr of their values (a
    # float32 source column is stored exactly; only single=True rounds)
    for arr in (np.array([0.1, 3e-7], np.float32), np.array([0.1, 1e-05], ">f8")):
        assert float_texts(arr) == float_texts(arr.astype(np.float64).tolist())
        assert [Decimal(t) for t in float_texts(arr)] == [Decimal(repr(float(a))) for a in arr]
    assert float_texts(np.empty(0)) == []


_F32_EDGES = [0.0, -0.0, 0.1, 1 / 3, -2.5, 1e-4, 123456789.0, 3.4028234e38, -1.1754944e-38,
              16777217.0, 0.027707289347698633]


@settings(max_examples=300, deadline=None)
@given(v=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
       raw=st.binary(min_size=0, max_size=8 * 30))
def test_float_texts_at_float32_digits_read_back_as_the_naive_float32_text(v, raw):
    """``single=True``: each value as numpy's shortest float32 text, one at a time; a column
    float32 cannot hold (beyond its range, or subnormal) at float64, whole; non-finite: null."""
    bits = np.frombuffer(raw[: len(raw) // 8 * 8], np.float64)
    for x in (np.array(_F32_EDGES + v, np.float64), np.concatenate([v, bits]),
              np.array(_F32_EDGES + [1e39]), np.array([1.0, 1e-40])):
        texts = float_texts(x, single=True)
        got = np.array([np.nan if t == "null" else float(t) for t in texts])
        want = naive_as_stored(x)
        want = np.where(np.isfinite(want), want, np.nan)
        np.testing.assert_array_equal(got, want)
    # shorter where it matters, on scores with all their digits (not on every value: orjson
    # writes float32's 1e-06 as 0.000001 where float64's is 1e-6)
    z = np.random.default_rng(0).standard_normal(1000)
    assert sum(map(len, float_texts(z, single=True))) < 0.6 * sum(map(len, float_texts(z)))
    assert float_texts(np.array([1 / 3, 0.1]), single=True) == ["0.33333334", "0.1"]
    assert float_texts(np.array([1 / 3, 1e39]), single=True) == float_texts([1 / 3, 1e39])


def test_a_column_at_float32_digits_is_one_precision_across_the_rows_lacking_other_fields():
    """The float64 fallback is the column's, not a group's: rows lacking ``b`` are rendered
    apart from the others, and ``a`` keeps every digit in all of them (its 1e39 needs it)."""
    a = np.array([1 / 3, 1 / 3, 1e39, 1 / 3])
    lines = encode_lines("m", T0 + np.arange(4), {"a": a, "b": np.array([1., np.nan, 1., np.nan])},
                         single=True)
    assert [line.split(" ")[1].split(",")[0] for line in lines] == [
        f"a={t}" for t in float_texts(a)]
    fine = encode_lines("m", T0 + np.arange(2), {"a": a[:2], "b": np.array([1., np.nan])},
                        single=True)
    assert [line.split(" ")[1].split(",")[0] for line in fine] == ["a=0.33333334"] * 2


def test_float_texts_round_trip_through_influxd_bit_for_bit(influx, fresh_db):
    x = np.array(_FLOAT_EDGES + list(np.random.default_rng(3).standard_normal(200)
                                     * 10.0 ** np.arange(-100, 100)))
    x = x[np.abs(x) < 1e100]  # read_field skips larger values as malformed (the stream's bound)
    t = T0 + np.arange(len(x), dtype=np.int64)
    influx.write_lines(fresh_db, encode_lines("m", t, {"v": x}))
    back = influx.read_field(fresh_db, "m", "v")
    np.testing.assert_array_equal(back.times, t)
    assert back.values.astype(np.float64).tobytes() == x.tobytes()


@pytest.mark.parametrize("error", ["query engine shutdown", '"query engine shutdown"',
                                   "query interrupted"])
def test_a_server_shutting_down_is_unavailable_not_a_bad_query(error):
    # influxd answers queries with these while it stops; the stream must retry, not give up
    ix = Influx(InfluxSettings(host="127.0.0.1", port=free_port()))
    with pytest.raises(InfluxUnavailableError, match="shutting down"):
        ix._query_failed(error, "SELECT 1")
    with pytest.raises(InfluxQueryError, match="query failed: database not found"):
        ix._query_failed("database not found: x", "SELECT 1")


def test_parallel_write_lands_every_line_and_a_short_write_stays_one_request(influx, fresh_db):
    n = 3 * PARALLEL_MIN_LINES + 7
    x = np.random.default_rng(5).standard_normal(n)
    t = T0 + np.arange(n, dtype=np.int64)
    assert influx.write_lines(fresh_db, encode_lines("m", t, {"v": x}), batch_size=4000,
                              parallel=3) == n
    assert len(influx._peers) == 2  # parts 2 and 3 went over connections of their own
    back = influx.read_field(fresh_db, "m", "v")
    np.testing.assert_array_equal(back.times, t)
    assert back.values.astype(np.float64).tobytes() == x.tobytes()
    short = Influx(influx.settings)
    assert short.write_lines(fresh_db, ["m w=1 1"] * (2 * PARALLEL_MIN_LINES - 1), parallel=2)
    assert short._peers == []
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        influx.write_lines(fresh_db, ["m w=1 1"], parallel=0)


def test_parallel_write_parts_are_in_flight_at_the_same_time(influx, fresh_db):
    """Each part's writer is slowed by 0.3 s: the three parts overlap in time, each on its own
    connection (one after the other they would take 0.9 s and never overlap)."""
    lines = [f"m v={i} {T0 + i}" for i in range(3 * PARALLEL_MIN_LINES)]
    ix = Influx(influx.settings)
    ix.write_lines(fresh_db, lines, parallel=3)  # opens the peers
    spans = []

    def slowed(conn):
        real = conn._write_part

        def part(*args):
            t0 = time.monotonic()
            time.sleep(0.3)
            n = real(*args)
            spans.append((t0, time.monotonic(), id(conn)))
            return n
        conn._write_part = part

    for conn in [ix, *ix._peers]:
        slowed(conn)
    assert ix.write_lines(fresh_db, lines, parallel=3) == len(lines)
    assert len(spans) == 3 and len({c for *_, c in spans}) == 3
    assert max(a for a, _, _ in spans) < min(b for _, b, _ in spans)  # all three overlap
    ix.close()
    assert ix._peers == [] and ix.write_lines(fresh_db, lines[:5]) == 5  # reopens on use


def test_parallel_write_failure_counts_the_lines_before_the_first_failing_part(influx, fresh_db):
    """Part 1 of 2 is refused (a malformed line): ``written`` is part 0's lines, every one of
    which is stored; with one part the failing request was the first, and nothing counts."""
    n = 2 * PARALLEL_MIN_LINES
    lines = [f"m v={i} {T0 + i}" for i in range(n)]
    lines[n - 3] = f"m v=oops {T0 + n - 3}"
    with pytest.raises(InfluxQueryError) as e:
        influx.write_lines(fresh_db, lines, batch_size=n, parallel=2)
    assert e.value.written == n // 2
    assert influx.count(fresh_db, "m", "v") >= n // 2
    with pytest.raises(InfluxQueryError) as e:
        Influx(influx.settings).write_lines(fresh_db, lines[::-1], batch_size=n, parallel=2)
    assert e.value.written == 0


def test_parallel_write_to_an_unreachable_server_is_unavailable():
    with pytest.raises(InfluxUnavailableError, match="cannot reach InfluxDB"):
        Influx(InfluxSettings(port=free_port(), timeout=2)).write_lines(
            "x", ["m v=1 1"] * (2 * PARALLEL_MIN_LINES), parallel=2)
