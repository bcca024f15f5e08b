"""Plexus against a loopback stand-in of its gateway (POST /ingest) and API (POST /api/monitors).

The real ``plexus-python`` client runs: it first tries a WebSocket (the
stand-in refuses the upgrade) and falls back to ``POST /ingest``.
"""

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.alerts import AlertManager, parse_alerts_config
from pipeline.plexus import PlexusForwarder, main, threshold_from_model

from loopback import Receiver, free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "plx_SECRETKEY_0123456789"
S = 1_000_000_000
T0 = 1_767_225_600 * S


def plexus_api(path, body):
    if path == "/ingest":
        return 200, {"accepted": len(body.get("points", []))}
    if path == "/api/monitors":
        return 201, {"id": "mon_1", **body}
    return 404, {"error": "not found"}


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    r = Receiver(answer=plexus_api)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PLEXUS_API_KEY", KEY)
    monkeypatch.setenv("PLEXUS_GATEWAY_URL", r.url)
    monkeypatch.setenv("PLEXUS_GATEWAY_WS_URL", f"ws://127.0.0.1:{r.port}")
    monkeypatch.setenv("PLEXUS_ENDPOINT", r.url)
    monkeypatch.setenv("PLEXUS_QUIET", "1")
    yield r
    r.close()


def zscore_out(times_s, score, alarm=None):
    score = np.asarray(score, dtype=float)
    return SimpleNamespace(name="zscore", label="z-score", score_field="z",
                           threshold_field="z_threshold", measurement="zscore",
                           times=np.array([T0 + t * S for t in times_s], dtype=np.int64),
                           score=score, threshold=3.0,
                           alarm=np.abs(score) > 3 if alarm is None else alarm)


def test_forwarder_sends_the_batch_max_through_the_real_client(gateway):
    # timeout 2: the client's first send waits min(timeout, 5) s for its WebSocket
    f = PlexusForwarder("lab-sensors", "temperature.zscore", persistent_buffer=False, timeout=2)
    f.start()
    try:
        t0 = time.perf_counter()
        f.submit(f.points(zscore_out([0, 2, 4], [0.5, -4.25, 1.0]), "s03",
                          {"series": "temperature", "sensor": "s03"}))
        f.submit(f.points(zscore_out([6, 8], [np.nan, 2.0]), "s03", {"sensor": "s03"}))
        assert time.perf_counter() - t0 < 0.1  # submitting never waits for the network
        gateway.wait_for(2, timeout=20)
        assert f.drain(20)
    finally:
        f.stop()
    ingest = [r for r in gateway.requests if r["path"] == "/ingest"]
    assert [r["headers"]["x-api-key"] for r in ingest] == [KEY, KEY]
    points = [p for r in ingest for p in r["body"]["points"]]
    assert all(r["body"]["source_id"] == "lab-sensors" for r in ingest)
    assert [(p["metric"], p["value"], p["timestamp"]) for p in points] == [
        ("temperature.zscore", 4.25, (T0 + 2 * S) // 10**6),
        ("temperature.zscore", 2.0, (T0 + 8 * S) // 10**6)]
    assert points[0]["tags"] == {"series": "temperature", "sensor": "s03"}


def test_manager_forwards_configured_series_and_detector(gateway, tmp_path):
    cfg = parse_alerts_config({"timeout": 2, "plexus": [{"series": "temperature", "detector": "zscore",
                                           "metric": "temperature.zscore",
                                           "source_id": "lab-sensors", "reduce": "all",
                                           "persistent_buffer": False}]})
    m = AlertManager(cfg, state_path=tmp_path / "alerts.json")
    try:
        m.feed("temperature", "s01", {"series": "temperature", "sensor": "s01"}, "m1",
               [zscore_out([0, 2], [1.0, 5.0]),
                SimpleNamespace(**{**vars(zscore_out([0, 2], [9.0, 9.0])), "name": "drift"})])
        m.feed("other", "", {"series": "other"}, "m1", zscore_out([0], [7.0]))
        assert not gateway.requests  # nothing before the batch is committed
        m.commit()
        gateway.wait_for(1, timeout=20)
        assert m.drain(20)
    finally:
        m.close()
    points = [p for b in gateway.bodies("/ingest") for p in b["points"]]
    assert [(p["metric"], p["value"]) for p in points] == [("temperature.zscore", 1.0),
                                                           ("temperature.zscore", 5.0)]


def run_cli(*args, env=None):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline.plexus", *args], env=e,
                          capture_output=True, text=True, timeout=60)


def test_register_monitor_posts_the_threshold(gateway):
    p = run_cli("register-monitor", "--threshold", "8.8", "--source-id", "lab-ekg",
                "--metric", "ekg.max_error", "--severity", "warning")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("monitor created on lab-ekg/ekg.max_error: max 8.8, "
                                "severity warning, id mon_1")
    (req,) = gateway.requests
    assert req["path"] == "/api/monitors" and req["headers"]["x-api-key"] == KEY
    assert req["body"] == {"source_id": "lab-ekg", "metric": "ekg.max_error",
                           "threshold": {"max": 8.8, "severity": "warning",
                                         "message": "ekg.max_error above 8.8"}}
    assert KEY not in p.stdout + p.stderr


def test_register_monitor_reads_the_model_threshold(gateway, model_path, capsys):
    from pipeline.model_io import load_model

    want = load_model(model_path).get("shape").threshold_
    assert threshold_from_model(model_path, "shape") == want
    assert main(["register-monitor", "--model", model_path, "--source-id", "lab-ekg",
                 "--metric", "ekg.max_error"]) == 0
    assert f"max {want:.6g}, severity critical" in capsys.readouterr().out
    (body,) = gateway.bodies("/api/monitors")
    assert body["threshold"]["max"] == want and body["threshold"]["severity"] == "critical"


def test_register_monitor_unreachable_endpoint_is_an_exit_code_not_a_traceback(gateway):
    p = run_cli("register-monitor", "--threshold", "3", "--source-id", "lab", "--metric", "m",
                env={"PLEXUS_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert p.returncode == 1
    assert p.stderr.startswith("error: creating the monitor failed: Plexus: cannot connect")
    assert "Traceback" not in p.stderr and KEY not in p.stdout + p.stderr


@pytest.mark.parametrize("case", ["no key", "unreachable", "rejected", "bad model",
                                  "other detector", "not finite"])
def test_register_monitor_failures_are_clear(case, gateway, tmp_path, monkeypatch, capsys):
    args = ["register-monitor", "--threshold", "3", "--source-id", "lab", "--metric", "m"]
    env, code, msg = {}, 1, ""
    if case == "no key":
        env, code, msg = {"PLEXUS_API_KEY": ""}, 2, "PLEXUS_API_KEY is not set"
    elif case == "unreachable":
        env, msg = {"PLEXUS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, "cannot connect"
    elif case == "rejected":
        gateway.answer = lambda path, body: (401, {"error": "bad key"})
        msg = "answered HTTP 401; check that PLEXUS_API_KEY"
    elif case == "bad model":
        bad = tmp_path / "m.npz"
        bad.write_bytes(b"not a model")
        args[1:3] = ["--model", str(bad)]
        code, msg = 2, str(bad)
    elif case == "other detector":
        args[1:3] = ["--model", "x.npz", "--detector", "zscore"]
        code, msg = 2, "x.npz"
    else:
        args[2] = "nan"
        code, msg = 2, "finite number"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(args) == code
    io = capsys.readouterr()
    assert io.err.startswith("error: ") and msg in io.err
    assert KEY not in io.out + io.err
