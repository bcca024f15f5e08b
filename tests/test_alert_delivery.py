"""Delivery to loopback stand-ins: exact Slack texts, webhook payloads, retries, outbox, restarts.

"Receiver down" is a closed loopback port; secrets are checked against every
log record, stdout/stderr, reprs and the outbox file.
"""

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.alerts import AlertManager, parse_alerts_config

from loopback import Receiver, free_port

S = 1_000_000_000
T0 = 1_767_225_600 * S
SECRET = "T0SECRET/B0SECRET/xoxbSECRETtoken"
ROOT = Path(__file__).resolve().parent.parent


def out(times_s, alarm, score):
    return SimpleNamespace(name="zscore", label="z-score", score_field="z",
                           threshold_field="z_threshold", measurement="zscore",
                           times=np.array([T0 + int(t * S) for t in times_s], dtype=np.int64),
                           score=np.asarray(score, dtype=float), threshold=3.0,
                           alarm=np.asarray(alarm, dtype=bool))


TAGS = {"series": "temperature", "sensor": "s03", "model": "abc123"}


def manager(tmp_path, env, dests, start=True, **top):
    raw = {"retry_delay": 0.01, "tries": 3, "timeout": 2.0, **top, "destination": dests}
    cfg = parse_alerts_config(raw, environ=env)
    return AlertManager(cfg, state_path=tmp_path / "alerts.json", environ=env, start=start)


@pytest.fixture
def slack():
    r = Receiver()
    yield r
    r.close()


def slack_env(port, secret=SECRET):
    return {"SLACK_WEBHOOK_URL": f"http://127.0.0.1:{port}/services/{secret}"}


EXPECTED = [
    "[CRITICAL] z-score on temperature (sensor=s03): z = 4.5, threshold 3, "
    "at 2026-01-01T00:00:04Z, model abc123",
    "[OK] z-score on temperature (sensor=s03) recovered after 6s: z = 0.5, threshold 3, "
    "peak -6.25, at 2026-01-01T00:00:10Z, model abc123",
]


def episode(m):
    """An episode split over two batches (the stream's pattern: feed, then commit)."""
    m.feed("temperature", "s03", TAGS, "abc123", [out([0, 2, 4, 6], [0, 0, 1, 1],
                                                      [0.1, 0.2, 4.5, -6.25])])
    first = m.commit()
    m.feed("temperature", "s03", TAGS, "abc123", out([8, 10], [1, 0], [5.0, 0.5]))
    return first + m.commit()


def test_exact_messages_reach_slack_webhook_and_log(tmp_path, slack, caplog):
    hook = Receiver()
    env = {**slack_env(slack.port), "HOOK_URL": f"{hook.url}/alerts?token=abc",
           "HOOK_AUTH": "Bearer hook-secret"}
    m = manager(tmp_path, env, [
        {"type": "slack", "url_env": "SLACK_WEBHOOK_URL", "channel": "#alerts"},
        {"type": "webhook", "url_env": "HOOK_URL", "headers_env": {"Authorization": "HOOK_AUTH"}},
        {"type": "log"},
    ])
    try:
        with caplog.at_level(logging.INFO, logger="pipeline.alerts"):
            notes = episode(m)
            assert m.drain(10)
        assert [n.text for n in notes] == EXPECTED
        bodies = slack.bodies()
        assert [b["text"] for b in bodies] == EXPECTED
        assert all(r["path"] == f"/services/{SECRET}" for r in slack.requests)
        a = bodies[0]
        assert a["channel"] == "#alerts"
        assert a["attachments"][0]["color"] == "danger"
        assert bodies[1]["attachments"][0]["color"] == "good"
        assert a["attachments"][0]["footer"] == (
            f"alert temperature:zscore:s03, id temperature:zscore:s03:alert:{T0 + 4 * S}")
        reqs = hook.wait_for(2)
        assert [r["path"] for r in reqs] == ["/alerts?token=abc"] * 2
        assert [r["headers"]["authorization"] for r in reqs] == ["Bearer hook-secret"] * 2
        p = reqs[1]["body"]
        assert p["message"] == EXPECTED[1] and p["level"] == "OK"
        assert p["dedup_key"] == f"temperature:zscore:s03:recovery:{T0 + 10 * S}"
        assert p["alertID"] == "temperature:zscore:s03" and p["duration_ns"] == 6 * S
        assert p["duration"] == "6s" and p["time"] == "2026-01-01T00:00:10Z"
        assert p["tags"] == TAGS and p["value"] == 0.5 and p["peak"] == -6.25
        logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.alerts"]
        assert logged == [f"{EXPECTED[0]} (id temperature:zscore:s03:alert:{T0 + 4 * S})",
                          f"{EXPECTED[1]} (id temperature:zscore:s03:recovery:{T0 + 10 * S})"]
        assert [r.levelname for r in caplog.records if r.name == "pipeline.alerts"] == \
            ["WARNING", "INFO"]
    finally:
        m.close()
        hook.close()
    assert json.loads((tmp_path / "alerts.json").read_text())["entries"] == []


