"""Awkward names through ``pipeline.stream`` and its alert path, against a real influxd.

``tests/test_names.py`` writes and reads names with ``Influx`` and the loader; here the same
kind of names (quotes, spaces, commas, ``=``, backslashes, ``#``, unicode, emoji, InfluxQL
keywords, a leading space) are the source measurement, field key, filter tag and fan-out tag
values of a small sensor fleet, the config's series name and the output measurement.  The
stream scores the fleet (backfill, in this process) and every score must come back under
exactly the source's tag values, ``series`` = the config name, one point per sample.  Names
that cannot round-trip are refused by the config before anything is written.

The alert path (webhook, Slack stand-in and the Chronograf history) must carry the same
names unchanged; Slack's text format escapes ``<``, ``>`` and ``&``, nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from conftest import RATE, SENSOR_PERIOD, T0, assert_stored
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.influx import encode_lines, quote_ident
from pipeline.line_protocol import _name_problem
from pipeline.stream import (
    ConfigError,
    OutputConfig,
    SeriesConfig,
    Stream,
    StreamConfig,
    load_config,
)

from loopback import Receiver

N = 60            # samples per key: 2 min at the sensor model's 2 s cadence
SPIKE = 40        # the z-score alarm of the alert test: ALERT at 40, RECOVERY at 44
END = T0 + 10**12


def readings(seed: int, spike: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = np.round(21 + 0.1 * rng.standard_normal(N), 3)
    if spike:
        v[SPIKE] += 4.0
    return T0 + np.arange(N, dtype=np.int64) * SENSOR_PERIOD, v


def _esc(text: str, chars: str) -> str:
    return "".join("\\" + c if c in chars else c for c in text)


def raw_lines(meas, field, tags, t, v) -> list[str]:
    """The lines another client writes: escape the special characters, nothing else."""
    head = _esc(meas, ", ") + "".join(f",{_esc(k, ',= ')}={_esc(tags[k], ',= ')}"
                                      for k in sorted(tags))
    return [f"{head} {_esc(field, ',= ')}={x!r} {ti}" for ti, x in zip(t.tolist(), v.tolist(),
                                                                        strict=True)]


def write_source(influx, db, case, raw=False, spike_keys=()):
    """One short series per fan-out key under the case's filter tag, plus a decoy under a
    neighbouring filter value that the stream must not read."""
    data = {}
    fk, fv = case["filter"]
    lines = []
    for i, key in enumerate(case["keys"]):
        t, v = readings(i, spike=key in spike_keys)
        data[key] = (t, v)
        for value, vv in ((fv, v), (fv + "x", v + 100.0)):  # the decoy is far off: it would alarm
            tags = {fk: value, case["fan_out"]: key}
            lines += (raw_lines(case["measurement"], case["field"], tags, t, vv) if raw else
                      encode_lines(case["measurement"], t, {case["field"]: vv}, tags))
    if raw:
        r = requests.post(f"{influx.settings.url}/write", params={"db": db, "precision": "n"},
                          data=("\n".join(lines) + "\n").encode(), timeout=10)
        assert r.status_code == 204, r.text
    else:
        assert influx.write_lines(db, lines) == len(lines)
    return data


def series_config(case, db, model):
    fk, fv = case["filter"]
    return SeriesConfig(name=case["series"], db=db, measurement=case["measurement"],
                        field=case["field"], tags={fk: fv}, fan_out=case["fan_out"], model=model)


def stream_config(case, db, out_db, model, ck):
    return StreamConfig(series=[series_config(case, db, model)],
                        output=OutputConfig(db=out_db, zscore_measurement=case["zscore"]),
                        checkpoint_dir=str(ck), batch_samples=1000)


def _show(influx, db, q):
    return [row for s in influx.query_json(q, db) for row in s.get("values", [])]


def assert_scores_under_the_same_names(influx, out_db, case, data, model_file):
    """Every key's scores: one point per sample, under the source's names, equal to the
    detectors' batch twins."""
    fk, fv = case["filter"]
    zm, fan, series = case["zscore"], case["fan_out"], case["series"]
    assert [r[0] for r in _show(influx, out_db, "SHOW MEASUREMENTS")] == [zm]
    keys = {r[0] for r in _show(influx, out_db, f"SHOW TAG KEYS FROM {quote_ident(zm)}")}
    assert keys == {fk, fan, "series", "model"}
    assert influx.tag_values(out_db, zm, fan) == sorted(case["keys"])
    assert influx.tag_values(out_db, zm, fk) == [fv]
    assert influx.tag_values(out_db, zm, "series") == [series]
    grouped = influx.read_field(out_db, zm, "alert", group_by=fan).by_group()
    assert sorted(grouped) == sorted(case["keys"])
    z = next(d for d in model_file.enabled if d.name == "zscore")
    for key, (t, v) in data.items():
        tags = {fk: fv, fan: key, "series": series, "model": model_file.version}
        assert influx.count(out_db, zm, "alert", tags) == N, key
        np.testing.assert_array_equal(grouped[key].times, t)
        want = z.new_state().update_many(t, v)
        got = influx.read_field(out_db, zm, "z", tags=tags)
        w = want.fields()["z"]
        np.testing.assert_array_equal(got.times, want.times[np.isfinite(w)])
        assert_stored(got.values, w[np.isfinite(w)])


