"""python -m pipeline.datasets fetch: PhysioNet records as CSV series + events, all offline.

The records are small WFDB files written here with ``wfdb.wrsamp`` / ``wfdb.wrann``,
read from a folder (``--from-dir``) or served by a loopback HTTP server standing in
for PhysioNet (``--mirror``).  The one test that aims at the real PhysioNet checks
what a machine without network sees.
"""

import contextlib
import functools
import http.server
import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from pipeline.annotations import apnea_events, beat_events, format_seconds, sample_times_ns
from pipeline.datasets import main
from pipeline.influxd import free_port

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
N_MITDB, N_APNEA = 3600, 33_000
NAN_AT = 5  # a sample the record marks as missing (digital -2048 in format 212)

# (sample, symbol, aux_note) of the hand-made MIT-BIH-style record (360 Hz, 10 s)
ANNOTATIONS = [(0, "+", "(N"), (36, "F", ""), (360, "N", ""), (720, "V", ""), (792, "V", ""),
               (828, "A", ""), (1080, "+", "(AFIB"), (1440, "L", ""), (1800, "+", "(N"),
               (2160, "~", ""), (2520, "+", "(VT"), (3564, "V", "")]
# and the events they must give with the default half-width of 0.3 s
EXPECTED_EVENTS = [(0.0, 0.4, "F"),                    # clipped at the first sample
                   (1.7, 2.5, "V"),                    # two PVCs 0.2 s apart: one event
                   (2.0, 2.6, "A"),                    # overlaps the V event, another type
                   (3.0, 5.0, "(AFIB"),                # until the next rhythm annotation
                   (7.0, 3599 / 360, "(VT"),           # until the last sample
                   (9.6, 3599 / 360, "V")]             # clipped at the last sample