def test_server_errors_are_retried_with_the_same_payload(tmp_path):
    r = Receiver(status=lambda n: 503 if n <= 2 else 200)
    m = manager(tmp_path, slack_env(r.port), [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}],
                tries=5)
    try:
        m.feed("temperature", "s03", TAGS, "abc123", out([0, 1], [1, 0], [4.5, 0.5]))
        m.commit()
        assert m.drain(10)
        texts = [b["text"] for b in r.bodies()]
        assert texts[:3] == [texts[0]] * 3 and len(texts) == 4  # alert x3, then the recovery
    finally:
        m.close()
        r.close()


def _outbox(tmp_path):
    return json.loads((tmp_path / "alerts.json").read_text())


def test_receiver_down_then_back_gets_the_backlog(tmp_path, caplog):
    port = free_port()
    env = slack_env(port)
    m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}])
    r = None
    try:
        with caplog.at_level(logging.WARNING):
            m.feed("temperature", "s03", TAGS, "abc123", out([0, 2], [0, 1], [0.1, 4.5]))
            m.commit()
            assert m.drain(10)
        errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert errors[0].startswith(f"alert temperature:zscore:s03:alert:{T0 + 2 * S} not "
                                    "delivered to slack after 3 tries (slack: cannot connect")
        assert "kept in" in errors[0] and "sent again at the next start" in errors[0]
        m.outbox.save()
        (entry,) = _outbox(tmp_path)["entries"]
        assert entry["failed"] == ["slack"] and entry["pending"] == []

        r = Receiver(port=port)  # back, on the same port
        m.feed("temperature", "s03", TAGS, "abc123", out([4], [0], [0.5]))
        m.commit()
        r.wait_for(2)
        assert m.drain(10)
        assert [b["text"][:5] for b in r.bodies()] == ["[OK] ", "[CRIT"]  # new first, then backlog
        assert m.outbox.entries == {}
    finally:
        m.close()
        if r is not None:
            r.close()


def test_restart_sends_failed_ones_once_and_never_again(tmp_path):
    port = free_port()
    env = slack_env(port)
    dests = [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}]
    m = manager(tmp_path, env, dests)
    m.feed("temperature", "s03", TAGS, "abc123", out([0, 2, 4], [0, 1, 0], [0.1, 4.5, 0.5]))
    m.commit()
    assert m.drain(10)
    m.close()
    r = Receiver(port=port)
    try:
        m = manager(tmp_path, env, dests)  # the next start
        r.wait_for(2)
        assert m.drain(10)
        m.close()
        assert [b["text"] for b in r.bodies()] == [
            "[CRITICAL] z-score on temperature (sensor=s03): z = 4.5, threshold 3, "
            "at 2026-01-01T00:00:02Z, model abc123",
            "[OK] z-score on temperature (sensor=s03) recovered after 2s: z = 0.5, threshold 3, "
            "peak 4.5, at 2026-01-01T00:00:04Z, model abc123"]
        m = manager(tmp_path, env, dests)  # and again: nothing left to send
        m.feed("temperature", "s03", TAGS, "abc123", out([0, 2, 4], [0, 1, 0], [0.1, 4.5, 0.5]))
        assert m.commit() == []  # a replayed batch: the engine has seen these points
        assert m.drain(5)
        m.close()
        time.sleep(0.2)
        assert len(r.requests) == 2
    finally:
        r.close()


