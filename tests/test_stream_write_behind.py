"""A backfill's write-behind thread (pipeline.writer) against a real influxd: the same output as
writing in line, to the bit, and a failed write loses nothing and checkpoints nothing past it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import T0
from test_stream import assert_equals_batch, make_cfg, n_scored, out_fields

from pipeline.checkpoint import CheckpointStore
from pipeline.influx import Influx, InfluxSettings, InfluxUnavailableError
from pipeline.influxd import LocalInfluxd
from pipeline.stream import Stream

END = T0 + 10**12


def _spied(stream):
    """Record, per write-then-checkpoint job, the thread it ran on and the last per-sample time
    of the scores it wrote (after the write returned); the real method does the work."""
    real, jobs = stream._write_then_save, []

    def job(lines, snaps, old):
        real(lines, snaps, old)
        times = [int(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("zscore,")]
        jobs.append((threading.current_thread().name, max(times, default=None)))

    stream._write_then_save = job
    return jobs


def _read_all(ix, db, model_file):
    return {(m, f): ix.read_field(db, m, f) for m, names in out_fields(model_file).items()
            for f in names}


def test_write_behind_writes_what_the_in_line_path_writes_to_the_bit(influx, fresh_db, ekg,
                                                                      model_path, model_file,
                                                                      tmp_path):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", t, {"value": v}, {"source": "p1"})
    got, totals = {}, {}
    for behind in (True, False):
        out = f"{fresh_db}_{'behind' if behind else 'inline'}"
        stream = Stream(make_cfg(fresh_db, model_path, tmp_path, out, batch=3000), influx)
        stream.write_behind = behind
        jobs = _spied(stream)
        totals[behind] = stream.backfill(T0, END)
        assert len(jobs) > 10
        names = {name for name, _ in jobs}
        assert names == ({"write-behind_0"} if behind else {threading.current_thread().name})
        last = [x for _, x in jobs if x is not None]
        assert last == sorted(last)  # in order
        got[behind] = _read_all(influx, out, model_file)
        influx.drop_database(out)
    for key, a in got[True].items():
        b = got[False][key]
        assert len(a) > 0, key
        np.testing.assert_array_equal(a.times, b.times, err_msg=str(key))
        assert a.values.tobytes() == b.values.tobytes(), key
    for k in ("samples", "segments", "points_written", "alarm_points"):
        assert totals[True][k] == totals[False][k], k


@pytest.mark.parametrize("behind", [True, False])
def test_a_failed_write_loses_nothing_and_checkpoints_nothing_past_it(behind, tmp_path, ekg,
                                                                       model_path, model_file):
    """influxd is stopped just before the 4th write: the backfill raises what a write in line
    raises, the checkpoint covers exactly the 3 writes that returned, and a resumed backfill
    completes the output (equal to the batch twins)."""
    srv = LocalInfluxd(tmp_path / "srv").start()
    try:
        ix = Influx(InfluxSettings(port=srv.http_port, timeout=5))
        ix.create_database("src")
        t, v = ekg
        ix.write_series("src", "ekg", t, {"value": v})
        cfg = make_cfg("src", model_path, tmp_path, "out", batch=5000)
        stream = Stream(cfg, ix)
        stream.write_behind = behind
        jobs = _spied(stream)
        real, calls = stream._write_then_save, [0]

        def job(*a):
            calls[0] += 1
            if calls[0] == 4:  # a real failure: the server is gone; stop: no endless retries
                srv.stop()
                stream.stop.set()
            real(*a)

        stream._write_then_save = job
        with pytest.raises(InfluxUnavailableError, match="Is influxd running"):
            stream.backfill(T0, END)
        assert calls[0] == 4 and len(jobs) == 3  # nothing was started after the failed write
        store = CheckpointStore(tmp_path / "ckpt-out" / f"backfill-{T0}-{END}")
        assert store.load("ekg").last_time_ns == jobs[-1][1]  # the last write that returned

        srv.start()
        # everything the checkpoint covers was written: the points up to it are all there
        covered = int(np.searchsorted(t, jobs[-1][1], side="right"))
        assert n_scored(ix, "out") == covered
        assert Stream(cfg, ix).backfill(T0, END)["samples"] == len(t) - covered
        assert_equals_batch(ix, "out", model_file, t, v)
        assert n_scored(ix, "out") == len(t)
    finally:
        srv.stop()
