"""Shared fixtures: a real ``influxd`` on free loopback ports, per session.

No InfluxDB mock exists anywhere in this project.  If ``influxd`` is not
installed the tests fail (not skip) with the command that installs it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings

import numpy as np
import pytest

from pipeline.calibrate import CalibrationWarning
from pipeline.datasets import synthetic_ekg, synthetic_temperature
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
    """A small EKG model: every default detector (shape with 24 clusters) fitted on 40 s and
    calibrated on the next 20 s to the default budget (one alarm event per day)."""
    t, v = ekg
    n_tr = 40 * RATE
    path = tmp_path_factory.mktemp("model") / "ekg.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # 20 s cannot confirm 1 per day
        train(t[:n_tr], v[:n_tr], t[n_tr:60 * RATE], v[n_tr:60 * RATE], n_clusters=24,
              out=str(path))
    return str(path)


@pytest.fixture(scope="session")
def model_file(model_path):
    """The loaded EKG model file (its detectors, metadata and version)."""
    return load_model(model_path)


@pytest.fixture(scope="session")
def model(model_file):
    """The EKG model's K-Means reconstructor (the shape detector's fitted model)."""
    return model_file.get("shape").model_


SENSOR_PERIOD = 2 * 10**9
"""The sensor fleet's cadence: one reading every 2 s."""


@pytest.fixture(scope="session")
def sensor_model_path(tmp_path_factory):
    """A sensor model at a 2 s cadence: z-score, drift and flat line, trained on 3 h of a
    synthetic temperature sensor and calibrated on the next 3 h."""
    temp = synthetic_temperature(hours=6, n_sensors=1, seed=11)
    v = temp["value"].to_numpy()
    t = T0 + np.round(temp["time_s"].to_numpy() * 1e9).astype(np.int64)
    half = len(v) // 2
    path = tmp_path_factory.mktemp("sensor") / "sensor.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = train(t[:half], v[:half], t[half:], v[half:], detectors=["zscore", "drift", "flatline"],
                    out=str(path))
    assert [d.name for d in res.detectors if d.enabled_] == ["zscore", "drift", "flatline"], \
        res.summary()
    return str(path)


@pytest.fixture(scope="session")
def sensor_model_file(sensor_model_path):
    return load_model(sensor_model_path)


F32_STEP = 2.0**-23
"""One float32 step, relative: the stream writes floats at float32's digits (``[output]
precision``), so two float64 scores 1e-12 apart may come back one step apart."""


def assert_stored(got, want, err_msg="", exact=False):
    """``got``, read back from what the stream wrote, is ``want`` (the batch twin's float64
    scores) as InfluxDB keeps it at the default ``[output] precision = "float32"``
    (``naive.naive_as_stored``): to the bit when ``exact`` (the stream's float64 is the twin's,
    bit for bit: segments), else within one float32 step (per-sample scores, whose chunk
    boundaries move the anchors of the stable rolling sums by about 1e-12)."""
    from naive import naive_as_stored

    stored = naive_as_stored(np.asarray(want, np.float64))
    if exact:
        np.testing.assert_array_equal(got, stored, err_msg=err_msg)
    else:
        np.testing.assert_allclose(got, stored, rtol=F32_STEP, atol=1e-12, err_msg=err_msg)
