"""The backfill's write-behind (:mod:`pipeline.stream_write`): order, errors, and its exit."""

import threading
import time

import pytest

from pipeline.stream_write import WriteBehind


def test_writes_run_in_order_one_behind_the_caller():
    done, release = [], threading.Event()

    def commit(batch):
        if batch == 1:
            assert release.wait(10)
        done.append(batch)

    with WriteBehind(commit) as w:
        w.submit(1)
        assert done == []  # submit returned while batch 1 is still being written
        release.set()
        w.submit(2)  # waits for 1 first
        assert done == [1]
        w.submit(3)
    assert done == [1, 2, 3]


def test_a_failed_write_stops_everything_after_it():
    done = []

    def commit(batch):
        if batch == 2:
            raise OSError("disk full")
        done.append(batch)

    with pytest.raises(OSError, match="disk full"), WriteBehind(commit) as w:
        for batch in range(1, 6):
            w.submit(batch)
    assert done == [1]


def test_a_failed_last_write_is_raised_on_leaving():
    def commit(batch):
        raise OSError("refused")

    with pytest.raises(OSError, match="refused"), WriteBehind(commit) as w:
        w.submit(1)


def test_the_callers_error_wins_and_the_write_in_flight_still_finishes(caplog):
    done = []

    def commit(batch):
        time.sleep(0.1)
        done.append(batch)
        if batch == 2:
            raise OSError("refused")

    with pytest.raises(KeyError), WriteBehind(commit) as w:
        w.submit(1)
        raise KeyError("scoring failed")
    assert done == [1]  # its checkpoint is saved: nothing scored and written is redone
    with caplog.at_level("ERROR", logger="pipeline.stream"), pytest.raises(KeyError), \
            WriteBehind(commit) as w:
        w.submit(2)
        raise KeyError("scoring failed")
    assert done == [1, 2] and "the last write failed too" in caplog.text and "refused" in caplog.text


def test_in_step_runs_each_write_on_the_callers_thread():
    threads = []
    with WriteBehind(lambda batch: threads.append((batch, threading.get_ident())),
                     behind=False) as w:
        w.submit(1)
        assert threads == [(1, threading.get_ident())]  # done before submit returned
        w.submit(2)
    assert threads == [(1, threading.get_ident()), (2, threading.get_ident())]
