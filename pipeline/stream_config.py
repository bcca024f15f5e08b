"""Configuration of ``python -m pipeline.stream``: a TOML file, overridden by flags.

A config lists the series to score and where the scores go::

    [output]
    db = "error_ekg"              # the blog's Chronograf rule reads error_ekg.autogen.ERROR
    measurement = "ERROR"         # one point per complete segment
    error_field = "max_error"
    zscore_measurement = "zscore" # one point per sample: every per-sample detector's fields
    diagnostics = false           # true: also each detector's diagnostics (z-score: streak, zscore)
    precision = "float32"         # scores and thresholds to float32's digits; "float64": every digit

    [stream]
    checkpoint_dir = "var/checkpoints"
    poll_interval = 1.0           # seconds between polls in follow mode
    batch_samples = 200000        # points per read (all fan-out keys of the read together)
    log_every = 10.0              # seconds between progress log lines
    late_window = 600.0           # follow mode: count points that arrive this late (s; 0: off)
    shard = "1/4"                 # optional: score only shard 1 of 4 of the series keys

    [[series]]
    name = "ekg"                  # default: the measurement; must be unique
    db = "ekg"
    measurement = "ekg"
    field = "value"
    tags = { source = "synthetic" }   # source filter, copied onto the output
    fan_out = "sensor"            # optional: one state per value of this tag
    sample_rate = 360             # Hz (or sample_period in s); default: the model's
    model = "models/ekg.npz"      # required: the detectors and thresholds (python -m pipeline.train)

Every name the output carries (the output database and measurements, the series name,
the filter's tags, the fan-out tag key) is checked before anything is written
(:func:`check_output_names`): a name InfluxDB could not store and read back
unchanged is refused with the reason.

Credentials never go in this file: they come from ``INFLUXDB_USERNAME`` and
``INFLUXDB_PASSWORD``.  Every key is checked: an unknown key or a bad value
is an error naming the file, the table and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields

from .line_protocol import InfluxNameError, check_name
from .load import LoadError, parse_tags


class ConfigError(ValueError):
    """The stream configuration is invalid; the message says which key."""


@dataclass
class SeriesConfig:
    """One source series (or a family of them, with ``fan_out``)."""

    name: str
    db: str
    measurement: str
    field: str = "value"
    tags: dict = dataclasses.field(default_factory=dict)
    fan_out: str | None = None
    sample_period_ns: float | None = None
    model: str | None = None


@dataclass
class OutputConfig:
    """Where scores are written (defaults: the tutorial's names)."""

    db: str = "error_ekg"
    measurement: str = "ERROR"
    zscore_measurement: str = "zscore"
    error_field: str = "max_error"
    diagnostics: bool = False
    """Also write each detector's diagnostics (``Detector.extra_fields``: the z-score's
    ``streak`` and ``zscore``) on every point; off, a point holds score and alarm (and the
    threshold on alarm points), which keeps the stream's rate with every detector on."""
    precision: str = "float32"
    """``"float32"``: every float the stream writes (scores, thresholds) is written with
    float32's shortest text (about 7 significant digits; within one float32 step, a
    relative 1.2e-7), which influxd ingests faster
    (:func:`pipeline.line_protocol.float_texts`); alarms are decided on the full float64
    scores either way.  ``"float64"``: every digit."""


@dataclass
class StreamConfig:
    series: list
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    checkpoint_dir: str = "var/checkpoints"
    poll_interval: float = 1.0
    batch_samples: int = 200_000
    log_every: float = 10.0
    alerts: object = None
    """The parsed ``[alerts]`` table (:class:`pipeline.alerts.AlertsConfig`), or None."""
    late_window: float = 600.0
    """Follow mode counts points older than their key's mark that arrive within this many
    seconds of data time (ten buckets of a tenth of it); 0 turns the count off."""
    late_every: float | None = None
    """Seconds between two late counts (default: a tenth of ``late_window``)."""
    shard: object = None
    """:class:`pipeline.shard.Shard` of this process, or None (every key)."""


_SERIES_KEYS = {"name", "db", "measurement", "field", "tags", "fan_out", "sample_rate",
                "sample_period", "model"}
_GONE_KEYS = {"zscore", "long"}


def _period_ns(d: dict, where: str) -> float | None:
    rate, period = d.get("sample_rate"), d.get("sample_period")
    if rate is not None and period is not None:
        raise ConfigError(f"{where}: give sample_rate (Hz) or sample_period (s), not both")
    value = rate if rate is not None else period
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if isinstance(value, bool) or not v > 0:
        raise ConfigError(f"{where}: sample_rate/sample_period must be a positive number, "
                          f"got {value!r}")
    return 1e9 / v if rate is not None else v * 1e9


def _str_or_none(d: dict, key: str, where: str) -> str | None:
    v = d.get(key)
    if v is not None and (not isinstance(v, str) or not v):
        raise ConfigError(f"{where}: '{key}' must be a non-empty string, got {v!r}")
    return v


def parse_series(d: dict, where: str) -> SeriesConfig:
    """Check one ``[[series]]`` table and turn it into a :class:`SeriesConfig`."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a table, got {d!r}")
    gone = set(d) & _GONE_KEYS
    if gone:
        raise ConfigError(
            f"{where}: {sorted(gone)} tables are gone: every detector and its threshold now come "
            "from the model file, calibrated to an alarm budget. Train one for this series "
            "(sensors too): python -m pipeline.train --db ... --measurement ... --out FILE, and "
            "give model = \"FILE\"")
    unknown = set(d) - _SERIES_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_SERIES_KEYS)})")
    for key in ("db", "measurement"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise ConfigError(f"{where}: '{key}' is required (a non-empty string)")
    tags = d.get("tags", {})
    if not isinstance(tags, dict):
        raise ConfigError(f"{where}.tags must be a table of key = \"value\", got {tags!r}")
    return SeriesConfig(
        name=str(d.get("name") or d["measurement"]), db=d["db"], measurement=d["measurement"],
        field=_str_or_none(d, "field", where) or "value",
        tags={str(k): str(v) for k, v in tags.items()},
        fan_out=_str_or_none(d, "fan_out", where), sample_period_ns=_period_ns(d, where),
        model=_str_or_none(d, "model", where),
    )


def _check_table(raw: dict, name: str, allowed: set, where: str) -> dict:
    t = raw.get(name, {})
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    if set(t) - allowed:
        raise ConfigError(f"{where}: [{name}] unknown keys {sorted(set(t) - allowed)} "
                          f"(allowed: {sorted(allowed)})")
    return t


def parse_tag_args(items) -> dict[str, str]:
    """``["k=v", ...]`` from ``--tag`` flags into a dict (the loader's rules), as a ConfigError."""
    try:
        return parse_tags(items)
    except LoadError as e:
        raise ConfigError(str(e)) from None


def load_config(path: str | None, args=None) -> StreamConfig:
    """Read the TOML file (if any), then apply command-line overrides from ``args``."""
    raw: dict = {}
    where = path or "command line"
    if path:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        unknown = set(raw) - {"output", "stream", "series", "alerts"}
        if unknown:
            raise ConfigError(f"{path}: unknown tables {sorted(unknown)} "
                              "(allowed: [output], [stream], [[series]], [alerts])")
    out = _check_table(raw, "output", {f.name for f in fields(OutputConfig)}, where)
    stream = _check_table(raw, "stream", {"checkpoint_dir", "poll_interval", "batch_samples",
                                          "log_every", "late_window", "shard"}, where)
    series_raw = raw.get("series", [])
    if not isinstance(series_raw, list):
        raise ConfigError(f"{where}: series must be an array of tables ([[series]])")
    series = [parse_series(s, f"{where}: [[series]] #{i + 1}") for i, s in enumerate(series_raw)]
    if args is not None and getattr(args, "measurement", None):
        if not args.db:
            raise ConfigError("--measurement needs --db")
        d = {"db": args.db, "measurement": args.measurement, "field": args.field,
             "tags": parse_tag_args(args.tag), "fan_out": args.fan_out,
             "model": args.model, "sample_rate": args.sample_rate}
        series = [parse_series({k: v for k, v in d.items() if v is not None}, "command line")]
    if args is not None:
        for sc in series:
            if getattr(args, "model", None):
                sc.model = args.model
    if not series:
        raise ConfigError("no series to score: give --config FILE with [[series]] tables, "
                          "or --db/--measurement on the command line")
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        raise ConfigError(f"series names must be unique, got {names}")
    for s in series:
        if s.model is None:
            raise ConfigError(f"series {s.name!r} has no model file: the detectors and their "
                              "thresholds come from one; train it with python -m pipeline.train "
                              "and give model = \"FILE\" (or --model FILE)")
    shard = stream.pop("shard", None)
    cfg = StreamConfig(series=series, output=OutputConfig(**out), **stream)
    if args is not None and getattr(args, "shard", None) is not None:
        shard, where_shard = args.shard, "--shard"
    else:
        where_shard = f"{where}: [stream] shard"
    if shard is not None:
        from .shard import Shard

        try:
            cfg.shard = Shard.parse(shard, where_shard)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if "alerts" in raw:
        from .alerts.config import parse_alerts_config

        cfg.alerts = parse_alerts_config(raw["alerts"], f"{where}: [alerts]")
    if args is not None:
        for k in ("checkpoint_dir", "poll_interval", "batch_samples"):
            v = getattr(args, k, None)
            if v is not None:
                setattr(cfg, k, v)
        for k, a in (("db", "out_db"), ("measurement", "out_measurement"),
                     ("zscore_measurement", "zscore_measurement")):
            v = getattr(args, a, None)
            if v is not None:
                setattr(cfg.output, k, v)
        if getattr(args, "diagnostics", None):
            cfg.output.diagnostics = True
        if getattr(args, "precision", None):
            cfg.output.precision = args.precision
    def _number(key, value, cast, lo, hi):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and cast is int:
            ok = float(value).is_integer()
        if not ok or not lo <= value <= hi:
            raise ConfigError(f"[stream] {key} must be a number in [{lo}, {hi}], got {value!r}")
        return cast(value)

    cfg.poll_interval = _number("poll_interval", cfg.poll_interval, float, 0.001, 3600)
    cfg.batch_samples = _number("batch_samples", cfg.batch_samples, int, 1000, 10_000_000)
    cfg.log_every = _number("log_every", cfg.log_every, float, 0.1, 86400)
    cfg.late_window = _number("late_window", cfg.late_window, float, 0, 7 * 86400)
    if not isinstance(cfg.checkpoint_dir, str) or not cfg.checkpoint_dir:
        raise ConfigError(f"[stream] checkpoint_dir must be a path, got {cfg.checkpoint_dir!r}")
    for k in ("db", "measurement", "zscore_measurement", "error_field"):
        if not isinstance(getattr(cfg.output, k), str) or not getattr(cfg.output, k):
            raise ConfigError(f"[output] {k} must be a non-empty string")
    check_output_names(cfg)
    return cfg


PRECISIONS = ("float32", "float64")
"""``[output] precision``: the digits of the floats the stream writes."""

OUTPUT_TAGS = {"series": "the series' config name", "model": "the model version"}
"""Tags the stream adds to every output point (and what they hold)."""


def _check(name, kind: str, where: str) -> None:
    try:
        check_name(name, kind)
    except InfluxNameError as e:
        raise ConfigError(f"{where}: {e}") from None


def check_output_names(cfg: StreamConfig) -> None:
    """Refuse a config whose output would not carry its names unchanged, before any write
    (and an ``[output]`` ``diagnostics`` or ``precision`` that is not one of its values).

    Checked (:func:`pipeline.influx.check_name`): the output database and
    measurements; per series its name (the ``series`` tag value), the filter's
    tag keys and values (copied onto the output) and the fan-out tag key.  A
    filter tag or fan-out tag named ``series`` or ``model`` is refused: the
    stream writes those tags itself, so the source's values would be replaced
    (with ``fan_out``, every key's scores would land in one series and
    overwrite each other), and so is one named like a tag the alert history
    sets itself (:data:`pipeline.alerts.history.HISTORY_TAGS`) when ``[alerts]``
    writes the Chronograf history.  The source's measurement and field are only read,
    so any name that exists there works.  Fan-out key values are checked as
    they arrive (a key that cannot round-trip is quarantined).

    >>> s = SeriesConfig(name="t", db="src", measurement="temp", fan_out="series")
    >>> check_output_names(StreamConfig(series=[s]))
    Traceback (most recent call last):
    ...
    pipeline.stream_config.ConfigError: series 't': fan_out 'series' is also a tag the stream writes (the series' config name), so every key's scores would be written as one series and overwrite each other; rename that tag in the source data
    """
    o = cfg.output
    if not isinstance(o.diagnostics, bool):
        raise ConfigError(f"[output] diagnostics must be true or false, got {o.diagnostics!r}")
    if o.precision not in PRECISIONS:  # anything else would silently write float64
        raise ConfigError(f"[output] precision must be one of {list(PRECISIONS)}, got "
                          f"{o.precision!r}")
    _check(o.db, "database", "[output] db")
    _check(o.measurement, "measurement", "[output] measurement")
    _check(o.zscore_measurement, "measurement", "[output] zscore_measurement")
    for s in cfg.series:
        where = f"series {s.name!r}"
        _check(s.name, "tag value", f"{where}: the name is the output's 'series' tag")
        for k, v in s.tags.items():
            _check(k, "tag key", f"{where}: tags (copied onto the output)")
            if v != "":  # an empty value filters points without the tag (none on the output)
                _check(v, "tag value", f"{where}: tags (copied onto the output)")
            if k in OUTPUT_TAGS:
                raise ConfigError(f"{where}: the filter's tag {k!r} is also a tag the stream "
                                  f"writes ({OUTPUT_TAGS[k]}), so its value {v!r} would be "
                                  "replaced in the output; rename that tag in the source data")
        if s.fan_out is not None:
            _check(s.fan_out, "tag key", f"{where}: fan_out")
            if s.fan_out in OUTPUT_TAGS:
                raise ConfigError(f"{where}: fan_out {s.fan_out!r} is also a tag the stream "
                                  f"writes ({OUTPUT_TAGS[s.fan_out]}), so every key's scores "
                                  "would be written as one series and overwrite each other; "
                                  "rename that tag in the source data")
    if cfg.alerts is not None and any(d.type == "chronograf" for d in cfg.alerts.destinations):
        from .alerts.history import HISTORY_TAGS

        for s in cfg.series:
            for k in [*s.tags, *([s.fan_out] if s.fan_out else [])]:
                if k in HISTORY_TAGS:
                    raise ConfigError(
                        f"series {s.name!r}: the tag {k!r} is also a tag of the alert history "
                        f"(Chronograf's schema: {', '.join(HISTORY_TAGS)}), where its value "
                        "would be replaced; rename that tag in the source data, or remove the "
                        "chronograf destination from [alerts]")
