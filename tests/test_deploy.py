"""Deployment files: docker-compose parses and mounts what exists; TICKscripts match the stream.

Kapacitor cannot run here, so TICKscripts are checked structurally against the names the
stream really writes: each registered detector's own description (``pipeline.detectors.REGISTRY``:
``label``, ``score_field``, ``threshold_field``, ``alarm_field``, ``per_sample``) and the
stream's output defaults.  A new detector without a TICKscript, or a renamed field, fails here.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.detectors import REGISTRY
from pipeline.stream import ConfigError, OutputConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
TICKS = sorted((ROOT / "tickscripts").rglob("*.tick"))  # batch/: not auto-loaded by Kapacitor


def test_compose_parses_and_mounts_exist():
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"influxdb", "kapacitor", "stream"} <= set(doc["services"])
    named = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src in named:
                continue
            assert (ROOT / src).exists(), f"service {name} mounts missing {src}"
        if "build" in svc:
            assert (ROOT / svc["build"] / "Dockerfile").exists()


def test_compose_has_no_literal_secrets():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "hooks.slack.com" not in text
    for m in re.finditer(r"(PASSWORD|SLACK_URL|TOKEN)\w*:\s*(\S+)", text):
        assert m.group(2).startswith("${"), m.group(0)


@pytest.mark.parametrize("path", TICKS, ids=lambda p: p.name)
def test_tickscript_is_well_formed(path):
    text = path.read_text()
    code = _code(text)
    assert code.count("(") == code.count(")")
    assert code.count('"') % 2 == 0
    assert re.search(r"^dbrp \"\w+\"\.\"\w+\"$", text, re.M)
    assert "|alert()" in text and ".crit(lambda:" in text
    assert "hooks.slack.com" not in text and "https://" not in text
    # every var used is defined
    defined = set(re.findall(r"^var (\w+) =", text, re.M))
    for name in re.findall(r"\.\w+\((\w+)\)", code):
        if name not in ("TRUE", "FALSE"):
            assert name in defined, f"{path.name}: {name} used but not defined"


def _var(text, name):
    return re.search(rf"^var {name} = '([^']*)'", text, re.M).group(1)


def _written(cls) -> dict:
    """Where and under which names the stream writes one detector class (its own description:
    segment detectors go to the segment measurement, per-sample ones to the z-score one)."""
    out = OutputConfig()
    return dict(label=cls.label, score=cls.score_field, threshold=cls.threshold_field,
                alarm=cls.alarm_field,
                measurement=out.zscore_measurement if cls.per_sample else out.measurement)


DETECTORS = {name: _written(cls) for name, cls in REGISTRY.items()}
"""Every registered detector, as ``pipeline.detectors`` describes it: what each script must read."""


def test_the_detector_descriptions_are_what_the_stream_writes(model_file, sensor_model_file):
    """The table above is the detectors' own class attributes; the stream writes exactly those
    names (a DetectorOutput's fields) into those measurements."""
    assert set(DETECTORS) == {"shape", "step", "noise", "zscore", "drift", "flatline", "fleet"}
    assert {DETECTORS[n]["measurement"] for n in ("shape", "step", "noise")} == {"ERROR"}
    assert {DETECTORS[n]["measurement"] for n in ("zscore", "drift", "flatline", "fleet")} == \
        {"zscore"}
    for d in [*model_file.enabled, *sensor_model_file.enabled]:
        w = DETECTORS[d.name]
        fields = set(d.new_state().update_many((np.arange(3) * d.period_ns_).astype(np.int64),
                                               np.zeros(3)).fields())
        assert {w["score"], w["threshold"], w["alarm"]} <= fields
        assert w["label"] == d.label


# Property methods each node really has, from Kapacitor 1.7's pipeline/tick/*.go (the code that
# turns a pipeline back into TICKscript lists every property of every node).
PROPERTIES = {
    "from": {"database", "retentionPolicy", "measurement", "groupByMeasurement", "round",
             "groupBy", "truncate", "where"},
    "query": {"period", "every", "align", "cron", "offset", "alignGroup", "groupBy",
              "groupByMeasurement", "fill", "cluster"},
    "alert": {"topic", "id", "message", "details", "info", "warn", "crit", "infoReset",
              "warnReset", "critReset", "history", "levelTag", "levelField", "messageField",
              "durationField", "idTag", "idField", "all", "noRecoveries", "inhibit",
              "stateChangesOnly", "flapping", "slack", "log"},
    "slack": {"workspace", "channel", "username", "iconEmoji"},
    "eval": {"as", "tags", "quiet", "keep"},
    "default": {"field", "tag", "quiet"},
    "influxDBOut": {"cluster", "database", "retentionPolicy", "measurement", "writeConsistency",
                    "precision", "buffer", "flushInterval", "create", "tag"},
    "httpOut": set(),
}


def _code(text):
    code = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"'[^'\n]*'", "''", code)


