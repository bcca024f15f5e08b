"""Write behind: run a backfill's writes on one background thread while the next slice is scored.

The stream's backfill reads slice k+1 (a prefetching thread), scores it and
encodes its points while slice k is being written: InfluxDB ingesting a
write is half of a backfill's time, and the stream's Python work can run
meanwhile.  :class:`WriteBehind` keeps the guarantees of writing in line:

* jobs run one at a time, in the order they were submitted;
* at most one job is in flight: :meth:`WriteBehind.submit` first waits for
  the previous one, so nothing queues up (memory stays that of one slice);
* a job that raises stops everything after it: the exception is raised in
  the caller, as if the job had run there, at the next ``submit`` or at the
  end of the ``with`` block, and no later job has been started.

A job is "write the scores, then save the checkpoint that covers them"
(:meth:`pipeline.stream.Stream._commit`), so a checkpoint is never saved
before the write of its data has returned.  The checkpoint's bytes are
encoded by the caller before it goes on scoring (the state of that moment).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["WriteBehind"]


class WriteBehind:
    """Run zero-argument jobs in order on one thread, one at a time, errors raised in the caller.

    Use it as a context manager: leaving the block waits for the last job
    and raises its exception (also when the block itself raised: the write
    came first; the block's exception is its ``__context__``).

    >>> done = []
    >>> with WriteBehind() as w:
    ...     for k in range(3):
    ...         w.submit(lambda k=k: done.append(k))
    >>> done
    [0, 1, 2]
    >>> def fail():
    ...     raise OSError("disk full")
    >>> with WriteBehind() as w:  # doctest: +ELLIPSIS
    ...     w.submit(fail)
    ...     w.submit(lambda: done.append("never"))
    Traceback (most recent call last):
    OSError: disk full
    >>> done
    [0, 1, 2]
    """

    def __init__(self, name: str = "write-behind"):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, job) -> None:
        """Wait for the job in flight (raise its exception), then start ``job`` on the thread."""
        self.wait()
        self._pending = self._pool.submit(job)

    def wait(self) -> None:
        """Wait until the job in flight is done; raise its exception if it raised."""
        f, self._pending = self._pending, None
        if f is not None:
            f.result()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
        return False
