"""``python -m pipeline.stream`` with an ``[alerts]`` table, end to end, against a real influxd.

A fleet of temperature sensors (2 s cadence) is written to the test influxd and scored by the
small sensor model of ``conftest`` (z-score, drift, flat line); alerts go to a loopback webhook
(:class:`loopback.Receiver`) and to Chronograf's history (``chronograf.autogen.alerts``).

The expected notifications come from a slow reference, not from the engine: every enabled
detector's batch twin (``new_state().update_many`` on the whole series) gives the alarm runs,
:func:`naive.naive_episodes` turns each run into an ALERT and a RECOVERY, and the texts are
written here in the format ``docs/alerts.md`` states.  The flood guard's minute is built by
hand (eight sensors spike at the same sample) and its summary is a literal string.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SENSOR_PERIOD, T0

from pipeline.alerts.messages import format_duration, format_time
from pipeline.influx import quote_ident
from pipeline.stream import Stream, load_config

from loopback import Receiver, free_port
from naive import naive_episodes

ROOT = Path(__file__).resolve().parent.parent
S = 10**9
N = 840                        # samples per sensor: 28 min at a 2 s cadence
SPIKE, FLAT, FLOOD = 150, (300, 360), 615  # s00 spikes at 5:00; s01 is flat 10:00-12:00;
KEYS = [f"s{i:02d}" for i in range(8)]     # every sensor spikes at 20:30 (the flood)
LIMIT = 3


def fleet(n=N, keys=KEYS, spikes=None, flats=None, seed=5):
    """``{sensor: (times, values)}``: noise around 21 degC with spikes (+4) and flat runs."""
    rng = np.random.default_rng(seed)
    if spikes is None:
        spikes = {k: [SPIKE, FLOOD] if k == "s00" else [FLOOD] for k in keys}
    flats = {"s01": [FLAT]} if flats is None else flats
    out = {}
    for k in keys:
        v = np.round(21 + 0.1 * rng.standard_normal(n), 3)
        for i in sorted(set(spikes.get(k, []))):
            if i < n:
                v[i] += 4.0
        for a, b in flats.get(k, []):
            v[a:b] = 21.0
        out[k] = (T0 + np.arange(n, dtype=np.int64) * SENSOR_PERIOD, v)
    return out


def write(influx, db, data, lo=0, hi=None):
    for k, (t, v) in data.items():
        influx.write_series(db, "temp", t[lo:hi], {"value": v[lo:hi]}, {"sensor": k})


def expected(model_file, data, series):
    """The reference: ``[(time, kind, key, detector, text, duration_ns)]`` of every episode
    (suppressed or not), in the order the engine documents (time, key, detector, kind)."""
    out = []
    for key, (t, v) in data.items():
        for d in model_file.enabled:
            o = d.new_state().update_many(t, v)
            where = f"{d.label} on {series} (sensor={key})"
            for kind, tk, value, start, peak in naive_episodes(o.times, o.alarm, o.score):
                head = (f"[CRITICAL] {where}" if kind == "alert" else
                        f"[OK] {where} recovered after {format_duration(tk - start)}")
                tail = (f": {d.score_field} = {value:.4g}, threshold {o.threshold:.4g}"
                        + (f", peak {peak:.4g}" if kind == "recovery" else "")
                        + f", at {format_time(tk)}, model {model_file.version}")
                out.append((tk, kind, key, d.name, head + tail, tk - start))
    return sorted(out, key=lambda e: (e[0], e[2], e[3], e[1] != "alert"))


def write_config(path, db, out_db, ckpt, model, series, limit=LIMIT, tries=3, retry_delay=0.05,
                 history=True, poll=0.05):
    path.write_text(f"""
[output]
db = "{out_db}"
[stream]
checkpoint_dir = "{ckpt}"
batch_samples = 1000
poll_interval = {poll}
[[series]]
name = "{series}"
db = "{db}"
measurement = "temp"
fan_out = "sensor"
model = "{model}"