def _detector(path):
    return re.search(r"^// detector: (\w+)$", path.read_text(), re.M).group(1)


def test_every_detector_has_a_tickscript():
    streamed = [p for p in TICKS if "|query(" not in p.read_text()]
    assert sorted(_detector(p) for p in streamed) == sorted(REGISTRY)  # one stream task each
    assert {_detector(p) for p in TICKS} == set(REGISTRY)
    assert any("|query(" in p.read_text() for p in TICKS)  # a batch variant too


@pytest.mark.parametrize("path", TICKS, ids=lambda p: p.name)
def test_tickscript_uses_only_documented_properties(path):
    node = None
    for m in re.finditer(r"([|.])(\w+)\(", _code(path.read_text())):
        kind, name = m.groups()
        if kind == "|":
            assert name in PROPERTIES, f"{path.name}: unknown node |{name}()"
            node = name
        elif node == "alert" and name in PROPERTIES["slack"]:
            continue  # the slack handler's own properties follow .slack()
        else:
            assert name in PROPERTIES[node], f"{path.name}: |{node}() has no .{name}()"


@pytest.mark.parametrize("path", TICKS, ids=lambda p: p.name)
def test_tickscript_reads_what_the_stream_writes(path):
    text = path.read_text()
    d = DETECTORS[_detector(path)]
    out = OutputConfig()
    assert re.search(rf'^dbrp "{out.db}"\."autogen"$', text, re.M)
    if "|query(" in text:
        q = re.search(r"\|query\('([^']*)'\)", text).group(1)
        assert f'FROM "{out.db}"."autogen"."{d["measurement"]}"' in q
        for f in (d["score"], d["threshold"], d["alarm"]):
            assert f'"{f}"' in q
    else:
        assert _var(text, "db") == out.db
        assert _var(text, "measurement") == d["measurement"]
        assert f'isPresent("{d["alarm"]}")' in text
    assert f'.crit(lambda: "{d["alarm"]}" == TRUE)' in text
    omitted = REGISTRY[_detector(path)].score_omitted
    if omitted is not None:  # the stream leaves this score out: the script puts it back
        assert f"|default()\n        .field('{d['score']}', {float(omitted)!r})" in text
    else:
        assert "|default()" not in text
    assert f'|eval(lambda: float("{d["score"]}"))' in text
    assert _var(text, "name") == d["label"]
    msg = _var(text, "message")
    assert f'{d["score"]} = {{{{ printf "%.4g" (index .Fields "{d["score"]}") }}}}' in msg
    assert (f'threshold {{{{ printf "%.4g" (index .Fields "{d["threshold"]}") }}}}' in msg
            or f'{{{{ with index .Fields "{d["threshold"]}" }}}}, threshold {{{{ printf "%.4g" . }}}}'
            in msg)


@pytest.mark.parametrize("path", TICKS, ids=lambda p: p.name)
def test_tickscript_alerts_like_chronograf_rules(path):
    text = path.read_text()
    code = _code(text)
    for prop in (".stateChangesOnly()", ".slack()", ".id(idVar)", ".idTag(idTag)",
                 ".levelTag(levelTag)", ".messageField(messageField)",
                 ".durationField(durationField)", ".message(message)", ".as('')", ".keep()",
                 "|influxDBOut()", ".create()", ".database(outputDB)",
                 ".retentionPolicy(outputRP)", ".measurement(outputMeasurement)"):
        assert prop in code, f"{path.name}: missing {prop}"
    assert ".tag('alertName', name)" in text and ".tag('triggerType', triggerType)" in text
    assert [_var(text, v) for v in ("idTag", "levelTag", "messageField", "durationField",
                                    "outputDB", "outputRP", "outputMeasurement", "triggerType")] \
        == ["alertID", "level", "message", "duration", "chronograf", "autogen", "alerts",
            "threshold"]
    assert re.search(r"\.slack\(\)\s*$", code.split("trigger\n")[0], re.M)  # no URL argument


