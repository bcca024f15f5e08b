"""InfluxDB 1.x I/O: settings, line protocol, batched writes, range reads.

This is the only module that talks to InfluxDB.  Serialization (line
protocol, names, quoting) is pure and unit-tested on exact bytes in
:mod:`pipeline.line_protocol`, re-exported here; transport is a thin layer
over the v1 client's HTTP session.  The other pure parts of this layer live
in small modules, re-exported here so that ``from pipeline.influx import ...``
keeps working: the errors in :mod:`pipeline.influx_errors`, the settings in
:mod:`pipeline.influx_settings`, the InfluxQL text in
:mod:`pipeline.influx_query`, the parsing of answers (:class:`ReadResult`) in
:mod:`pipeline.influx_parse`.  None of them opens a connection.

Traps avoided on purpose (measured on influxdb-python 5.3.2 + InfluxDB 1.6.7):

* ``influxdb.DataFrameClient`` writes timestamps 1000x too small under
  pandas 3 and fails to parse query results on pandas >= 2: never used.
* ``query(..., chunked=True)`` fails because the client asks for msgpack:
  never used.  Large ranges are read in time slices instead.
* Reads use ``Accept: application/csv`` (the fastest path, ~300k points/s)
  with ``epoch=ns`` so timestamps come back as exact integers.  The CSV
  answer silently omits "database not found", so databases are checked
  explicitly.
* Identifiers are always quoted with :func:`quote_ident` and values are
  always bound with ``params`` (``bind_params``); user input is never
  concatenated into InfluxQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from .influx_errors import (  # noqa: F401 - re-exported
    SHUTTING_DOWN,
    InfluxAuthError,
    InfluxError,
    InfluxQueryError,
    InfluxUnavailableError,
)
from .influx_parse import ReadResult, _parse_counts, _parse_csv, _short  # noqa: F401 - re-exported
from .influx_query import _select_query, _tag_conditions  # noqa: F401 - re-exported
from .influx_settings import InfluxSettings, _env_bool  # noqa: F401 - re-exported
from .line_protocol import (  # noqa: F401 - re-exported: the public API of this layer
    MAX_KEY_BYTES,
    NAME_KINDS,
    InfluxNameError,
    _parse_tag_column,
    check_name,
    check_times,
    encode_lines,
    escape_measurement,
    escape_tag,
    quote_ident,
    series_prefix,
)

WRITE_BATCH = 50_000
"""Points per write request (>= 10,000; 50k measured fastest here)."""
WRITE_PARALLEL = 2
"""Requests the stream's backfill keeps in flight at once for one slice's scores
(:meth:`Influx.write_lines` ``parallel``): influxd handles a request on about one core, so two
use two (bench/README.md, point 11).  Follow mode writes one request at a time."""
PARALLEL_MIN_LINES = 10_000
"""Lines per request at least before a write is split across requests in flight."""
WRITE_MAX_BYTES = 10_000_000
"""Bytes per write request at most: InfluxDB 1.6 answers 413 above its
``[http] max-body-size`` (25 MB by default), e.g. for 50k lines with 1 kB tags."""

__all__ = [
    "InfluxSettings",
    "Influx",
    "InfluxError",
    "InfluxUnavailableError",
    "InfluxQueryError",
    "InfluxAuthError",
    "InfluxNameError",
    "check_name",
    "check_times",
    "series_prefix",
    "quote_ident",
    "encode_lines",
    "escape_measurement",
    "escape_tag",
    "MAX_KEY_BYTES",
]


class Influx:
    """A connection to one InfluxDB 1.x server.

    Parameters
    ----------
    settings : InfluxSettings, optional
        Defaults to :meth:`InfluxSettings.from_env`.
    """

    def __init__(self, settings: InfluxSettings | None = None):
        self.settings = settings or InfluxSettings.from_env()
        s = self.settings
        # retries=1: the stream owns retry/backoff policy (the client's
        # default retries=3 would hide outages, retries=0 means forever).
        self.client = InfluxDBClient(
            host=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            ssl=s.ssl,
            verify_ssl=s.ssl,
            timeout=s.timeout,
            retries=1,
        )
        self._known_dbs: set[str] = set()
        self._peers: list[Influx] = []  # connections of parallel writes, opened when needed

    def close(self) -> None:
        """Close this connection and those of parallel writes (a later call opens new ones)."""
        for ix in [self, *self._peers]:
            ix.client.close()
        self._peers = []

    # -- low level ---------------------------------------------------------
    def _request(self, *args, **kwargs):
        try:
            return self.client.request(*args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise InfluxUnavailableError(
                f"cannot reach InfluxDB at {self.settings.url} ({type(e).__name__}). "
                "Is influxd running? Start a local one with `python -m pipeline.influxd start`, "
                "or point INFLUXDB_HOST / INFLUXDB_PORT at your server."
            ) from None
        except InfluxDBServerError as e:
            raise InfluxUnavailableError(f"InfluxDB at {self.settings.url} failed: {e}") from None
        except InfluxDBClientError as e:
            if e.code in (401, 403):
                raise InfluxAuthError(
                    f"InfluxDB at {self.settings.url} refused the "
                    f"{'credentials' if e.code == 401 else 'permission'} (HTTP {e.code}: "
                    f"{_short(e.content)}); set INFLUXDB_USERNAME and INFLUXDB_PASSWORD to a user "
                    "allowed to do this", e.code) from None
            raise InfluxQueryError(f"InfluxDB refused the request (HTTP {e.code}): "
                                   f"{_short(e.content)}", e.code) from None

    def ping(self) -> str:
        """Return the server version; raise :class:`InfluxUnavailableError` if down."""
        r = self._request("ping", expected_response_code=204)
        return r.headers.get("X-Influxdb-Version", "unknown")

    def query_json(self, q: str, db: str | None = None, params: Mapping | None = None) -> list:
        """Run one statement, return the JSON ``series`` list (raises on errors)."""
        p = {"q": q, "epoch": "ns"}
        if db:
            p["db"] = db
        if params:
            p["params"] = json.dumps(dict(params))
        method = "GET" if q.lstrip().upper().startswith(("SELECT", "SHOW")) else "POST"
        r = self._request("query", method=method, params=p, headers={"Accept": "application/json"})
        results = r.json().get("results", [])
        for res in results:
            if "error" in res:
                self._query_failed(str(res["error"]), q)
        return [s for res in results for s in res.get("series", [])]

    def query_csv(self, q: str, db: str, params: Mapping | None = None) -> bytes:
        p = {"q": q, "epoch": "ns", "db": db}
        if params:
            p["params"] = json.dumps(dict(params))
        r = self._request("query", method="GET", params=p, headers={"Accept": "application/csv"})
        body = r.content
        if body.startswith(b"error"):
            self._query_failed(_short(body[5:].strip()), q)
        return body

    def _query_failed(self, error: str, q: str):
        """Raise for a statement's error: a server shutting down is unavailable (retried)."""
        if error.strip(' ,"').startswith(SHUTTING_DOWN):
            raise InfluxUnavailableError(f"InfluxDB at {self.settings.url} is shutting down "
                                         f"({error.strip()})")
        raise InfluxQueryError(f"query failed: {error} (query: {q})")

    # -- databases -------------------------------------------------------
    def databases(self) -> list[str]:
        series = self.query_json("SHOW DATABASES")
        return [row[0] for s in series for row in s.get("values", [])]

    def create_database(self, db: str) -> None:
        check_name(db, "database")
        self.query_json(f"CREATE DATABASE {quote_ident(db)}")
        self._known_dbs.add(db)

    def drop_database(self, db: str) -> None:
        self.query_json(f"DROP DATABASE {quote_ident(db)}")
        self._known_dbs.discard(db)

    def require_database(self, db: str) -> None:
        """Raise :class:`InfluxQueryError` unless ``db`` exists (checked once)."""
        if db in self._known_dbs:
            return
        if db not in self.databases():
            raise InfluxQueryError(
                f"database {db!r} not found on {self.settings.url}; "
                "check the name, or load data first with `python -m pipeline.load`"
            )
        self._known_dbs.add(db)

    # -- writes ----------------------------------------------------------
    def write_lines(
        self, db: str, lines: Sequence[str], rp: str | None = None, batch_size: int = WRITE_BATCH,
        parallel: int = 1,
    ) -> int:
        """Write line-protocol lines (ns precision) in batches; return the count.

        Each batch is one request of at most ``batch_size`` lines and
        :data:`WRITE_MAX_BYTES` bytes; a failure raises after the batches
        before it were written (callers that must not half-write keep their
        checkpoint behind the last successful call).  The exception's
        ``written`` attribute holds the number of lines of those batches
        (InfluxDB may also have kept part of the failing batch, or of a later one).

        ``parallel`` > 1 cuts the lines into that many consecutive parts (of at
        least :data:`PARALLEL_MIN_LINES` lines, so a short write stays one part),
        written at the same time on connections of their own; it returns (or
        raises the first part's error) when every part is answered.  Points are
        independent, so the order they arrive in does not matter.  One call at a
        time per :class:`Influx`, like every other method.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        n_parts = max(1, min(parallel, len(lines) // PARALLEL_MIN_LINES))
        if n_parts == 1:
            return self._write_part(db, lines, rp, batch_size)
        cuts = [len(lines) * i // n_parts for i in range(n_parts + 1)]
        parts = [lines[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        while len(self._peers) < n_parts - 1:
            self._peers.append(Influx(self.settings))
        errors: list[tuple[int, InfluxError]] = []
        with ThreadPoolExecutor(n_parts - 1, thread_name_prefix="influx-write") as pool:
            later = [pool.submit(peer._write_part, db, part, rp, batch_size)
                     for peer, part in zip(self._peers[: n_parts - 1], parts[1:], strict=True)]
            try:
                self._write_part(db, parts[0], rp, batch_size)
            except InfluxError as e:
                errors.append((0, e))
        # leaving the block waited for every part, whatever part 0 raised
        for i, f in enumerate(later, 1):
            e = f.exception()
            if isinstance(e, InfluxError):
                errors.append((i, e))
            elif e is not None:
                raise e
        if errors:
            i, e = errors[0]
            e.written = cuts[i] + getattr(e, "written", 0)
            raise e
        return len(lines)

    def _write_part(self, db: str, lines: Sequence[str], rp: str | None, batch_size: int) -> int:
        """:meth:`write_lines` on this connection, one request after the other."""
        params = {"db": db, "precision": "n"}
        if rp:
            params["rp"] = rp
        n = 0
        i = 0
        while i < len(lines):
            chunk = lines[i : i + batch_size]
            body = ("\n".join(chunk) + "\n").encode("utf-8")
            while len(body) > WRITE_MAX_BYTES and len(chunk) > 1:  # long lines: fewer per request
                chunk = chunk[: max(1, int(len(chunk) * WRITE_MAX_BYTES / len(body) * 0.95))]
                body = ("\n".join(chunk) + "\n").encode("utf-8")
            i += len(chunk)
            try:
                self._request(
                    "write",
                    method="POST",
                    params=params,
                    data=body,
                    expected_response_code=204,
                    headers={"Content-Type": "application/octet-stream"},
                )
            except InfluxError as e:
                e.written = n
                raise
            n += len(chunk)
        return n

    def write_series(
        self,
        db: str,
        measurement: str,
        times_ns: np.ndarray,
        fields: Mapping[str, np.ndarray],
        tags: Mapping[str, str] | None = None,
        rp: str | None = None,
        batch_size: int = WRITE_BATCH,
    ) -> int:
        """Encode and write points of one series; return the number written."""
        series_prefix(measurement, tags, list(fields))  # bad names: nothing written
        check_times(times_ns)
        total = 0
        for i in range(0, len(times_ns), batch_size):
            sl = slice(i, i + batch_size)
            lines = encode_lines(
                measurement, times_ns[sl], {k: np.asarray(v)[sl] for k, v in fields.items()}, tags
            )
            try:
                total += self.write_lines(db, lines, rp=rp, batch_size=batch_size)
            except InfluxError as e:
                e.written = total + getattr(e, "written", 0)
                raise
        return total

    # -- reads -----------------------------------------------------------
    def read_field(
        self,
        db: str,
        measurement: str,
        field_name: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        tags: Mapping[str, str] | None = None,
        group_by: str | None = None,
        rp: str | None = None,
        include_start: bool = True,
        limit: int | None = None,
    ) -> ReadResult:
        """Read one field over ``[start_ns, end_ns)`` (``(start, end)`` if not ``include_start``).

        Tag filters are bound as parameters.  With ``group_by`` the result
        carries the tag value of every point in ``groups``.
        """
        self.require_database(db)
        q, params = _select_query(
            measurement, field_name, start_ns, end_ns, tags, group_by, rp, include_start, limit
        )
        body = self.query_csv(q, db, params)
        return _parse_csv(body, field_name, group_by)

    def last_time(
        self, db: str, measurement: str, field_name: str, tags: Mapping[str, str] | None = None
    ) -> int | None:
        """Timestamp (ns) of the newest point of a field, or None."""
        self.require_database(db)
        conds, params = _tag_conditions(tags)
        q = f"SELECT LAST({quote_ident(field_name)}::field) FROM {quote_ident(measurement)}"
        if conds:
            q += " WHERE " + " AND ".join(conds)
        series = self.query_json(q, db, params)
        if not series:
            return None
        return int(series[0]["values"][0][0])

    def first_time(
        self,
        db: str,
        measurement: str,
        field_name: str,
        start_ns: int,
        end_ns: int | None = None,
        tags: Mapping[str, str] | None = None,
        include_start: bool = True,
    ) -> int | None:
        """Timestamp (ns) of the first point at or after ``start_ns`` (before ``end_ns``), or None.

        One query; lets range readers jump over long empty stretches.
        """
        self.require_database(db)
        # a raw LIMIT 1, not FIRST(): FIRST() sees only the field type of the first shard
        q, params = _select_query(measurement, field_name, start_ns, end_ns, tags, None, None,
                                  include_start, 1)
        series = self.query_json(q, db, params)
        if not series:
            return None
        return int(series[0]["values"][0][0])

    def tag_values(self, db: str, measurement: str, key: str,
                   tags: Mapping[str, str] | None = None) -> list[str]:
        """All values of tag ``key`` in ``measurement`` (for fan-out), optionally within ``tags``."""
        self.require_database(db)
        q = f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(key)}"
        conds, params = _tag_conditions(tags)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        series = self.query_json(q, db, params)
        return sorted({row[1] for s in series for row in s.get("values", [])})

    def count_buckets(self, db: str, measurement: str, field_name: str, start_ns: int,
                      end_ns: int, every_ns: int, tags: Mapping[str, str] | None = None,
                      group_by: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points per time bucket of ``every_ns`` over ``[start_ns, end_ns)`` (per tag value).

        One ``COUNT ... GROUP BY time(), tag fill(none)`` query, read as CSV.
        Returns ``(groups, bucket starts in ns, counts)``; empty buckets are
        left out; ``groups`` holds ``""`` without ``group_by``.
        """
        self.require_database(db)
        conds, params = _tag_conditions(tags)
        conds = ["time >= $t_start", "time < $t_end", *conds]
        params.update(t_start=int(start_ns), t_end=int(end_ns))
        by = f"time({int(every_ns)}ns)" + (f", {quote_ident(group_by)}" if group_by else "")
        q = (f"SELECT COUNT({quote_ident(field_name)}::field) FROM {quote_ident(measurement)} "
             f"WHERE {' AND '.join(conds)} GROUP BY {by} fill(none)")
        body = self.query_csv(q, db, params)
        return _parse_counts(body, group_by)

    def count(self, db: str, measurement: str, field_name: str, tags=None) -> int:
        conds, params = _tag_conditions(tags)
        q = f"SELECT COUNT({quote_ident(field_name)}::field) FROM {quote_ident(measurement)}"
        if conds:
            q += " WHERE " + " AND ".join(conds)
        series = self.query_json(q, db, params)
        return int(series[0]["values"][0][1]) if series else 0
