"""Deployment files: docker-compose parses and mounts what exists; TICKscripts match the stream.

Kapacitor cannot run here, so TICKscripts are checked structurally against the names the
stream really writes (pipeline.stream defaults), which is what breaks when either side changes.
"""

import re
from pathlib import Path

import pytest
import yaml

from pipeline.stream import OutputConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
TICKS = sorted((ROOT / "tickscripts").glob("*.tick"))


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
    code = re.sub(r"//[^\n]*", "", text)
    code = re.sub(r"'[^'\n]*'", "''", code)
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


def test_tickscripts_read_what_the_stream_writes():
    out = OutputConfig()
    seg = (ROOT / "tickscripts" / "ekg_reconstruction_error.tick").read_text()
    assert _var(seg, "db") == out.db and _var(seg, "measurement") == out.measurement
    assert f'"{out.error_field}" > "threshold"' in seg
    z = (ROOT / "tickscripts" / "zscore_streak.tick").read_text()
    assert _var(z, "db") == out.db and _var(z, "measurement") == out.zscore_measurement
    assert '"alert" == TRUE' in z


def test_example_config_parses():
    cfg = load_config(str(ROOT / "examples" / "stream.toml"))
    assert [s.name for s in cfg.series] == ["ekg", "temperature"]
    assert cfg.series[0].sample_period_ns == pytest.approx(1e9 / 360)
    assert cfg.series[0].zscore is None and cfg.series[1].fan_out == "sensor"
