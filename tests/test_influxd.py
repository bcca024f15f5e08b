"""The local server command: start, status, stop, as a user runs it."""

import subprocess
import sys
import time
from pathlib import Path

from pipeline.influxd import free_port, main, ping, write_config


def test_config_has_the_keys_that_matter(tmp_path):
    text = write_config(tmp_path, 1111, 2222).read_text()
    assert "reporting-enabled = false" in text
    assert 'bind-address = "127.0.0.1:2222"' in text  # RPC moved too
    assert 'bind-address = "127.0.0.1:1111"' in text
    assert "max-select-buckets = 100000" in text
    assert 'cache-snapshot-write-cold-duration = "2s"' in text


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.influxd", *args],
                          capture_output=True, text=True, timeout=60)


def test_start_status_stop(tmp_path):
    port = free_port()
    d = str(tmp_path / "srv")
    r = _cli("start", "--dir", d, "--port", str(port))
    try:
        assert r.returncode == 0, r.stderr
        assert ping(port)
        assert _cli("status", "--dir", d).returncode == 0
        # a second start is a no-op, not a collision
        again = _cli("start", "--dir", d, "--port", str(port))
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        r = _cli("stop", "--dir", d)
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not ping(port)
    assert _cli("status", "--dir", d).returncode == 3


def test_port_in_use_is_a_clear_error(tmp_path, influxd):
    r = _cli("start", "--dir", str(tmp_path / "x"), "--port", str(influxd.http_port))
    assert r.returncode == 1
    assert "already in use" in r.stderr


def test_unusable_dir_is_a_clear_error():
    r = _cli("start", "--dir", "/proc/nope/srv", "--port", str(free_port()))
    assert r.returncode == 1
    assert "cannot use /proc/nope/srv" in r.stderr and "Traceback" not in r.stderr



def _run(capsys, *args):
    """The command in-process (the same code as ``python -m``, without the import cost)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out + err


def test_stop_leaves_an_unrelated_process_alone(tmp_path, capsys):
    """A stale pid file whose PID now belongs to another program: stop must not kill it."""
    d = tmp_path / "srv"
    d.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{sleeper.pid}/cmdline").read_bytes():  # exec'd yet?
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (d / "influxd.pid").write_text(f"{sleeper.pid} {free_port()} {free_port()}\n")
        assert _run(capsys, "status", "--dir", str(d))[0] == 3
        rc, out = _run(capsys, "stop", "--dir", str(d))
        time.sleep(0.2)
        assert sleeper.poll() is None, "stop killed an unrelated process"
        assert rc == 0
        assert f"pid {sleeper.pid}" in out and "not the influxd started in" in out
        assert "'sleep 60'" in out and "left alone" in out
        assert not (d / "influxd.pid").exists()  # the stale pid file is removed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_leaves_another_directorys_influxd_alone(tmp_path, influxd, capsys):
    """The pid of a real influxd with another config (the test session's server)."""
    d = tmp_path / "srv"
    d.mkdir()
    (d / "influxd.pid").write_text(f"{influxd.proc.pid} {influxd.http_port} {free_port()}\n")
    assert _run(capsys, "status", "--dir", str(d))[0] == 3  # not this directory's server
    rc, out = _run(capsys, "stop", "--dir", str(d))
    assert ping(influxd.http_port) and influxd.proc.poll() is None
    assert rc == 0 and "not the influxd started in" in out and not (d / "influxd.pid").exists()


def test_stop_of_a_vanished_pid_removes_the_pid_file(tmp_path, capsys):
    d = tmp_path / "srv"
    d.mkdir()
    p = subprocess.Popen(["true"])
    p.wait()
    (d / "influxd.pid").write_text(f"{p.pid} {free_port()} {free_port()}\n")
    rc, out = _run(capsys, "stop", "--dir", str(d))
    assert rc == 0 and "not running" in out and "stale pid file" in out
    assert not (d / "influxd.pid").exists()