# N, L (normal beats), (N (sinus rhythm) and ~ (noise, not a beat) are no events


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A folder laid out like PhysioNet: mitdb/1.0.0/208.* and apnea-ecg/1.0.0/a02.*"""
    root = tmp_path_factory.mktemp("physionet")
    rng = np.random.default_rng(208)
    mit = root / "mitdb" / "1.0.0"
    mit.mkdir(parents=True)
    d = rng.integers(0, 2048, size=(N_MITDB, 2))
    d[NAN_AT, 0] = -2048
    wfdb.wrsamp("208", fs=360, units=["mV", "mV"], sig_name=["MLII", "V1"], d_signal=d,
                fmt=["212", "212"], adc_gain=[200, 200], baseline=[1024, 1024], write_dir=str(mit))
    s, sym, aux = zip(*ANNOTATIONS, strict=True)
    wfdb.wrann("208", "atr", np.array(s), np.array(sym), aux_note=list(aux), fs=360,
               write_dir=str(mit))
    ap = root / "apnea-ecg" / "1.0.0"
    ap.mkdir(parents=True)
    da = rng.integers(-3000, 3000, size=(N_APNEA, 1))
    wfdb.wrsamp("a02", fs=100, units=["mV"], sig_name=["ECG"], d_signal=da, fmt=["16"],
                adc_gain=[200], baseline=[0], write_dir=str(ap))
    minutes = np.arange(0, N_APNEA, 6000)
    wfdb.wrann("a02", "apn", minutes, np.array(["N", "A", "A", "N", "N", "A"]), fs=100,
               write_dir=str(ap))
    return {"root": root, "mitdb": mit, "apnea": ap, "d_mitdb": d, "d_apnea": da[:, 0]}


def _fetch(capsys, *args):
    rc = main(["fetch", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_series_csv_is_exact_at_360_hz(records, tmp_path, capsys):
    rc, out, _ = _fetch(capsys, "mitdb", "--record", "208", "--from-dir", records["mitdb"],
                        "--out", tmp_path)
    assert rc == 0
    folder = tmp_path / "mitdb208"
    text = (folder / "mitdb208.csv").read_text().splitlines()
    d = records["d_mitdb"][:, 0]
    keep = np.arange(N_MITDB) != NAN_AT
    ns = [round(k * 10**9 / 360) for k in range(N_MITDB)]  # the obviously correct grid
    want = [f"{t // 10**9}.{t % 10**9:09d},{(v - 1024) / 200!r}"
            for t, v, k in zip(ns, d.tolist(), keep, strict=True) if k]
    assert text == ["time_s,value", *want]
    meta = json.loads((folder / "mitdb208.json").read_text())
    assert (meta["lead"], meta["units"], meta["rate_hz"], meta["samples"], meta["rows"],
            meta["missing_samples"]) == ("MLII", "mV", 360.0, N_MITDB, N_MITDB - 1, 1)
    assert meta["license"].startswith("ODC-By 1.0") and meta["doi"] == "10.13026/C2F305"
    assert "python -m pipeline.load " + str(folder / "mitdb208.csv") in out
    assert _leftovers(tmp_path) == []


def test_series_csv_is_exact_at_100_hz_and_samples_cut(records, tmp_path, capsys):
    rc, _, _ = _fetch(capsys, "a02", "--from-dir", records["apnea"], "--out", tmp_path,
                      "--samples", 8192)
    assert rc == 0
    df = pd.read_csv(tmp_path / "a02_8192" / "a02_8192.csv", dtype=str)
    assert df["time_s"].tolist() == [f"{k // 100}.{k % 100:02d}" for k in range(8192)]
    np.testing.assert_array_equal(df["value"].astype(float), records["d_apnea"][:8192] / 200)
    assert json.loads((tmp_path / "a02_8192" / "a02_8192.json").read_text())["lead"] == "ECG"


def test_lead_is_chosen_by_name(records, tmp_path, capsys):
    assert _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path,
                  "--lead", "V1")[0] == 0
    df = pd.read_csv(tmp_path / "mitdb208" / "mitdb208.csv")
    np.testing.assert_array_equal(df["value"], (records["d_mitdb"][:, 1] - 1024) / 200)


def test_annotations_become_the_expected_events(records, tmp_path, capsys):
    assert _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path)[0] == 0
    ev = pd.read_csv(tmp_path / "mitdb208" / "mitdb208_events.csv", keep_default_na=False)
    assert list(ev.columns) == ["start", "end", "type"]
    assert ev["type"].tolist() == [t for _, _, t in EXPECTED_EVENTS]
    np.testing.assert_allclose(ev[["start", "end"]].to_numpy(),
                               [(s, e) for s, e, _ in EXPECTED_EVENTS], atol=5e-7)


def test_events_of_an_excerpt_end_with_it(records, tmp_path, capsys):
    assert _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path,
                  "--samples", 1440)[0] == 0
    ev = pd.read_csv(tmp_path / "mitdb208_1440" / "mitdb208_1440_events.csv")
    assert ev.values.tolist() == [[0.0, 0.4, "F"], [1.7, 2.5, "V"], [2.0, 2.6, "A"],
                                  [3.0, 3.997222, "(AFIB"]]


def test_apnea_minutes_become_events(records, tmp_path, capsys):
    assert _fetch(capsys, "a02", "--from-dir", records["apnea"], "--out", tmp_path)[0] == 0
    ev = pd.read_csv(tmp_path / "a02" / "a02_events.csv")
    assert ev.values.tolist() == [[60.0, 180.0, "apnea"], [300.0, 329.99, "apnea"]]


def test_fetch_and_load_in_one_command(records, tmp_path, capsys, influx, influx_env, fresh_db):
    rc, out, err = _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path,
                          "--load", "--db", fresh_db, "--start", "2026-01-01T00:00:00Z")
    assert rc == 0, err
    assert f"loaded {N_MITDB - 1:,} points into {fresh_db}.ekg.value" in out
    r = influx.read_field(fresh_db, "ekg", "value", tags={"source": "mitdb208"})
    keep = np.arange(N_MITDB) != NAN_AT
    np.testing.assert_array_equal(r.times, T0 + sample_times_ns(N_MITDB, 360)[keep])
    np.testing.assert_array_equal(r.values, (records["d_mitdb"][keep, 0] - 1024) / 200)


def test_load_failure_keeps_the_files_and_says_how_to_load(records, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setenv("INFLUXDB_PORT", str(free_port()))
    rc, _, err = _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path,
                        "--load")
    assert rc == 1
    assert "cannot reach InfluxDB" in err and "load them later with" in err
    assert (tmp_path / "mitdb208" / "mitdb208.csv").is_file()


# --------------------------------------------------------------------------
# downloads: a loopback stand-in for PhysioNet, a closed port, a silent server
# --------------------------------------------------------------------------
@contextlib.contextmanager
def _serve(directory):
    """A loopback HTTP server for ``directory``, standing in for PhysioNet; yields its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def mirror(records):
    with _serve(records["root"]) as url:
        yield url


