"""python -m pipeline.datasets: the project generates its own data."""

import subprocess
import sys


def test_datasets_command_unwritable_out_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "pipeline.datasets", "--out", "/proc/nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot write to /proc/nope" in r.stderr and "Traceback" not in r.stderr


def test_generate_is_the_default_and_both_write_the_same_files(tmp_path, capsys):
    from pipeline.datasets import main

    assert main(["--out", str(tmp_path / "a")]) == 0
    assert main(["generate", "--out", str(tmp_path / "b")]) == 0
    for name in ("synthetic_ekg.csv", "synthetic_ekg_anomalies.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert main(["--help"]) == 0
    assert "fetch NAME" in capsys.readouterr().out