KILLED = textwrap.dedent("""
    import os, signal, sys, numpy as np
    from types import SimpleNamespace
    from pipeline.alerts import AlertManager, parse_alerts_config
    env = {"SLACK_WEBHOOK_URL": sys.argv[2]}
    cfg = parse_alerts_config({"retry_delay": 60, "tries": 5,
                               "destination": [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}]},
                              environ=env)
    m = AlertManager(cfg, state_path=sys.argv[1], environ=env)
    o = SimpleNamespace(name="zscore", label="z-score", score_field="z",
                        threshold_field="z_threshold", measurement="zscore",
                        times=np.array([%(t0)d, %(t1)d]), score=np.array([0.1, 4.5]),
                        threshold=3.0, alarm=np.array([False, True]))
    m.feed("temperature", "s03", {"series": "temperature", "sensor": "s03"}, "abc123", o)
    m.commit()
    import time; time.sleep(0.3)   # the first try failed; the sender waits 60 s to retry
    os.kill(os.getpid(), signal.SIGKILL)
""") % {"t0": T0, "t1": T0 + 2 * S}


def test_kill_9_after_commit_loses_nothing_and_sends_once(tmp_path):
    port = free_port()
    env = slack_env(port)
    state = tmp_path / "alerts.json"
    p = subprocess.run([sys.executable, "-c", KILLED, str(state), env["SLACK_WEBHOOK_URL"]],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == -9, p.stderr
    assert SECRET not in p.stderr + p.stdout
    r = Receiver(port=port)
    try:
        m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}])
        r.wait_for(1)
        # the episode state survived too: its end comes as a recovery, not a new alert
        m.feed("temperature", "s03", {"series": "temperature", "sensor": "s03"}, "abc123",
               out([0, 2, 4], [0, 1, 0], [0.1, 4.5, 0.5]))
        assert [n.kind for n in m.commit()] == ["recovery"]
        r.wait_for(2)
        assert m.drain(10)
        m.close()
        assert [b["text"][:10] for b in r.bodies()] == ["[CRITICAL]", "[OK] z-sco"]
    finally:
        r.close()


def test_scoring_never_waits_for_a_hanging_receiver(tmp_path):
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)
    held = []

    def accept_and_never_answer():
        while True:
            try:
                held.append(hang.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_and_never_answer, daemon=True).start()
    env = slack_env(hang.getsockname()[1])
    m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}], timeout=3.0)
    try:
        worst = 0.0
        for b in range(20):
            t0 = time.perf_counter()
            m.feed("temperature", "s03", TAGS, "abc123",
                   out([10 * b, 10 * b + 5], [1, 0], [4.5, 0.5]))
            m.commit()
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.5, f"a batch waited {worst:.2f} s for the receiver"
        assert held  # the sender is connected and waiting for an answer
        assert len(m.outbox.entries) >= 20
    finally:
        m.close(timeout=0.5)
        hang.close()
        for c in held:
            c.close()


