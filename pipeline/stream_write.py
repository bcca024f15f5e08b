"""Write-behind for the stream's backfill: one batch is written while the next is scored.

A backfill's time is mostly InfluxDB ingesting the scores (the stream waits
for each write's response); scoring the next slice meanwhile uses the other
core.  :class:`WriteBehind` keeps the stream's delivery guarantees:

* at most one write is in flight, and writes run in the order submitted;
* each write carries the checkpoint *snapshots* taken when its batch was
  scored (:meth:`pipeline.checkpoint.CheckpointStore.snapshot`), saved after
  the write succeeded, so a checkpoint never covers scores that were not
  written, even though the detectors have moved on to the next batch;
* :meth:`WriteBehind.submit` first waits for the previous write, so a failed
  write stops the stream before anything after it is written.

>>> done = []
>>> with WriteBehind(done.append) as w:
...     w.submit("batch 1")
...     w.submit("batch 2")
>>> done
['batch 1', 'batch 2']
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["WriteBehind"]

log = logging.getLogger("pipeline.stream")


class WriteBehind:
    """Run ``commit(*args)`` calls one at a time on a thread, in order, one ahead of the caller.

    Parameters
    ----------
    commit : callable
        Writes one batch and then saves its checkpoint snapshots; it runs on
        the write thread.
    behind : bool
        False: each ``commit`` runs in :meth:`submit`, on the caller's thread
        (the stream with alerts, whose notifications follow each write).

    Use it as a context manager: leaving the block waits for the last write
    (an error while leaving is raised, unless another one already is, which
    then wins and the write's is logged).
    """

    def __init__(self, commit, behind: bool = True):
        self._commit = commit
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="write") if behind else None
        self._pending: Future | None = None

    def submit(self, *args) -> None:
        """Wait for the previous write (raising its error), then start this one."""
        self.wait()
        if self._pool is None:
            self._commit(*args)
        else:
            self._pending = self._pool.submit(self._commit, *args)

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending = self._pending
        if pending is None:
            return
        try:
            pending.result()
        except BaseException:
            if pending.done():  # its own error, raised here: not raised again on leaving
                self._pending = None
            raise  # else interrupted while waiting (Ctrl-C): leaving waits for it again
        self._pending = None

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self.wait()
            else:
                try:
                    self.wait()
                except Exception as e:  # the caller's error is the one to raise
                    log.error("the last write failed too (its checkpoint has not moved): %s", e)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return False
