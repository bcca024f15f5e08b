"""InfluxDB connection settings: environment variables, then command-line flags.

Pure: nothing here opens a connection (:class:`pipeline.influx.Influx` does).
Re-exported by :mod:`pipeline.influx`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["InfluxSettings"]


def _env_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"INFLUXDB_SSL must be one of true/false/1/0/yes/no, got {value!r}")


@dataclass(frozen=True)
class InfluxSettings:
    """Connection settings.  Credentials come from the environment.

    =====================  =======================  ============
    field                  environment variable     default
    =====================  =======================  ============
    host                   ``INFLUXDB_HOST``        127.0.0.1
    port                   ``INFLUXDB_PORT``        8086
    username               ``INFLUXDB_USERNAME``    (none)
    password               ``INFLUXDB_PASSWORD``    (none)
    ssl                    ``INFLUXDB_SSL``         false
    timeout (s)            ``INFLUXDB_TIMEOUT``     30
    =====================  =======================  ============

    Examples
    --------
    >>> s = InfluxSettings.from_env({"INFLUXDB_PORT": "9999"}, host="db")
    >>> s.url
    'http://db:9999'
    >>> "secret" in repr(InfluxSettings(password="secret"))
    False
    """

    host: str = "127.0.0.1"
    port: int = 8086
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> InfluxSettings:
        """Settings from ``environ`` (default ``os.environ``), then ``overrides`` (flags).

        ``None`` overrides are ignored, so argparse defaults of ``None`` fall
        through to the environment.
        """
        env = os.environ if environ is None else environ
        port_s = env.get("INFLUXDB_PORT", "8086")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"INFLUXDB_PORT must be an integer port, got {port_s!r}") from None
        timeout_s = env.get("INFLUXDB_TIMEOUT", "30")
        try:
            timeout = float(timeout_s)
        except ValueError:
            raise ValueError(f"INFLUXDB_TIMEOUT must be seconds, got {timeout_s!r}") from None
        values = dict(
            host=env.get("INFLUXDB_HOST", "127.0.0.1"),
            port=port,
            username=env.get("INFLUXDB_USERNAME") or None,
            password=env.get("INFLUXDB_PASSWORD") or None,
            ssl=_env_bool(env.get("INFLUXDB_SSL")),
            timeout=timeout,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not 0 < int(values["port"]) < 65536:
            raise ValueError(f"port must be in 1..65535, got {values['port']}")
        return cls(**values)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"