def test_secrets_never_in_logs_output_errors_or_files(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    env = {**slack_env(port), "HOOK_URL": f"http://127.0.0.1:{port}/{SECRET}",
           "HOOK_AUTH": f"Bearer {SECRET}"}
    m = manager(tmp_path, env, [
        {"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
        {"type": "webhook", "url_env": "HOOK_URL", "headers_env": {"Authorization": "HOOK_AUTH"}},
    ])
    texts = [repr(m.destinations), str(m.destinations)]
    m.feed("temperature", "s03", TAGS, "abc123", out([0, 2, 4], [0, 1, 0], [0.1, 4.5, 0.5]))
    m.commit()
    assert m.drain(10)  # both down: warnings and errors logged
    r = Receiver(port=port, status=500)
    m.feed("temperature", "s03", TAGS, "abc123", out([6], [1], [4.5]))
    m.commit()
    r.wait_for(2)
    assert m.drain(10)
    m.close()
    r.close()
    for bad in ({"type": "slack", "url_env": env["SLACK_WEBHOOK_URL"]},
                {"type": "webhook", "url_env": "NOT_SET_VAR"}):
        with pytest.raises(ValueError) as e:
            parse_alerts_config({"destination": [bad]}, environ=env)
        texts.append(str(e.value))
    assert "NOT_SET_VAR is not set" in texts[-1]
    records = [x.getMessage() for x in caplog.records]
    assert any("cannot connect" in x for x in records) and any("HTTP 500" in x for x in records)
    io = capsys.readouterr()
    files = [p.read_text() for p in tmp_path.iterdir() if p.is_file()]
    for t in [*texts, *records, io.out, io.err, *files]:
        assert "SECRET" not in t, t


def test_outbox_is_private_and_written_atomically(tmp_path, slack):
    m = manager(tmp_path, slack_env(slack.port), [{"type": "log"}])
    episode(m)
    m.drain(5)
    m.close()
    p = tmp_path / "alerts.json"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) in (["alerts.json"],
                                                           ["alerts.json", "alerts.json.journal"])
    j = tmp_path / "alerts.json.journal"
    if j.exists():
        assert stat.S_IMODE(j.stat().st_mode) == 0o600


@pytest.mark.parametrize("content, match", [
    ("{not json", "unreadable .* move it away"),
    ('{"version": 1, "engine": {"version": 7}, "entries": [], "delivered": []}',
     "not from this version .* move it away"),
    ('{"version": 1, "engine": null, "entries": [{"n": {"kind": "alert"}}], "delivered": []}',
     "unreadable"),
])
def test_a_corrupt_outbox_is_a_clear_config_error(tmp_path, content, match):
    from pipeline.stream_config import ConfigError

    (tmp_path / "alerts.json").write_text(content)
    with pytest.raises(ConfigError, match=match):
        manager(tmp_path, {}, [{"type": "log"}])


def test_a_torn_journal_line_is_ignored(tmp_path):
    port = free_port()
    env = slack_env(port)
    m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
                                {"type": "log"}], tries=1)
    m.feed("temperature", "s03", TAGS, "abc123", out([0, 2], [0, 1], [0.1, 4.5]))
    m.commit()
    assert m.drain(5)
    m.dispatcher.stop()  # as if killed: no compaction, the deliveries are only in the journal
    m.outbox.close()
    (e,) = json.loads((tmp_path / "alerts.json").read_text())["entries"]
    assert e["pending"] == ["slack", "log"]
    with open(tmp_path / "alerts.json.journal", "a") as f:
        f.write('{"id": "temperat')  # a kill in the middle of a line
    m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"},
                                {"type": "log"}], start=False)
    (e,) = m.outbox.entries.values()
    assert e["pending"] == [] and e["failed"] == ["slack"]  # log: done; slack: to retry
    m.close(timeout=0.5)


def test_a_destination_removed_from_the_config_is_forgotten_with_a_warning(tmp_path, caplog):
    port = free_port()
    env = slack_env(port)
    m = manager(tmp_path, env, [{"type": "slack", "url_env": "SLACK_WEBHOOK_URL"}], tries=1)
    m.feed("temperature", "s03", TAGS, "abc123", out([0, 2], [0, 1], [0.1, 4.5]))
    m.commit()
    assert m.drain(5)
    m.close()
    with caplog.at_level(logging.WARNING):
        m = manager(tmp_path, env, [{"type": "log"}])
    assert m.outbox.entries == {}
    assert any("no longer has: not delivered there" in r.getMessage() for r in caplog.records)
    m.close()
