"""The ``[alerts]`` table of the stream's TOML config.

::

    [alerts]
    max_per_minute = 5        # ALERTs per rule (detector x series) and data minute; then a summary
    tries = 5                 # delivery attempts per notification and destination
    retry_delay = 4.0         # seconds before the 2nd try, doubling (4, 8, 16, 32: ~1 min)
    timeout = 10.0            # seconds to wait for a receiver
    outbox_max = 10000        # undelivered notifications kept at most
    # outbox = "var/checkpoints/alerts.json"   # default: alerts.json in the checkpoint dir
    # detectors = ["zscore", "flatline"]        # default: every detector

    [[alerts.destination]]
    type = "slack"            # slack | webhook | log | chronograf
    url_env = "SLACK_WEBHOOK_URL"   # the NAME of the variable holding the URL
    # channel = "#alerts"; username = "anomaly-bot"; icon_emoji = ":warning:"

    [[alerts.destination]]
    type = "webhook"
    url_env = "ALERT_WEBHOOK_URL"
    headers_env = { Authorization = "ALERT_WEBHOOK_AUTH" }

    [[alerts.destination]]
    type = "log"

    [[alerts.destination]]
    type = "chronograf"       # history: chronograf.autogen.alerts, as Kapacitor writes it
    # db = "chronograf"; rp = "autogen"; measurement = "alerts"

    [[alerts.plexus]]         # forward a score to Plexus (key from PLEXUS_API_KEY)
    series = "temperature"
    detector = "zscore"
    metric = "temperature.zscore"
    source_id = "lab-sensors"
    # reduce = "max"          # max | last | all: one point per batch and key, or every point
    # persistent_buffer = true  # Plexus client keeps undeliverable points in ~/.plexus (SQLite)

Secrets never go in the file: URLs and header values come from the
environment variables it names.  Every key is checked; an error names the
table and key, and a missing variable is named (its value never printed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..line_protocol import InfluxNameError, check_name
from ..stream_config import ConfigError

__all__ = ["AlertsConfig", "DestinationConfig", "PlexusConfig", "parse_alerts_config",
           "AlertsConfigError"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class AlertsConfigError(ConfigError):
    """The ``[alerts]`` table is invalid; the message names the key."""


@dataclass
class DestinationConfig:
    type: str
    name: str
    options: dict = field(default_factory=dict)


@dataclass
class PlexusConfig:
    series: str
    detector: str
    metric: str
    source_id: str
    reduce: str = "max"
    persistent_buffer: bool = True


@dataclass
class AlertsConfig:
    max_per_minute: int = 5
    tries: int = 5
    retry_delay: float = 4.0
    timeout: float = 10.0
    outbox: str | None = None
    outbox_max: int = 10_000
    detectors: list | None = None
    destinations: list = field(default_factory=list)
    plexus: list = field(default_factory=list)


_TOP = {"max_per_minute", "tries", "retry_delay", "timeout", "outbox", "outbox_max",
        "detectors", "destination", "plexus"}
_DEST_KEYS = {
    "slack": {"url_env", "channel", "username", "icon_emoji", "timeout"},
    "webhook": {"url_env", "headers_env", "timeout"},
    "log": {"logger"},
    "chronograf": {"db", "rp", "measurement"},
}
_PLEXUS_KEYS = {"series", "detector", "metric", "source_id", "reduce", "persistent_buffer"}


def _num(where, key, value, cast, lo, hi):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and cast is int:
        ok = float(value).is_integer()
    if not ok or not lo <= value <= hi:
        kind = "an integer" if cast is int else "a number"
        raise AlertsConfigError(f"{where} {key} must be {kind} in [{lo}, {hi}], got {value!r}")
    return cast(value)


def _str(where, key, value, pattern=None, what="a non-empty string"):
    if not isinstance(value, str) or not value or "\n" in value:
        raise AlertsConfigError(f"{where} {key} must be {what}, got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise AlertsConfigError(f"{where} {key} must be {what}, got {value!r}")
    return value


def _env_name(where, key, value, environ) -> str:
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        if isinstance(value, str) and "://" in value:
            # never echo it: it is probably the secret itself
            raise AlertsConfigError(
                f"{where} {key} must be the NAME of an environment variable, not a URL: put the "
                "URL in the environment (e.g. export SLACK_WEBHOOK_URL=...) and write "
                f'{key} = "SLACK_WEBHOOK_URL"; remove the URL from the file')
        raise AlertsConfigError(f"{where} {key} must be an environment variable name "
                                f"(letters, digits, _), got {value!r}")
    if not environ.get(value, "").strip():
        raise AlertsConfigError(f"{where} {key}: environment variable {value} is not set; "
                                "export it before starting")
    return value


def _check_keys(where, raw, allowed):
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise AlertsConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                                f"{', '.join(sorted(allowed))}")


def parse_alerts_config(raw, where: str = "[alerts]",
                        environ: Mapping[str, str] | None = None) -> AlertsConfig:
    """Validate the raw ``[alerts]`` TOML table and return an :class:`AlertsConfig`.

    Environment variables named by the config must be set (checked here, at
    start); their values are not read into the config object.

    Examples
    --------
    >>> cfg = parse_alerts_config({"max_per_minute": 3, "destination": [{"type": "log"}]},
    ...                           environ={})
    >>> cfg.max_per_minute, [(d.type, d.name) for d in cfg.destinations]
    (3, [('log', 'log')])
    >>> parse_alerts_config({"destination": [{"type": "slack", "url_env": "NOPE"}]}, environ={})
    Traceback (most recent call last):
    ...
    pipeline.alerts.config.AlertsConfigError: [alerts] [[alerts.destination]] #1 (slack) url_env: environment variable NOPE is not set; export it before starting
    """
    env = os.environ if environ is None else environ
    if not isinstance(raw, Mapping):
        raise AlertsConfigError(f"{where} must be a table")
    _check_keys(where, raw, _TOP)
    cfg = AlertsConfig()
    if "max_per_minute" in raw:
        cfg.max_per_minute = _num(where, "max_per_minute", raw["max_per_minute"], int, 1, 10_000)
    if "tries" in raw:
        cfg.tries = _num(where, "tries", raw["tries"], int, 1, 20)
    if "retry_delay" in raw:
        cfg.retry_delay = _num(where, "retry_delay", raw["retry_delay"], float, 0.001, 600)
    if "timeout" in raw:
        cfg.timeout = _num(where, "timeout", raw["timeout"], float, 0.1, 300)
    if "outbox_max" in raw:
        cfg.outbox_max = _num(where, "outbox_max", raw["outbox_max"], int, 10, 10_000_000)
    if "outbox" in raw:
        cfg.outbox = _str(where, "outbox", raw["outbox"], what="a file path")
    if "detectors" in raw:
        d = raw["detectors"]
        if not isinstance(d, list) or not d or not all(isinstance(x, str) and x for x in d):
            raise AlertsConfigError(f"{where} detectors must be a non-empty list of detector "
                                    f"names, got {d!r}")
        cfg.detectors = list(d)
    dests = raw.get("destination", [])
    if not isinstance(dests, list):
        raise AlertsConfigError(f"{where} destination must be an array of tables "
                                "([[alerts.destination]])")
    for i, d in enumerate(dests):
        cfg.destinations.append(_parse_destination(d, f"{where} [[alerts.destination]] #{i + 1}",
                                                   env))
    names = [d.name for d in cfg.destinations]
    for n in names:
        if names.count(n) > 1:
            raise AlertsConfigError(f"{where}: two destinations are named {n!r}; give each a "
                                    'unique name = "..."')
    plex = raw.get("plexus", [])
    if not isinstance(plex, list):
        raise AlertsConfigError(f"{where} plexus must be an array of tables ([[alerts.plexus]])")
    for i, p in enumerate(plex):
        cfg.plexus.append(_parse_plexus(p, f"{where} [[alerts.plexus]] #{i + 1}", env))
    return cfg


def _parse_destination(d, where, env) -> DestinationConfig:
    if not isinstance(d, Mapping):
        raise AlertsConfigError(f"{where} must be a table")
    t = d.get("type")
    if t not in _DEST_KEYS:
        raise AlertsConfigError(f"{where} type must be one of {', '.join(sorted(_DEST_KEYS))}, "
                                f"got {t!r}")
    where = f"{where} ({t})"
    _check_keys(where, d, _DEST_KEYS[t] | {"type", "name"})
    name = _str(where, "name", d.get("name", t), _NAME, "letters, digits, '_', '.', '-'")
    opts: dict = {}
    if t in ("slack", "webhook"):
        if "url_env" not in d:
            raise AlertsConfigError(f'{where} needs url_env = "VARIABLE" (the environment '
                                    "variable holding the URL)")
        opts["url_env"] = _env_name(where, "url_env", d["url_env"], env)
        if "timeout" in d:
            opts["timeout"] = _num(where, "timeout", d["timeout"], float, 0.1, 300)
    if t == "slack":
        for k in ("channel", "username", "icon_emoji"):
            if k in d:
                opts[k] = _str(where, k, d[k])
    if t == "webhook" and "headers_env" in d:
        h = d["headers_env"]
        if not isinstance(h, Mapping):
            raise AlertsConfigError(f'{where} headers_env must be a table {{ Header = "VARIABLE" }}')
        opts["headers_env"] = {
            _str(where, "headers_env key", k, re.compile(r"^[A-Za-z0-9-]+$"),
                 "an HTTP header name"): _env_name(where, f"headers_env.{k}", v, env)
            for k, v in h.items()}
    if t == "log" and "logger" in d:
        opts["logger"] = _str(where, "logger", d["logger"])
    if t == "chronograf":
        for k in ("db", "rp", "measurement"):
            if k in d:
                opts[k] = _str(where, k, d[k])
        for k, kind in (("db", "database"), ("measurement", "measurement")):
            if k in opts:
                try:
                    check_name(opts[k], kind)
                except InfluxNameError as e:
                    raise AlertsConfigError(f"{where} {k}: {e}") from None
    return DestinationConfig(type=t, name=name, options=opts)


def _parse_plexus(p, where, env) -> PlexusConfig:
    if not isinstance(p, Mapping):
        raise AlertsConfigError(f"{where} must be a table")
    _check_keys(where, p, _PLEXUS_KEYS)
    for k in ("series", "detector", "metric", "source_id"):
        if k not in p:
            raise AlertsConfigError(f"{where} needs {k}")
    reduce = p.get("reduce", "max")
    if reduce not in ("max", "last", "all"):
        raise AlertsConfigError(f"{where} reduce must be max, last or all, got {reduce!r}")
    buffer = p.get("persistent_buffer", True)
    if not isinstance(buffer, bool):
        raise AlertsConfigError(f"{where} persistent_buffer must be true or false, got {buffer!r}")
    if not env.get("PLEXUS_API_KEY", "").strip():
        raise AlertsConfigError(f"{where}: environment variable PLEXUS_API_KEY is not set; "
                                "export it before starting")
    return PlexusConfig(series=_str(where, "series", p["series"]),
                        detector=_str(where, "detector", p["detector"]),
                        metric=_str(where, "metric", p["metric"]),
                        source_id=_str(where, "source_id", p["source_id"],
                                       re.compile(r"^[a-z0-9][a-z0-9_.-]*$"),
                                       "a Plexus slug (lowercase letters, digits, '_', '.', '-')"),
                        reduce=reduce, persistent_buffer=buffer)