def test_download_gives_the_same_files_as_a_local_folder(records, mirror, tmp_path, capsys):
    assert _fetch(capsys, "mitdb", "--mirror", mirror, "--out", tmp_path / "net")[0] == 0
    assert _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path / "dir")[0] == 0
    for name in ("mitdb208.csv", "mitdb208_events.csv"):
        assert ((tmp_path / "net" / "mitdb208" / name).read_bytes()
                == (tmp_path / "dir" / "mitdb208" / name).read_bytes())
    meta = json.loads((tmp_path / "net" / "mitdb208" / "mitdb208.json").read_text())
    assert meta["source"] == mirror + "mitdb/1.0.0/208"


def test_a_record_missing_on_the_server_is_a_clear_error(mirror, tmp_path, capsys):
    rc, _, err = _fetch(capsys, "mitdb", "--record", "209", "--mirror", mirror, "--out", tmp_path)
    assert rc == 1
    assert "mitdb/1.0.0/209.hea does not exist (404)" in err and "nothing was written" in err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_a_server_answering_something_else_is_a_clear_error(tmp_path, capsys):
    site = tmp_path / "site" / "mitdb" / "1.0.0"
    site.mkdir(parents=True)
    (site / "208.hea").write_text("<html><body>Please log in to the hotel wifi</body></html>\n")
    with _serve(tmp_path / "site") as url:
        rc, _, err = _fetch(capsys, "mitdb", "--mirror", url, "--out", tmp_path / "data")
    assert rc == 1
    assert "the answer is not a readable WFDB record" in err and "nothing was written" in err
    assert not (tmp_path / "data").exists()


def test_closed_port_fails_fast_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "data"
    rc, _, err = _fetch(capsys, "mitdb", "--mirror", f"http://127.0.0.1:{free_port()}/",
                        "--out", out)
    assert rc == 1
    assert err.startswith("error: cannot reach PhysioNet at http://127.0.0.1:")
    assert "check your internet connection or proxy" in err and "nothing was written" in err
    assert not out.exists()


def test_a_silent_server_is_bounded_by_the_timeout(tmp_path, capsys):
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        rc, _, err = _fetch(capsys, "a02", "--mirror",
                            f"http://127.0.0.1:{silent.getsockname()[1]}/", "--timeout", "0.5",
                            "--out", tmp_path / "data")
        elapsed = time.monotonic() - t0
    assert rc == 1 and "Timeout" in err and "nothing was written" in err
    assert elapsed < 10
    assert not (tmp_path / "data").exists()


def test_real_physionet_without_network_is_a_clear_message(tmp_path):
    """The test machines have no network: the real URL must fail fast, exit 1, write nothing."""
    try:
        socket.getaddrinfo("physionet.org", 443)
        pytest.skip("physionet.org resolves here: this test checks the offline behaviour")
    except OSError:
        pass
    out = tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "pipeline.datasets", "fetch", "a02", "--out",
                        str(out), "--timeout", "5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: cannot reach PhysioNet at https://physionet.org/files/")
    assert "check your internet connection or proxy" in r.stderr
    assert "nothing was written" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["foo"], "unknown dataset 'foo'; choose one of a02, apnea-ecg, mitdb"),
    (["mitdb", "--record", "999"], "mitdb has no record '999'; its records are 100, 101,"),
    (["a02", "--record", "a03"], "a02 is record a02 of apnea-ecg; for another record use "
                                 "`fetch apnea-ecg --record a03`"),
    (["mitdb", "--lead", "V5"], "record 208 has no lead 'V5' (its leads: MLII, V1); "
                                "choose one with --lead"),
    (["mitdb", "--samples", "4000"], "record 208 has 3600 samples; --samples 4000 asks for more"),
    (["mitdb", "--samples", "0"], "--samples must be a positive number of samples, got 0"),
    (["mitdb", "--half-width", "0"], "--half-width must be > 0 seconds, got 0.0"),
    (["mitdb", "--record", "100"], "no record 100 in "),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(records, tmp_path, capsys, args, message):
    out = tmp_path / "data"
    rc, _, err = _fetch(capsys, *args, "--from-dir", records["mitdb"], "--out", out)
    assert rc == 2
    assert err.startswith("error: ") and message in err
    assert not out.exists()


