"""Shared fixtures: a real ``influxd`` on free loopback ports, per session.

No InfluxDB mock exists anywhere in this project.  If ``influxd`` is not
installed the tests fail (not skip) with the command that installs it.
"""

from __future__ import annotations

import itertools
import os
import shutil

import numpy as np
import pytest

from pipeline.datasets import synthetic_ekg
from pipeline.influx import Influx, InfluxSettings
from pipeline.influxd import INSTALL_HINT, LocalInfluxd
from pipeline.model_io import load_model
from pipeline.train import train

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
RATE = 360
PERIOD = 10**9 / RATE

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


def grid(n, start=T0):
    """Timestamps of ``n`` samples at 360 Hz, exact integer ns."""
    return start + np.round(np.arange(n) * PERIOD).astype(np.int64)


@pytest.fixture(scope="session")
def ekg():
    """120 s of synthetic EKG at 360 Hz, normal for 60 s, labelled anomalies after."""
    data, _ = synthetic_ekg(duration_s=120, normal_s=60, seed=3)
    return grid(len(data)), data["value"].to_numpy()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, ekg):
    """A small model (24 clusters) trained on 40 s, calibrated on the next 20 s."""
    t, v = ekg
    n_tr = 40 * RATE
    path = tmp_path_factory.mktemp("model") / "ekg.npz"
    train(t[:n_tr], v[:n_tr], t[n_tr:60 * RATE], v[n_tr:60 * RATE], n_clusters=24,
          out=str(path), threshold_method="max", margin=1.2)
    return str(path)


@pytest.fixture(scope="session")
def model(model_path):
    return load_model(model_path).model
