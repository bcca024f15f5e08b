"""The local server command: start, status, stop, as a user runs it."""

import subprocess
import sys

from pipeline.influxd import free_port, ping, write_config


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