# ---------------------------------------------------------------------------
# the stream
# ---------------------------------------------------------------------------
CASES = {
    "quotes": dict(measurement='"quoted" temp', field="it's", filter=('x\'y"z', '"v"'),
                   fan_out='a"b', keys=['"k1"', "k'2", 'C:\\temp\\"x"'], series='q"s\'',
                   zscore='z "score"'),
    "spaces commas eq": dict(measurement="my temp,1", field="v a,l=ue", filter=("room 2", "a,b=c"),
                             fan_out=" sen sor", keys=["s 1", " leading space", "trailing ",
                                                       "=x", ",y"],
                             series="my series, =x", zscore="z score,1=2"),
    "backslashes": dict(measurement="C:\\temp", field="f\\g", filter=("path", "\\\\server\\share"),
                        fan_out="dir\\x", keys=["C:\\temp", "x\\\\y", "a\\,b", "C:\\, x", "a\\=b"],
                        series="\\\\srv\\s", zscore="C:\\z", raw=True),
    "hash": dict(measurement="m#1", field="#f", filter=("#t", "#v"), fan_out="#k",
                 keys=["#hash", "mid#hash", "# x"], series="#series", zscore="z#"),
    "unicode": dict(measurement="température °C", field="日本語", filter=("lieu", "café"),
                    fan_out="🌡 sensor", keys=["日本", "🔥", "tab\there", "nul\x00inside"],
                    series="温度 🌡", zscore="z-score °"),
    # tags named like the output's fields (z-score's "alert" and "zscore"): read as ::tag
    "field names": dict(measurement="zscore", field="alert", filter=("zscore", "alert"),
                        fan_out="alert", keys=["true", "1", "z"], series="model",
                        zscore="zscore"),
    "keywords": dict(measurement="select", field="from", filter=("where", "time"),
                     fan_out="group", keys=["select", "time", "from", "DROP DATABASE x;"],
                     series="drop", zscore="time"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_stream_scores_come_back_under_the_same_names(influx, fresh_db, sensor_model_path,
                                                      sensor_model_file, tmp_path, name):
    case = CASES[name]
    data = write_source(influx, fresh_db, case, raw=case.get("raw", False))
    out_db = fresh_db + "_o"
    cfg = stream_config(case, fresh_db, out_db, sensor_model_path, tmp_path / "ck")
    try:
        totals = Stream(cfg, influx).backfill(T0, END)
        assert totals["samples"] == N * len(case["keys"])
        assert totals["quarantined"] == 0
        assert_scores_under_the_same_names(influx, out_db, case, data, sensor_model_file)
    finally:
        influx.drop_database(out_db)


def test_segment_and_sample_outputs_under_awkward_measurements(influx, fresh_db, ekg, model_path,
                                                              model_file, tmp_path):
    """The EKG model (a segment detector too): both output measurements renamed in [output]."""
    t, v = ekg[0][:20 * RATE], ekg[1][:20 * RATE]
    meas, field, tags = 'my ekg, "lead" II', "mV #1", {"patient": "O'Brien, J. = 日本"}
    series, out_db = "ekg \\\\ward\\3", fresh_db + "_o"
    seg_m, per_m = 'E "rr", or=1 C:\\e', "select"
    influx.write_series(fresh_db, meas, t, {field: v}, tags)
    s = SeriesConfig(name=series, db=fresh_db, measurement=meas, field=field, tags=tags,
                     model=model_path)
    cfg = StreamConfig(series=[s], output=OutputConfig(db=out_db, measurement=seg_m,
                                                       zscore_measurement=per_m),
                       checkpoint_dir=str(tmp_path / "ck"), batch_samples=5000)
    try:
        Stream(cfg, influx).backfill(T0, END)
        written = {r[0] for r in _show(influx, out_db, "SHOW MEASUREMENTS")}
        assert written == {seg_m, per_m}
        out_tags = {**tags, "series": series, "model": model_file.version}
        assert any(not d.per_sample for d in model_file.enabled)
        for d in model_file.enabled:
            want = d.new_state().update_many(t, v)
            got = influx.read_field(out_db, per_m if d.per_sample else seg_m, d.alarm_field,
                                    tags=out_tags)
            assert len(want.times) > 0
            np.testing.assert_array_equal(got.times, want.times, err_msg=d.name)
            np.testing.assert_array_equal(got.values, want.alarm.astype(float), err_msg=d.name)
    finally:
        influx.drop_database(out_db)


def _toml(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") \
        .replace("\x00", "\\u0000").replace("\n", "\\n") + '"'


def write_toml(path, case, db, out_db, model, ck, extra=""):
    fk, fv = case["filter"]
    path.write_text(f"""
[output]
db = {_toml(out_db)}
zscore_measurement = {_toml(case["zscore"])}
measurement = {_toml(case.get("measurement_out", "ERROR"))}
[stream]
checkpoint_dir = {_toml(str(ck))}
batch_samples = 1000
[[series]]
name = {_toml(case["series"])}
db = {_toml(db)}
measurement = {_toml(case["measurement"])}
field = {_toml(case["field"])}
tags = {{ {_toml(fk)} = {_toml(fv)} }}
fan_out = {_toml(case["fan_out"])}
model = {_toml(model)}
""" + extra, encoding="utf-8")
    return str(path)


def test_toml_config_carries_the_names_unchanged(influx, fresh_db, sensor_model_path,
                                                 sensor_model_file, tmp_path):
    """The same names given in a TOML file (escaped as TOML wants) reach InfluxDB unchanged."""
    case = CASES["backslashes"] | {"series": 'C:\\s "q", #1 select'}
    data = write_source(influx, fresh_db, case)
    out_db = fresh_db + "_o"
    cfg = load_config(write_toml(tmp_path / "s.toml", case, fresh_db, out_db, sensor_model_path,
                                 tmp_path / "ck"))
    assert cfg.series[0].tags == dict([case["filter"]]) and cfg.series[0].name == case["series"]
    try:
        Stream(cfg, influx).backfill(T0, END)
        assert_scores_under_the_same_names(influx, out_db, case, data, sensor_model_file)
    finally:
        influx.drop_database(out_db)


OK_CASE = dict(measurement="temp", field="value", filter=("site", "a"), fan_out="sensor",
               keys=["s1"], series="temp", zscore="zscore")


@pytest.mark.parametrize("change, words", [
    ({"zscore": "#z"}, "measurement '#z' cannot be written"),
    ({"zscore": "z\\"}, "ends with a backslash"),
    ({"zscore": "\tz"}, "strips"),
    ({"zscore": "a\\ b"}, "backslash directly before ' '"),
    ({"measurement_out": "#e"}, "measurement '#e' cannot be written"),
    ({"measurement_out": "e\\,f"}, "backslash directly before ','"),
    ({"series": "a\\"}, "tag value 'a\\\\' cannot be written"),
    ({"series": "x\\ y"}, "backslash directly before ' '"),
    ({"series": "line\nbreak"}, "line break"),
    ({"filter": ("site", "v\\")}, "tag value 'v\\\\' cannot be written"),
    ({"filter": ("time", "x")}, "tag key 'time'"),
    ({"fan_out": "time"}, "tag key 'time'"),
    ({"fan_out": "series"}, "fan_out 'series'"),
    ({"fan_out": "model"}, "fan_out 'model'"),
    ({"filter": ("series", "x")}, "tag 'series'"),
    ({"filter": ("model", "m1")}, "tag 'model'"),
])
def test_output_names_that_cannot_round_trip_are_refused_before_anything_is_written(
        influx, fresh_db, sensor_model_path, tmp_path, change, words):
    case = OK_CASE | change
    out_db = fresh_db + "_o"
    path = write_toml(tmp_path / "s.toml", case, fresh_db, out_db, sensor_model_path,
                      tmp_path / "ck")
    with pytest.raises(ConfigError, match=None) as e:
        load_config(path)
    assert words in str(e.value), str(e.value)
    assert "choose another" in str(e.value) or "rename" in str(e.value)
    # the same config built in Python is refused by the stream before it writes anything
    sc = series_config(case, fresh_db, sensor_model_path)
    cfg = StreamConfig(series=[sc], output=OutputConfig(
        db=out_db, zscore_measurement=case["zscore"],
        measurement=case.get("measurement_out", "ERROR")), checkpoint_dir=str(tmp_path / "ck"))
    with pytest.raises(ConfigError) as e:
        Stream(cfg, influx)
    assert words in str(e.value)
    assert out_db not in influx.databases()


def test_a_key_that_cannot_be_written_back_is_quarantined_with_the_reason(
        influx, fresh_db, sensor_model_path, tmp_path, caplog):
    """Another client wrote a sensor ``x\\ y`` (stored, but written back in a batch it can break
    the lines after it: tests/test_names.py): that key is skipped with the reason, the others
    are scored."""
    case = OK_CASE | {"keys": ["x\\ y", "ok"]}
    write_source(influx, fresh_db, case, raw=True)
    assert influx.tag_values(fresh_db, "temp", "sensor") == ["ok", "x\\ y"]
    out_db = fresh_db + "_o"
    try:
        with caplog.at_level("ERROR", logger="pipeline.stream"):
            totals = Stream(stream_config(case, fresh_db, out_db, sensor_model_path,
                                          tmp_path / "ck"), influx).backfill(T0, END)
        assert (totals["samples"], totals["quarantined"]) == (N, 1)
        assert "series temp[x\\ y]: tag value 'x\\\\ y' cannot be written" in caplog.text
        assert "backslash directly before ' '" in caplog.text
        assert "this key is skipped from now on (the others go on)" in caplog.text
        assert influx.tag_values(out_db, "zscore", "sensor") == ["ok"]
        assert influx.count(out_db, "zscore", "alert") == N
    finally:
        influx.drop_database(out_db)


@pytest.mark.parametrize("flags, words", [
    (["--fan-out", "series"], "fan_out 'series' is also a tag the stream writes"),
    (["--zscore-measurement", "#z"], "[output] zscore_measurement: measurement '#z' cannot"),
    (["--out-measurement", "e\\"], "[output] measurement: measurement 'e\\\\' cannot"),
    (["--tag", "model=m1"], "the filter's tag 'model' is also a tag the stream writes"),
])
def test_command_line_refuses_the_names_before_anything_is_written(
        influx, influx_env, fresh_db, sensor_model_path, tmp_path, caplog, flags, words):
    import signal

    from pipeline.stream import main

    out_db = fresh_db + "_o"
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with caplog.at_level("ERROR"):
            rc = main(["--db", fresh_db, "--measurement", "temp", "--model", sensor_model_path,
                       "--out-db", out_db, "--checkpoint-dir", str(tmp_path / "ck"),
                       "--start", str(T0), "--end", str(END), *flags])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert rc == 2 and words in caplog.text, caplog.text
    assert "Traceback" not in caplog.text
    assert out_db not in influx.databases() and not (tmp_path / "ck").exists()


# ---------------------------------------------------------------------------
# hypothesis: any accepted fan-out key and series name comes back
# ---------------------------------------------------------------------------
_CHARS = list("ab ,=\"'#\\\té$<&") + ["select", "日", "🔥", "\x00"]
_names = st.lists(st.sampled_from(_CHARS), min_size=1, max_size=6).map("".join)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_names.filter(lambda s: _name_problem(s, "tag value") is None),
       series=_names.filter(lambda s: _name_problem(s, "tag value") is None))
def test_any_accepted_key_and_series_name_round_trip_through_the_stream(
        influx, sensor_model_path, sensor_model_file, tmp_path_factory, key, series):
    db, out_db = "names_stream_src", "names_stream_out"
    case = OK_CASE | {"keys": [key], "series": series}
    influx.create_database(db)
    try:
        data = write_source(influx, db, case)
        cfg = stream_config(case, db, out_db, sensor_model_path, tmp_path_factory.mktemp("ck"))
        Stream(cfg, influx).backfill(T0, END)
        assert_scores_under_the_same_names(influx, out_db, case, data, sensor_model_file)
    finally:
        influx.drop_database(db)
        influx.drop_database(out_db)


# ---------------------------------------------------------------------------
# alerts: webhook, Slack, log and the Chronograf history carry the names unchanged
# ---------------------------------------------------------------------------
def slack_escaped(text: str) -> str:
    """What Slack's text format needs (its docs: escape &, < and >; nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alerts_table(history_db="chronograf", limit=5):
    return f"""
[alerts]
max_per_minute = {limit}
detectors = ["zscore"]
tries = 2
retry_delay = 0.05
timeout = 2.0
[[alerts.destination]]
type = "webhook"
url_env = "HOOK_URL"
[[alerts.destination]]
type = "slack"
url_env = "SLACK_URL"
[[alerts.destination]]
type = "log"
[[alerts.destination]]
type = "chronograf"
db = {_toml(history_db)}
"""


def history_rows(influx, db, series, tags):
    """The history of ``series``: the message and the given tags of each point, by time."""
    cols = ", ".join(f"{quote_ident(k)}::tag" for k in tags)
    q = (f"SELECT {quote_ident('message')}::field, {cols} FROM {quote_ident('alerts')} "
         f"WHERE {quote_ident('series')}::tag = $s ORDER BY time")
    return [dict(zip(s["columns"], v, strict=True))
            for s in influx.query_json(q, db, {"s": series}) for v in s["values"]]


@pytest.fixture
def alert_env(monkeypatch):
    """The variables the [alerts] table names, for tests that only parse it (nothing is sent:
    the port is closed)."""
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/alerts")
    monkeypatch.setenv("SLACK_URL", "http://127.0.0.1:9/services/T0/B0/x")


@pytest.fixture
def receivers(monkeypatch):
    hook, slack = Receiver(), Receiver()
    monkeypatch.setenv("HOOK_URL", f"{hook.url}/alerts")
    monkeypatch.setenv("SLACK_URL", f"{slack.url}/services/T0/B0/x")
    yield hook, slack
    hook.close()
    slack.close()


ALERT_CASES = {
    "awkward": dict(measurement='select "temp", C:\\x', field="#f <v>",
                    filter=("it's & <site>", 'a,b = "c"'), fan_out="sen sor=1",
                    keys=['C:\\temp <1> & "x"', "🔥 s,2"], zscore="z <score>",
                    series='Kühl <raum> & "B", =\\x #'),
    # names of the history's own schema: a "value" tag beside the "value" field, "host" given
    "schema names": dict(measurement="alerts", field="value", filter=("value", "message"),
                         fan_out="host", keys=["alertID", "level"], zscore="alerts",
                         series="alerts"),
}


@pytest.mark.parametrize("name", list(ALERT_CASES))
def test_alerts_carry_the_names_unchanged(influx, fresh_db, sensor_model_path, sensor_model_file,
                                          tmp_path, receivers, caplog, name):
    hook, slack = receivers
    case = dict(ALERT_CASES[name])
    case["series"] += f" {fresh_db}"  # unique: the chronograf database is shared with other tests
    key = case["keys"][0]
    data = write_source(influx, fresh_db, case, spike_keys=[key])
    out_db = fresh_db + "_o"
    cfg = load_config(write_toml(tmp_path / "s.toml", case, fresh_db, out_db, sensor_model_path,
                                 tmp_path / "ck", alerts_table()))
    stream = Stream(cfg, influx)
    try:
        with caplog.at_level("INFO", logger="pipeline.alerts"):
            totals = stream.backfill(T0, END)
            assert stream.alerts.drain(10)
    finally:
        stream.close()
        influx.drop_database(out_db)
    assert totals["notifications"] == 2
    fk, fv = case["filter"]
    series, fan, version = case["series"], case["fan_out"], sensor_model_file.version
    t = data[key][0]
    where = f"z-score on {series} ({', '.join(f'{k}={v}' for k, v in sorted({fk: fv, fan: key}.items()))})"
    if name == "awkward":
        assert where == ('z-score on Kühl <raum> & "B", =\\x # ' + fresh_db
                         + ' (it\'s & <site>=a,b = "c", sen sor=1=C:\\temp <1> & "x")')

    # (a) the webhook: every name as it is
    bodies = hook.bodies()
    assert [(b["kind"], b["time"]) for b in bodies] == [
        ("alert", "2026-01-01T00:01:20Z"), ("recovery", "2026-01-01T00:01:28Z")]
    for b, tk in zip(bodies, (t[SPIKE], t[SPIKE + 4]), strict=True):
        assert (b["series"], b["key"], b["detector"]) == (series, key, "zscore")
        assert b["tags"] == {fk: fv, fan: key, "series": series, "model": version}
        assert b["measurement"] == case["zscore"]
        # the id joins the names with ':', each with '\\' and ':' escaped (never two alike)
        def esc(n):
            return n.replace("\\", "\\\\").replace(":", "\\:")
        assert b["alertID"] == f"{esc(series)}:zscore:{esc(key)}"
        assert b["dedup_key"] == f"{esc(series)}:zscore:{esc(key)}:{b['kind']}:{tk}"
        assert b["message"].endswith(f", model {version}")
    assert bodies[0]["message"].startswith(f"[CRITICAL] {where}: z = ")
    assert bodies[1]["message"].startswith(f"[OK] {where} recovered after 8s: z = ")
    messages = [b["message"] for b in bodies]

    # (b) the history in InfluxDB: the same tag values, found by them
    cols = [fk, fan, "series", "model", "host", "alertName", "alertID"]
    rows = history_rows(influx, "chronograf", series, cols)
    assert [r["message"] for r in rows] == messages
    for r in rows:
        assert [r[c] for c in cols] == [fv, key, series, version, key, f"z-score on {series}",
                                        f"{esc(series)}:zscore:{esc(key)}"]
    got = influx.read_field("chronograf", "alerts", "value",
                            tags={fk: fv, fan: key, "series": series})
    assert got.times.tolist() == [t[SPIKE], t[SPIKE + 4]]
    assert influx.tag_values("chronograf", "alerts", fan, {"series": series}) == [key]

    # (c) Slack: the same text with &, < and > escaped, nothing else
    texts = [b["text"] for b in slack.bodies()]
    assert texts == [slack_escaped(m) for m in messages]
    if name == "awkward":
        assert "Kühl &lt;raum&gt; &amp; \"B\", =\\x" in texts[0]
        assert 'sen sor=1=C:\\temp &lt;1&gt; &amp; "x"' in texts[0]
    series_field = slack.bodies()[0]["attachments"][0]["fields"][0]
    assert series_field == {"title": "Series", "value": slack_escaped(f"{series} {key}"),
                            "short": True}
    # and the log
    for m in messages:
        assert m in caplog.text


def test_flood_summary_lists_the_suppressed_keys_unchanged(influx, fresh_db, sensor_model_path,
                                                          tmp_path, receivers):
    """Three keys alarm in the same minute with a limit of one: the summary's payload lists the
    two suppressed keys exactly (its text joins them with ", ", so a key holding ", " reads
    ambiguously there; the list does not)."""
    hook, slack = receivers
    keys = ["a, b", 'C:\\x "<y>"', "🔥 x2"]
    case = OK_CASE | {"keys": keys, "series": f"fleet, & <all> {fresh_db}"}
    write_source(influx, fresh_db, case, spike_keys=keys)
    out_db = fresh_db + "_o"
    cfg = load_config(write_toml(tmp_path / "s.toml", case, fresh_db, out_db, sensor_model_path,
                                 tmp_path / "ck", alerts_table(limit=1)))
    stream = Stream(cfg, influx)
    try:
        stream.backfill(T0, END)
        assert stream.alerts.drain(10)
    finally:
        stream.close()
        influx.drop_database(out_db)
    bodies = hook.bodies()
    first, *suppressed = sorted(keys)  # the engine's order within a time: by key
    assert [(b["kind"], b["key"]) for b in bodies] == [
        ("alert", first), ("recovery", first), ("summary", "")]
    summary = bodies[2]
    assert summary["series"] == case["series"] and summary["tags"] == {"series": case["series"]}
    assert suppressed == ["a, b", "🔥 x2"]
    assert summary["suppressed_alerts"] == summary["suppressed_recoveries"] == suppressed
    assert summary["message"].startswith(f"[SUPPRESSED] z-score on {case['series']}, minute ")
    assert summary["message"].endswith(": 2 more alerts suppressed (a, b, 🔥 x2); "
                                       "2 suppressed alerts recovered (a, b, 🔥 x2)")
    assert [b["text"] for b in slack.bodies()] == [slack_escaped(b["message"]) for b in bodies]
    history = history_rows(influx, "chronograf", case["series"], ["sensor"])
    assert sorted(r["sensor"] for r in history) == sorted(keys * 2)  # suppressed ones too


@pytest.mark.parametrize("tag", ["level", "alertName", "alertID", "triggerType", "detector"])
def test_a_tag_the_history_sets_itself_is_refused_with_the_chronograf_destination(
        sensor_model_path, tmp_path, alert_env, tag):
    """The history's own tags would replace the source's value: refused up front; without the
    history nothing replaces it, and the webhook carries it."""
    for change in ({"fan_out": tag}, {"filter": (tag, "x")}):
        case = OK_CASE | change
        path = write_toml(tmp_path / "s.toml", case, "src", "out", sensor_model_path,
                          tmp_path / "ck", alerts_table())
        with pytest.raises(ConfigError, match=f"the tag '{tag}' is also a tag of the alert "
                                              r"history \(Chronograf's schema: alertName, level, "
                                              r"alertID, triggerType, detector\), where its value "
                                              "would be replaced; rename that tag"):
            load_config(path)
        without = alerts_table().split('[[alerts.destination]]\ntype = "chronograf"')[0]
        path = write_toml(tmp_path / "s.toml", case, "src", "out", sensor_model_path,
                          tmp_path / "ck", without)
        assert load_config(path).series[0].name == "temp"


@pytest.mark.parametrize("option, value, words", [
    ("measurement", "#alerts", "measurement '#alerts' cannot be written"),
    ("measurement", "alerts\\", "ends with a backslash"),
    ("db", "chrono/graf", "database 'chrono/graf' cannot be written"),
])
def test_history_names_that_cannot_round_trip_are_refused(option, value, words):
    from pipeline.alerts import parse_alerts_config

    with pytest.raises(ConfigError, match=None) as e:
        parse_alerts_config({"destination": [{"type": "chronograf", option: value}]})
    assert str(e.value).startswith(f"[alerts] [[alerts.destination]] #1 (chronograf) {option}: ")
    assert words in str(e.value)
