"""Alert history in a real influxd, in Chronograf's schema, holding the same episodes."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.alerts import AlertManager, Notification, history_line, parse_alerts_config
from pipeline.influx import Influx, InfluxSettings, encode_lines, quote_ident

from loopback import Receiver, free_port

S = 1_000_000_000
T0 = 1_767_225_600 * S

# what Chronograf's Alert History page runs (ui/src/alerts/apis), on database "chronograf"
CHRONOGRAF_QUERY = ("SELECT host, value, level, alertName FROM alerts "
                    "WHERE time >= $lo AND time <= $hi ORDER BY time desc")


def zscore_out(times_s, alarm, score):
    return SimpleNamespace(name="zscore", label="z-score", score_field="z",
                           threshold_field="z_threshold", measurement="zscore",
                           times=np.array([T0 + t * S for t in times_s], dtype=np.int64),
                           score=np.asarray(score, dtype=float), threshold=3.0,
                           alarm=np.asarray(alarm, dtype=bool))


def rows(influx, db, q, params=None):
    series = influx.query_json(q, db, params)
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


def test_history_holds_every_episode_including_suppressed(influx, fresh_db, tmp_path):
    slack = Receiver()
    env = {"SLACK_WEBHOOK_URL": f"{slack.url}/services/x"}
    cfg = parse_alerts_config({"max_per_minute": 2, "retry_delay": 0.01, "destination": [
        {"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
        {"type": "chronograf", "db": fresh_db}]}, environ=env)
    m = AlertManager(cfg, state_path=tmp_path / "alerts.json",
                     influx=influx, environ=env)
    try:
        for k in range(4):  # 4 sensors alarm at 10 s, recover at 70 s; data to 130 s
            key = f"s{k + 1:02d}"
            m.feed("temperature", key, {"series": "temperature", "sensor": key, "model": "m1"},
                   "m1", zscore_out([0, 10, 70, 130], [0, 1, 0, 0], [0.1, 4.0 + k, 0.5, 0.2]))
        notes = m.commit()
        assert m.drain(20)
    finally:
        m.close()
        slack.close()
    episodes = [n for n in notes if n.kind != "summary"]
    assert len(episodes) == 8 and sum(n.suppressed for n in episodes) == 4

    got = rows(influx, fresh_db, CHRONOGRAF_QUERY, {"lo": T0, "hi": T0 + 200 * S})
    want = sorted(((n.time_ns, n.key, n.value, n.level, "z-score on temperature")
                   for n in episodes), reverse=True)
    assert sorted(((r["time"], r["host"], r["value"], r["level"], r["alertName"])
                   for r in got), reverse=True) == want

    full = rows(influx, fresh_db, f"SELECT * FROM {quote_ident('alerts')}")
    by_id = {(r["alertID"], r["level"], r["time"]): r for r in full}
    for n in episodes:
        r = by_id[(n.alert_id, n.level, n.time_ns)]
        assert r["message"] == n.text and r["triggerType"] == "threshold"
        assert r["duration"] == (70 - 10) * S * (n.kind == "recovery")
        assert r["sensor"] == n.key and r["series"] == "temperature" and r["model"] == "m1"
        assert r["threshold"] == 3.0 and r["detector"] == "zscore"
    # the field types Chronograf and Kapacitor use: duration integer, value float, message string
    keys = influx.query_json("SHOW FIELD KEYS FROM alerts", fresh_db)[0]["values"]
    assert dict(keys) == {"duration": "integer", "message": "string", "threshold": "float",
                          "value": "float"}

    people = [b["text"] for b in slack.bodies()]
    assert len(people) == 2 + 1 + 2 + 1  # 2 alerts, summary, 2 recoveries, summary
    assert people[2].startswith("[SUPPRESSED]") and "2 more alerts suppressed (s03, s04)" in \
        people[2]


def test_history_of_a_down_influxdb_is_kept_in_the_outbox(tmp_path):
    down = Influx(InfluxSettings(host="127.0.0.1", port=free_port(), timeout=1))
    cfg = parse_alerts_config({"tries": 2, "retry_delay": 0.01,
                               "destination": [{"type": "chronograf"}]}, environ={})
    m = AlertManager(cfg, state_path=tmp_path / "alerts.json", influx=down)
    m.feed("ekg", "", {"series": "ekg"}, "m1", zscore_out([0, 1], [1, 1], [5.0, 5.0]))
    m.commit()
    assert m.drain(10)
    (e,) = m.outbox.entries.values()
    assert e["failed"] == ["chronograf"]
    m.close()


def _write_requests(influx) -> int:
    """Write requests the server has answered so far (its own counter, SHOW STATS)."""
    (s,) = influx.query_json("SHOW STATS FOR 'httpd'")
    return dict(zip(s["columns"], s["values"][0], strict=True))["writeReq"]


def test_a_flood_of_history_goes_in_a_few_writes(influx, fresh_db, tmp_path):
    """200 episodes (400 history points, 395 suppressed for people) in one batch: the history
    sender writes what is queued in one request, not one per point."""
    cfg = parse_alerts_config({"max_per_minute": 5, "destination": [
        {"type": "chronograf", "db": fresh_db}]}, environ={})
    m = AlertManager(cfg, state_path=tmp_path / "alerts.json", influx=influx, start=False)
    try:
        for k in range(200):
            key = f"s{k:03d}"
            m.feed("temperature", key, {"series": "temperature", "sensor": key}, "m1",
                   zscore_out([0, 10, 20, 130], [0, 1, 0, 0], [0.1, 5.0, 0.5, 0.2]))
        notes = m.commit()
        before = _write_requests(influx)
        m.start()  # the senders start with 400 history points queued
        assert m.drain(30)
        assert _write_requests(influx) - before <= 2  # the database creation may count
    finally:
        m.close()
    assert sum(n.kind != "summary" for n in notes) == 400
    assert influx.count(fresh_db, "alerts", "value") == 400
    assert json.loads((tmp_path / "alerts.json").read_text())["entries"] == []


def test_a_failed_batch_is_kept_whole_with_one_error(tmp_path, caplog):
    down = Influx(InfluxSettings(host="127.0.0.1", port=free_port(), timeout=1))
    cfg = parse_alerts_config({"tries": 2, "retry_delay": 0.01,
                               "destination": [{"type": "chronograf"}]}, environ={})
    m = AlertManager(cfg, state_path=tmp_path / "alerts.json", influx=down, start=False)
    for key in ("s1", "s2"):
        m.feed("t", key, {"series": "t", "sensor": key}, "m1",
               zscore_out([0, 1, 2], [1, 1, 0], [5.0, 5.0, 0.1]))
    m.commit()
    with caplog.at_level("ERROR", logger="pipeline.alerts"):
        m.start()
        assert m.drain(10)
    m.close()
    assert all(e["failed"] == ["chronograf"] for e in m.outbox.entries.values())
    assert len(m.outbox.entries) == 4
    (err,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert err.startswith(f"4 alerts (t:zscore:s1:alert:{T0} .. t:zscore:s2:recovery:"
                          f"{T0 + 2 * S}) not delivered to chronograf after 2 tries")


def _reference_line(n, measurement="alerts"):
    """The history point through the general encoder (the slow, obvious way)."""
    tags = dict(n.tags)
    tags.setdefault("host", n.key or n.series)
    tags.update(alertName=f"{n.label} on {n.series}", level=n.level, alertID=n.alert_id,
                triggerType="threshold", detector=n.detector)
    fields = {"message": np.array([n.text], dtype=object),
              "duration": np.array([int(n.duration_ns or 0)], dtype=np.int64),
              "value": np.array([np.nan if n.value is None else n.value]),
              "threshold": np.array([np.nan if n.threshold is None else n.threshold])}
    return encode_lines(measurement, np.array([n.time_ns], dtype=np.int64), fields, tags)[0]


@pytest.mark.parametrize("text,value,threshold,tags", [
    ("[OK] plain", 0.5, 3.0, {"series": "t", "sensor": "s1"}),
    ('quote " and back\\slash \\" end\\', -1e-300, 7.25, {"series": "t", "sensor": "a b,c=d"}),
    ("nan value", float("nan"), None, {"series": "t"}),
    ("inf", float("inf"), 1e300, {"series": "t", "host": "given", "model": "m 1"}),
    ("small", 2.5e-05, 1e-09, {"series": "t"}),  # repr and the encoder write these differently
])
def test_history_line_equals_the_general_encoder(text, value, threshold, tags):
    for kind, dur in (("alert", 0), ("recovery", 123_456_789)):
        n = Notification(kind, "id", "t:zscore:s1", "t", "s1", "zscore", "z-score",
                         T0 + 7, text, tags=tags, value=value, threshold=threshold,
                         duration_ns=dur)
        assert history_line(n) == _reference_line(n)
        assert history_line(n, "my alerts") == _reference_line(n, "my alerts")
    with pytest.raises(ValueError, match="outside the range"):
        history_line(Notification("alert", "i", "a", "t", "", "d", "l", 2**63 - 1, "x"))
