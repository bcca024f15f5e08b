"""Errors of the InfluxDB I/O layer (:mod:`pipeline.influx`), one class per way a request fails.

Callers catch :class:`InfluxError` for any of them, :class:`InfluxUnavailableError`
to retry (server down, restarting, shutting down), :class:`InfluxQueryError`
for an answer that will not change on retry, :class:`InfluxAuthError` for
refused credentials.  All are re-exported by :mod:`pipeline.influx`.

>>> issubclass(InfluxAuthError, InfluxQueryError) and issubclass(InfluxQueryError, InfluxError)
True
>>> InfluxQueryError("bad", 400).code
400
"""

from __future__ import annotations

__all__ = [
    "InfluxError",
    "InfluxUnavailableError",
    "InfluxQueryError",
    "InfluxAuthError",
    "SHUTTING_DOWN",
]


class InfluxError(RuntimeError):
    """Base class of InfluxDB I/O errors."""


class InfluxUnavailableError(InfluxError):
    """The server cannot be reached (down, restarting, wrong host/port)."""


SHUTTING_DOWN = ("query engine shutdown", "query interrupted")
"""Errors influxd gives a query while it stops: the server is going away, not the query wrong."""


class InfluxQueryError(InfluxError):
    """The server answered with an error (bad query, unknown database, refused points...).

    ``code`` is the HTTP status when the server sent one (400 for a bad
    request or refused points), else None.
    """

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class InfluxAuthError(InfluxQueryError):
    """The server refused the credentials (HTTP 401) or the permission (403)."""
