"""Shared fixtures: a real ``influxd`` on free loopback ports, per session.

No InfluxDB mock exists anywhere in this project.  If ``influxd`` is not
installed the tests fail (not skip) with the command that installs it.
"""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from pipeline.influx import Influx, InfluxSettings
from pipeline.influxd import INSTALL_HINT, LocalInfluxd

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    """A throwaway influxd in a temp dir; stopped (SIGTERM) at teardown."""
    if shutil.which("influxd") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    srv = LocalInfluxd(tmp_path_factory.mktemp("influxd")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def influx_settings(influxd) -> InfluxSettings:
    return InfluxSettings(host="127.0.0.1", port=influxd.http_port, timeout=10)


@pytest.fixture
def influx_env(influx_settings, monkeypatch):
    """Environment variables pointing the CLIs at the test server."""
    monkeypatch.setenv("INFLUXDB_HOST", influx_settings.host)
    monkeypatch.setenv("INFLUXDB_PORT", str(influx_settings.port))
    for k in ("INFLUXDB_USERNAME", "INFLUXDB_PASSWORD", "INFLUXDB_SSL"):
        monkeypatch.delenv(k, raising=False)
    return dict(os.environ)


@pytest.fixture
def influx(influx_settings) -> Influx:
    return Influx(influx_settings)


@pytest.fixture
def fresh_db(influx):
    """A database name unique to the test, created now and dropped after."""
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    influx.create_database(name)
    yield name
    try:
        influx.drop_database(name)
    except Exception:  # the server may have been killed by a fault test
        pass