[alerts]
max_per_minute = {limit}
tries = {tries}
retry_delay = {retry_delay}
timeout = 2.0
[[alerts.destination]]
type = "webhook"
url_env = "HOOK_URL"
[[alerts.destination]]
type = "log"
""" + ("""[[alerts.destination]]
type = "chronograf"
""" if history else ""))
    return str(path)


def history(influx, series):
    """Chronograf's alert history of one series, as Chronograf's page would list it (and more)."""
    q = (f"SELECT * FROM {quote_ident('alerts')} WHERE {quote_ident('series')} = $s "
         "ORDER BY time")
    res = influx.query_json(q, "chronograf", {"s": series})
    return [dict(zip(s["columns"], v, strict=True)) for s in res for v in s["values"]]


def messages(receiver):
    return [b["message"] for b in receiver.bodies()]


def _cmd(args):
    return [sys.executable, "-m", "pipeline.stream", *args]


@pytest.fixture
def cli(influx_env, caplog, capsys):
    """``pipeline.stream.main(ARGS)`` in this process; returns ``(returncode, stdout, log)``."""
    from pipeline.stream import main

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(args):
        caplog.clear()
        capsys.readouterr()
        with caplog.at_level("INFO"):
            rc = main(args)
        return SimpleNamespace(returncode=rc, stdout=capsys.readouterr().out, log=caplog.text)

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def hook(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("HOOK_URL", f"{r.url}/alerts")
    yield r
    r.close()


# ---------------------------------------------------------------------------
def test_backfill_sends_each_episode_once_with_the_flood_summary_and_history(
        influx, fresh_db, sensor_model_path, sensor_model_file, tmp_path, hook, influx_env, cli):
    series = f"{fresh_db}_t"  # unique: the history of other tests shares chronograf.alerts
    data = fleet()
    write(influx, fresh_db, data)
    cfg = write_config(tmp_path / "s.toml", fresh_db, fresh_db + "_o", tmp_path / "ck",
                       sensor_model_path, series)
    want = expected(sensor_model_file, data, series)
    # the data holds what the test is about: a spike, a flat line, a flood of 8 in one minute
    kinds = {(k, key, det) for _, k, key, det, _, _ in want}
    assert {("alert", "s00", "zscore"), ("alert", "s01", "flatline")} <= kinds
    flood = [e for e in want if e[0] == T0 + FLOOD * SENSOR_PERIOD]
    assert [(e[1], e[2], e[3]) for e in flood] == [("alert", k, "zscore") for k in KEYS]
    assert all(e[1] == "recovery" for e in want if e[0] > flood[0][0])
    assert len(want) % 2 == 0 and len(want) == 22  # 11 episodes, each ends inside the data

    r = subprocess.run(_cmd(["--config", cfg, "--start", str(T0), "--end", str(T0 + 3600 * S)]),
                       env=dict(influx_env, HOOK_URL=f"{hook.url}/alerts"), cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    # people get every episode once, except the flood's 5 suppressed ones, and one summary
    suppressed = {f"s{i:02d}" for i in range(LIMIT, 8)}
    flood_t = T0 + FLOOD * SENSOR_PERIOD
    summary = (f"[SUPPRESSED] z-score on {series}, minute from 2026-01-01T00:20:00Z (limit {LIMIT} "
               "alerts per minute): 5 more alerts suppressed (s03, s04, s05, s06, s07); "
               "5 suppressed alerts recovered (s03, s04, s05, s06, s07)")
    people = [e for e in want if not (e[2] in suppressed and e[3] == "zscore"
                                      and flood_t <= e[0] < flood_t + 60 * S)]
    assert len(people) == len(want) - 10
    want_msgs = [e[4] for e in people]
    i = next((i for i, e in enumerate(people) if e[0] > T0 + 21 * 60 * S), len(people))
    want_msgs.insert(i, summary)  # summaries are timed at the end of their minute
    assert messages(hook) == want_msgs
    bodies = hook.bodies()
    assert len({b["dedup_key"] for b in bodies}) == len(bodies)
    rec = [b for b in bodies if b["kind"] == "recovery"]
    assert [b["duration_ns"] for b in rec] == [e[5] for e in people if e[1] == "recovery"]
    assert all(b["duration_ns"] > 0 for b in rec)
    s = bodies[want_msgs.index(summary)]
    assert (s["kind"], s["level"], s["suppressed_alerts"]) == ("summary", "WARNING",
                                                                sorted(suppressed))
    # the log destination printed the same, and the run's summary counts them
    for m in want_msgs:
        assert m in r.stderr
    assert f"alert notifications: {len(want) + 1}" in r.stdout  # the suppressed count too

    # Chronograf's history holds every episode, the suppressed ones too
    rows = history(influx, series)
    assert sorted((x["time"], x["level"], x["message"], x["duration"]) for x in rows) == \
        sorted((t, "CRITICAL" if k == "alert" else "OK", m, 0 if k == "alert" else d)
               for t, k, _, _, m, d in want)
    assert {x["alertName"] for x in rows} >= {f"z-score on {series}", f"flat line on {series}"}
    assert all(x["alertID"] == f"{series}:{x['detector']}:{x['sensor']}" for x in rows)
    assert {x["host"] for x in rows} == set(KEYS)

    # the same backfill again re-scores the range but alerts nothing: the engine ignores
    # points at or before the last one it saw per key (docs/alerts.md)
    n = len(hook.requests)
    r2 = cli(["--config", cfg, "--start", str(T0), "--end", str(T0 + 3600 * S)])
    assert r2.returncode == 0, r2.log
    assert "scored 6,720 samples" in r2.stdout and "alert notifications" not in r2.stdout
    time.sleep(0.2)
    assert len(hook.requests) == n
    assert len(history(influx, series)) == len(want)


# ---------------------------------------------------------------------------
def _wait(cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _scored(influx, out_db):
    try:
        return influx.count(out_db, "zscore", "flat_alert")
    except Exception:  # noqa: BLE001 - the database may not exist yet
        return 0


def recorded(outbox, nid, dest):
    """True once the outbox (its journal, or the file the journal is folded into) says ``nid``
    was delivered to ``dest``."""
    journal = outbox.with_name(outbox.name + ".journal")
    try:
        lines = journal.read_text().splitlines() if journal.exists() else []
        doc = json.loads(outbox.read_text())
    except (OSError, ValueError):
        return False
    if json.dumps({"id": nid, "dest": dest, "ok": True}) in lines or nid in doc["delivered"]:
        return True
    return any(e["n"]["id"] == nid and dest not in e["pending"] + e["failed"]
               for e in doc["entries"])


@pytest.mark.parametrize("checkpoints", ["as_left", "one_batch_behind"])
def test_kill9_mid_episode_then_restart_sends_no_duplicate_and_the_recovery(
        influx, fresh_db, sensor_model_path, sensor_model_file, tmp_path, hook, influx_env, cli,
        checkpoints):
    """Killed after the batch with the ALERT was committed.  ``one_batch_behind`` puts back
    the series checkpoints saved before that batch: the state a kill leaves between the
    alert commit and the checkpoint save (the batch is redone with the new engine state)."""
    series = f"{fresh_db}_t"
    data = fleet(n=700, keys=["s00"], spikes={"s00": [400, 600]}, flats={})
    want = expected(sensor_model_file, data, series)
    assert [(e[1], e[0]) for e in want] == [
        ("alert", T0 + 400 * SENSOR_PERIOD), ("recovery", T0 + 404 * SENSOR_PERIOD),
        ("alert", T0 + 600 * SENSOR_PERIOD), ("recovery", T0 + 604 * SENSOR_PERIOD)]
    out_db, ck = fresh_db + "_o", tmp_path / "ck"
    cfg = write_config(tmp_path / "s.toml", fresh_db, out_db, ck, sensor_model_path, series)
    write(influx, fresh_db, data, 0, 300)
    err = open(tmp_path / "stderr.txt", "wb")
    p = subprocess.Popen(_cmd(["--config", cfg, "--start", str(T0)]),
                         env=dict(influx_env, HOOK_URL=f"{hook.url}/alerts"), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait(lambda: _scored(influx, out_db) == 300 and list(ck.glob("*.ckpt")), 60,
              "the first 300 samples scored and checkpointed")
        before = tmp_path / "before"
        shutil.copytree(ck, before, ignore=shutil.ignore_patterns("alerts.json*"))
        write(influx, fresh_db, data, 300, 402)  # the ALERT at 400; the episode is open
        hook.wait_for(1, 30)
        assert messages(hook) == [want[0][4]]
        # the receiver's answer recorded in the journal (a kill between the two is the one
        # documented duplicate, which the payload's dedup_key is for)
        nid = f"{series}:zscore:s00:alert:{want[0][0]}"
        _wait(lambda: recorded(ck / "alerts.json", nid, "webhook"), 10,
              "the webhook's delivery in the outbox")
        assert p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        err.close()
    if checkpoints == "one_batch_behind":
        for f in ck.glob("*.ckpt"):
            f.unlink()
        for f in before.glob("*.ckpt"):
            shutil.copy2(f, ck / f.name)
    write(influx, fresh_db, data, 402, 700)  # the RECOVERY at 404, a second episode after
    r = cli(["--config", cfg, "--start", str(T0), "--max-polls", "40"])
    assert r.returncode == 0, r.log
    assert "resuming after" in r.log
    assert messages(hook) == [e[4] for e in want], (tmp_path / "stderr.txt").read_text()
    assert hook.bodies()[1]["duration_ns"] == 4 * SENSOR_PERIOD
    assert _scored(influx, out_db) == 700
    rows = history(influx, series)
    assert [(x["time"], x["message"]) for x in rows] == [(e[0], e[4]) for e in want]
    assert json.loads((ck / "alerts.json").read_text())["entries"] == []


def test_a_backfill_with_alerts_writes_in_step_on_its_own_thread(
        influx, fresh_db, sensor_model_path, tmp_path, hook):
    """The alert manager is fed and committed around each write (its docs), so with
    ``[alerts]`` the backfill does not write behind: every commit runs on its own thread."""
    series = f"{fresh_db}_t"
    write(influx, fresh_db, fleet(keys=["s00", "s01"]))
    cfg = write_config(tmp_path / "s.toml", fresh_db, fresh_db + "_o", tmp_path / "ck",
                       sensor_model_path, series, history=False)
    stream = Stream(load_config(cfg), influx)
    real, threads = stream._commit, []

    def commit(lines, snapshots, **kw):
        threads.append(threading.get_ident())
        real(lines, snapshots, **kw)

    stream._commit = commit
    try:
        assert stream.backfill(T0, T0 + 3600 * S)["samples"] == 2 * N
    finally:
        stream.close(drain_s=10)
    assert len(threads) >= 2 and set(threads) == {threading.get_ident()}


# ---------------------------------------------------------------------------
class _Follow:
    """``Stream.follow`` in a thread, as the CLI runs it (close drains the senders)."""

    def __init__(self, cfg_path, influx):
        self.stream = Stream(load_config(cfg_path), influx)
        self.thread = threading.Thread(target=self.stream.follow, kwargs={"start_ns": T0},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.stream.stop.set()
        self.thread.join(30)
        self.stream.close(drain_s=10)


def test_receiver_down_then_back_gets_the_backlog_once(influx, fresh_db, sensor_model_path,
                                                       sensor_model_file, tmp_path, monkeypatch,
                                                       caplog):
    """docs/alerts.md, "Retries": ``tries`` attempts, then an ERROR and *failed* in the outbox;
    sent again, oldest first, as soon as the destination accepts another notification (while
    it is down, new ones get one try each), and at the next start; nothing lost, nothing twice."""
    series = f"{fresh_db}_t"
    port = free_port()  # nothing listens: the receiver is down
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{port}/alerts")
    data = fleet(n=800, keys=["s00"], spikes={"s00": [100, 300, 500, 700]}, flats={})
    want = [e[4] for e in expected(sensor_model_file, data, series)]
    assert len(want) == 8
    out_db, ck = fresh_db + "_o", tmp_path / "ck"
    cfg = write_config(tmp_path / "s.toml", fresh_db, out_db, ck, sensor_model_path, series,
                       tries=3, retry_delay=0.05, history=False)
    outbox = ck / "alerts.json"

    def failed():
        """Texts the outbox marks failed for the webhook (file + journal, as a restart reads)."""
        try:
            doc = json.loads(outbox.read_text()) if outbox.exists() else {"entries": []}
            journal = ck / "alerts.json.journal"
            lines = journal.read_text().splitlines() if journal.exists() else []
        except (OSError, ValueError):
            return None
        for line in lines:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            for e in doc["entries"]:
                if e["n"]["id"] == j["id"]:
                    e["pending"] = [d for d in e["pending"] if d != j["dest"]]
                    e["failed"] += [] if j["ok"] else [j["dest"]]
        return [e["n"]["text"] for e in doc["entries"] if "webhook" in e["failed"]]

    caplog.set_level(logging.WARNING, logger="pipeline.alerts")
    write(influx, fresh_db, data, 0, 250)  # episode 1: both fail
    f = _Follow(cfg, influx)
    hook = None
    try:
        def errors():
            return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

        _wait(lambda: len(failed() or []) == 2 and len(errors()) == 2, 30, "episode 1 given up")
        errors = errors()
        assert errors[0].startswith(f"alert {series}:zscore:s00:alert:")
        assert "not delivered to webhook after 3 tries (webhook: cannot connect" in errors[0]
        assert f"kept in {outbox} and sent again at the next start or when webhook answers " \
               "again" in errors[0]
        assert "after 1 tries" in errors[1]  # while down: one try each, no waiting
        assert f"127.0.0.1:{port}" not in caplog.text  # the URL is never logged
        hook = Receiver(port=port)  # back up, on the same port
        write(influx, fresh_db, data, 250, 450)  # episode 2 is accepted: the backlog follows
        hook.wait_for(4, 30)
        time.sleep(0.3)
        got = messages(hook)
        assert got[:2] == want[2:4] and got[2:] == want[0:2]  # the new, then the oldest first
        assert "alert destination webhook answers again" in caplog.text
    finally:
        f.stop()
    # down again while the stream is stopped: episode 3 waits in the outbox for the next start
    hook.close()
    f = _Follow(cfg, influx)
    try:
        write(influx, fresh_db, data, 450, 650)
        _wait(lambda: len(failed() or []) == 2, 30, "episode 3 given up")
    finally:
        f.stop()
    hook = Receiver(port=port)
    try:
        write(influx, fresh_db, data, 650, 800)
        f = _Follow(cfg, influx)  # the next start sends what failed, then episode 4
        try:
            hook.wait_for(4, 30)
            _wait(lambda: failed() == [], 10, "an empty outbox")
        finally:
            f.stop()
        assert messages(hook) == want[4:]
        bodies = hook.bodies()
        assert len({b["dedup_key"] for b in bodies}) == 4
    finally:
        hook.close()
    assert json.loads(outbox.read_text())["entries"] == []
