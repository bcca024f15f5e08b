"""Alert history in a real influxd, in Chronograf's schema, holding the same episodes."""

from types import SimpleNamespace

import numpy as np

from pipeline.alerts import AlertManager, parse_alerts_config
from pipeline.influx import Influx, InfluxSettings, quote_ident

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