def test_a_broken_record_is_a_clear_error(records, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "208.hea").write_text((records["mitdb"] / "208.hea").read_text())
    (broken / "208.dat").write_bytes((records["mitdb"] / "208.dat").read_bytes()[:100])
    rc, _, err = _fetch(capsys, "mitdb", "--from-dir", broken, "--out", tmp_path / "data")
    assert rc == 2 and "cannot read record" in err and "complete WFDB record" in err


def test_refetch_replaces_the_folder_and_leaves_no_temporary_files(records, tmp_path, capsys):
    for lead in ("MLII", "V1"):
        assert _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path,
                      "--lead", lead)[0] == 0
    assert json.loads((tmp_path / "mitdb208" / "mitdb208.json").read_text())["lead"] == "V1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mitdb208"]


def test_a_failed_write_leaves_nothing_behind(records, tmp_path, capsys):
    (tmp_path / "mitdb208").write_text("a file where the folder goes")
    rc, _, err = _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", tmp_path)
    assert rc == 2 and "exists and is not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mitdb208"]


def test_unwritable_out_is_a_clear_error(records, capsys):
    rc, _, err = _fetch(capsys, "mitdb", "--from-dir", records["mitdb"], "--out", "/proc/nope")
    assert rc == 1 and "cannot write to /proc/nope" in err and "nothing was written" in err


# --------------------------------------------------------------------------
# the pure conversions
# --------------------------------------------------------------------------
def test_beat_events_table_merges_only_the_same_type():
    # rate 100, half-width 0.05: V at 2.50 and 2.60 s touch ([2.45, 2.55], [2.55, 2.65]): one event;
    # V at 3.00 s is apart; A at 2.55 s overlaps the V event but stays its own; (B lasts to the end
    ev = beat_events([200, 250, 255, 260, 300, 301], ["+", "V", "A", "V", "V", "+"],
                     ["(B", "", "", "", "", "(B"], rate=100, n_samples=400, half_width=0.05)
    assert ev.values.tolist() == [[2.0, 3.99, "(B"], [2.45, 2.65, "V"], [2.5, 2.6, "A"],
                                  [2.95, 3.05, "V"]]


def test_no_annotations_no_events():
    assert beat_events([], [], [], rate=360, n_samples=10).shape == (0, 3)
    assert apnea_events([0], ["N"], rate=100, n_samples=10).shape == (0, 3)


def test_format_seconds_round_trips_through_the_loader_exactly(tmp_path):
    from pipeline.load import read_csv_series

    for rate in (100, 360, 250, 128, 1000, 0.5):
        ns = sample_times_ns(5000, rate)
        path = tmp_path / "s.csv"
        path.write_text("time_s,value\n" + "".join(f"{t},1\n" for t in format_seconds(ns)))
        np.testing.assert_array_equal(read_csv_series(path).times_ns, ns)
        want = [round(k * 10**9 / rate) for k in range(5000)]
        np.testing.assert_array_equal(ns, want)


def test_a_record_without_annotations_gives_no_events_file(records, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for ext in ("hea", "dat"):
        (bare / f"208.{ext}").write_bytes((records["mitdb"] / f"208.{ext}").read_bytes())
    rc, out, _ = _fetch(capsys, "mitdb", "--from-dir", bare, "--out", tmp_path / "data")
    assert rc == 0 and "events: none (record 208 has no .atr annotations)" in out
    assert sorted(p.name for p in (tmp_path / "data" / "mitdb208").iterdir()) == [
        "mitdb208.csv", "mitdb208.json"]


def test_the_printed_load_command_loads_it(records, tmp_path, capsys, influx, influx_env,
                                           fresh_db):
    from pipeline.load import main as load_main

    rc, out, _ = _fetch(capsys, "a02", "--from-dir", records["apnea"], "--out",
                        tmp_path / "a folder with spaces", "--db", fresh_db, "--samples", 500)
    assert rc == 0
    command = out.split("load it with:\n", 1)[1].strip()
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "pipeline.load"]
    assert load_main(argv[3:]) == 0
    r = influx.read_field(fresh_db, "ekg", "value", tags={"source": "a02_500"})
    np.testing.assert_array_equal(r.times, T0 + np.arange(500) * 10_000_000)
    np.testing.assert_array_equal(r.values, records["d_apnea"][:500] / 200)
