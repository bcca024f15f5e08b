"""python -m pipeline.datasets: the project generates its own data."""

import subprocess
import sys


def test_datasets_command_unwritable_out_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "pipeline.datasets", "--out", "/proc/nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot write to /proc/nope" in r.stderr and "Traceback" not in r.stderr