def _render(template, level, tags, fields, time_ns, duration_ns):
    """The few Go-template constructs the TICKscript messages use, rendered by hand."""
    from pipeline.alerts.messages import format_duration, format_time

    t = template
    t = re.sub(r'\{\{ with index \.Fields "(\w+)" \}\}(.*?)\{\{ end \}\}',
               lambda m: (m.group(2).replace('{{ printf "%.4g" . }}', f"{fields[m.group(1)]:.4g}")
                          if m.group(1) in fields else ""), t)
    t = re.sub(r'\{\{ if index \.Tags "(\w+)" \}\}(.*?)\{\{ end \}\}',
               lambda m: m.group(2) if tags.get(m.group(1)) else "", t)
    t = re.sub(r'\{\{ if eq \.Level "OK" \}\}(.*?)\{\{ end \}\}',
               lambda m: m.group(1) if level == "OK" else "", t)
    t = re.sub(r'\{\{ printf "%\.4g" \(index \.Fields "(\w+)"\) \}\}',
               lambda m: f"{fields[m.group(1)]:.4g}", t)
    t = re.sub(r'\{\{ index \.(Tags|Fields) "(\w+)" \}\}',
               lambda m: str((tags if m.group(1) == "Tags" else fields)[m.group(2)]), t)
    t = t.replace('{{ .Time.Format "2006-01-02T15:04:05.999999999Z07:00" }}',
                  format_time(time_ns))
    t = t.replace("{{ .Duration }}", format_duration(duration_ns))
    t = t.replace("{{ .Level }}", level)
    assert "{{" not in t, t
    return t


@pytest.mark.parametrize("path", TICKS, ids=lambda p: p.name)
def test_tickscript_message_matches_the_python_alert_text(path):
    from pipeline.alerts.messages import alert_text, recovery_text

    text = path.read_text()
    d = DETECTORS[_detector(path)]
    key_tag = "source" if d["measurement"] == "ERROR" else "sensor"
    tags = {"series": "temperature", key_tag: "s03", "model": "0123abcd"}
    t, dur = 1_767_225_612_250_000_000, 88 * 10**9
    fields = {d["score"]: -4.21349, d["threshold"]: 3.0, "model": "0123abcd"}
    assert _render(_var(text, "message"), "CRITICAL", tags, fields, t, 0) == alert_text(
        d["label"], "temperature", tags, d["score"], -4.21349, 3.0, t, "0123abcd")
    want = recovery_text(d["label"], "temperature", tags, d["score"], -4.21349, 3.0, 9.5, t, dur,
                         "0123abcd")
    want = want.replace(", peak 9.5", "")  # Kapacitor has no episode peak
    if d["measurement"] != "ERROR":
        # a per-sample detector writes its threshold on alarm points only: the recovery point
        # has none, and Kapacitor's recovery message leaves it out
        fields = {k: v for k, v in fields.items() if k != d["threshold"]}
        want = want.replace(", threshold 3", "")
    assert _render(_var(text, "message"), "OK", tags, fields, t, dur) == want


def test_example_config_parses():
    cfg = load_config(str(ROOT / "examples" / "stream.toml"))
    assert [s.name for s in cfg.series] == ["ekg", "temperature"]
    assert cfg.series[0].sample_period_ns == pytest.approx(1e9 / 360)
    assert cfg.series[0].model and cfg.series[1].fan_out == "sensor"


def test_example_config_alerts_table_parses_when_uncommented(tmp_path, monkeypatch):
    text = (ROOT / "examples" / "stream.toml").read_text()
    head, commented = text.split("# [alerts]\n")
    table = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                      for line in ("# [alerts]\n" + commented).splitlines())
    path = tmp_path / "stream.toml"
    path.write_text(head + table)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.example/services/x")
    cfg = load_config(str(path))
    assert [d.type for d in cfg.alerts.destinations] == ["slack", "log", "chronograf"]
    assert cfg.alerts.max_per_minute == 5 and cfg.alerts.tries == 5
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL is not set"):
        load_config(str(path))
