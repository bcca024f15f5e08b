"""The [alerts] table: every key checked, errors name the key, secrets stay in the environment."""

import tomllib

import pytest

from pipeline.alerts import AlertManager, parse_alerts_config
from pipeline.alerts.config import AlertsConfigError
from pipeline.stream_config import ConfigError

ENV = {"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/x", "HOOK": "http://127.0.0.1:9/h",
       "AUTH": "Bearer x", "PLEXUS_API_KEY": "plx_test"}

GOOD = """
[alerts]
max_per_minute = 3
tries = 4
retry_delay = 2.5
timeout = 5
outbox_max = 500
detectors = ["zscore", "flatline"]

[[alerts.destination]]
type = "slack"
url_env = "SLACK_WEBHOOK_URL"
channel = "#alerts"

[[alerts.destination]]
type = "webhook"
name = "pager"
url_env = "HOOK"
headers_env = { Authorization = "AUTH" }

[[alerts.destination]]
type = "log"

[[alerts.destination]]
type = "chronograf"
db = "chronograf"

[[alerts.plexus]]
series = "temperature"
detector = "zscore"
metric = "temperature.zscore"
source_id = "lab-sensors"
"""


def test_a_full_table_parses():
    cfg = parse_alerts_config(tomllib.loads(GOOD)["alerts"], environ=ENV)
    assert (cfg.max_per_minute, cfg.tries, cfg.retry_delay, cfg.timeout, cfg.outbox_max) == \
        (3, 4, 2.5, 5.0, 500)
    assert cfg.detectors == ["zscore", "flatline"]
    assert [(d.type, d.name) for d in cfg.destinations] == [
        ("slack", "slack"), ("webhook", "pager"), ("log", "log"), ("chronograf", "chronograf")]
    assert cfg.destinations[1].options == {"url_env": "HOOK", "headers_env": {"Authorization":
                                                                              "AUTH"}}
    (p,) = cfg.plexus
    assert (p.series, p.detector, p.metric, p.source_id, p.reduce) == \
        ("temperature", "zscore", "temperature.zscore", "lab-sensors", "max")
    # the config object holds variable names, never their values
    assert "127.0.0.1" not in repr(cfg) and "Bearer" not in repr(cfg)


def test_defaults():
    cfg = parse_alerts_config({}, environ={})
    assert (cfg.max_per_minute, cfg.tries, cfg.retry_delay, cfg.destinations) == (5, 5, 4.0, [])


def slack(**kw):
    return {"destination": [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL", **kw}]}


BAD = [
    ({"max_per_minute": 0}, "max_per_minute must be an integer in [1, 10000], got 0"),
    ({"max_per_minute": 2.5}, "max_per_minute must be an integer"),
    ({"max_per_minute": True}, "max_per_minute must be an integer"),
    ({"tries": 50}, "tries must be an integer in [1, 20]"),
    ({"retry_delay": "4s"}, "retry_delay must be a number"),
    ({"timeout": 0}, "timeout must be a number in [0.1, 300]"),
    ({"outbox": ""}, "outbox must be a file path"),
    ({"detectors": "zscore"}, "detectors must be a non-empty list"),
    ({"max_per_mintue": 5}, "unknown key 'max_per_mintue'"),
    ({"destination": {"type": "log"}}, "destination must be an array of tables"),
    ({"destination": [{"type": "email"}]}, "type must be one of chronograf, log, slack, webhook"),
    ({"destination": [{"type": "slack"}]}, 'needs url_env = "VARIABLE"'),
    (slack(url="http://x"), "(slack): unknown key 'url'"),
    (slack(url_env="MISSING"), "url_env: environment variable MISSING is not set"),
    (slack(url_env="bad name"), "url_env must be an environment variable name"),
    (slack(channel=5), "channel must be a non-empty string"),
    ({"destination": [{"type": "log"}, {"type": "log"}]}, "two destinations are named 'log'"),
    ({"destination": [{"type": "log", "name": "a b"}]}, "name must be letters, digits"),
    ({"destination": [{"type": "webhook", "url_env": "HOOK", "headers_env": {"X-Key": "NOPE"}}]},
     "headers_env.X-Key: environment variable NOPE is not set"),
    ({"destination": [{"type": "webhook", "url_env": "HOOK", "headers_env": "AUTH"}]},
     "headers_env must be a table"),
    ({"destination": [{"type": "chronograf", "db": ""}]}, "(chronograf) db must be"),
    ({"plexus": [{"series": "t", "detector": "zscore", "metric": "m"}]}, "needs source_id"),
    ({"plexus": [{"series": "t", "detector": "zscore", "metric": "m", "source_id": "Lab"}]},
     "source_id must be a Plexus slug"),
    ({"plexus": [{"series": "t", "detector": "zscore", "metric": "m", "source_id": "lab",
                  "reduce": "mean"}]}, "reduce must be max, last or all"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m for _, m in BAD])
def test_bad_tables_are_clear_errors(raw, message):
    with pytest.raises(AlertsConfigError) as e:
        parse_alerts_config(raw, environ=ENV)
    assert message in str(e.value)
    assert str(e.value).startswith("[alerts]")
    assert isinstance(e.value, ConfigError)  # the stream's handler prints it and exits


def test_a_url_in_url_env_is_refused_without_echoing_it():
    raw = slack(url_env="https://hooks.slack.com/services/T0/B0/verysecret")
    with pytest.raises(AlertsConfigError) as e:
        parse_alerts_config(raw, environ=ENV)
    assert "NAME of an environment variable, not a URL" in str(e.value)
    assert "verysecret" not in str(e.value) and "hooks.slack" not in str(e.value)


def test_plexus_needs_its_key_in_the_environment():
    raw = {"plexus": [{"series": "t", "detector": "zscore", "metric": "m", "source_id": "lab"}]}
    with pytest.raises(AlertsConfigError, match="PLEXUS_API_KEY is not set"):
        parse_alerts_config(raw, environ={})


def test_a_variable_unset_after_parsing_is_named_at_start(tmp_path):
    cfg = parse_alerts_config(slack(), environ=ENV)
    with pytest.raises(AlertsConfigError, match="environment variable SLACK_WEBHOOK_URL is not "
                                                "set"):
        AlertManager(cfg, state_path=tmp_path / "a.json", environ={})
    bad = dict(ENV, SLACK_WEBHOOK_URL="ftp://somewhere/secretpath")
    with pytest.raises(AlertsConfigError) as e:
        AlertManager(cfg, state_path=tmp_path / "a.json", environ=bad)
    assert "SLACK_WEBHOOK_URL does not hold a usable URL" in str(e.value)
    assert "secretpath" not in str(e.value)


def test_the_example_parses():
    from pathlib import Path

    raw = tomllib.loads((Path(__file__).resolve().parent.parent / "examples" /
                         "alerts.toml").read_text())
    cfg = parse_alerts_config(raw["alerts"], environ={"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/x"})
    assert [d.type for d in cfg.destinations] == ["slack", "log", "chronograf"]
