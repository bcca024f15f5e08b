"""InfluxDB 1.x I/O: settings, line protocol, batched writes, range reads.

This is the only module that talks to InfluxDB.  Serialization (line
protocol, names, quoting) is pure and unit-tested on exact bytes in
:mod:`pipeline.line_protocol`, re-exported here; transport is a thin layer
over the v1 client's HTTP session.

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

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from .config import Z_MAX_ABS
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


# --------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------
def _env_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"INFLUXDB_SSL must be one of true/false/1/0/yes/no, got {value!r}")


@dataclass(frozen=True)
class InfluxSettings:
    """Connection settings.  Credentials come from the environment.

    =====================  =======================  ============
    field                  environment variable     default
    =====================  =======================  ============
    host                   ``INFLUXDB_HOST``        127.0.0.1
    port                   ``INFLUXDB_PORT``        8086
    username               ``INFLUXDB_USERNAME``    (none)
    password               ``INFLUXDB_PASSWORD``    (none)
    ssl                    ``INFLUXDB_SSL``         false
    timeout (s)            ``INFLUXDB_TIMEOUT``     30
    =====================  =======================  ============

    Examples
    --------
    >>> s = InfluxSettings.from_env({"INFLUXDB_PORT": "9999"}, host="db")
    >>> s.url
    'http://db:9999'
    >>> "secret" in repr(InfluxSettings(password="secret"))
    False
    """

    host: str = "127.0.0.1"
    port: int = 8086
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> InfluxSettings:
        """Settings from ``environ`` (default ``os.environ``), then ``overrides`` (flags).

        ``None`` overrides are ignored, so argparse defaults of ``None`` fall
        through to the environment.
        """
        env = os.environ if environ is None else environ
        port_s = env.get("INFLUXDB_PORT", "8086")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"INFLUXDB_PORT must be an integer port, got {port_s!r}") from None
        timeout_s = env.get("INFLUXDB_TIMEOUT", "30")
        try:
            timeout = float(timeout_s)
        except ValueError:
            raise ValueError(f"INFLUXDB_TIMEOUT must be seconds, got {timeout_s!r}") from None
        values = dict(
            host=env.get("INFLUXDB_HOST", "127.0.0.1"),
            port=port,
            username=env.get("INFLUXDB_USERNAME") or None,
            password=env.get("INFLUXDB_PASSWORD") or None,
            ssl=_env_bool(env.get("INFLUXDB_SSL")),
            timeout=timeout,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not 0 < int(values["port"]) < 65536:
            raise ValueError(f"port must be in 1..65535, got {values['port']}")
        return cls(**values)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"


# --------------------------------------------------------------------------
# transport
# --------------------------------------------------------------------------
@dataclass
class ReadResult:
    """Points of one field read from InfluxDB.

    ``times`` are int64 ns (exact, ascending within each group), ``values``
    float64.  ``groups`` holds the tag value per point when grouped by a
    tag (else ``None``).  ``n_malformed`` counts values that were not
    numbers (they are dropped, never turned into 0); ``malformed_last``
    maps each group (``""`` when not grouped) to the time of its last
    dropped point, so a reader can move past them.
    """

    times: np.ndarray
    values: np.ndarray
    groups: np.ndarray | None = None
    n_malformed: int = 0
    malformed_last: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)

    def by_group(self) -> dict[str, ReadResult]:
        """``{str(tag value): ReadResult}`` in order of first appearance, points in read order.

        One stable sort by group code: O(n log n), whatever the number of
        groups.  ``n_malformed`` stays on the whole result (the dropped points
        are not attributed to a group).
        """
        if self.groups is None:
            return {"": self}
        codes, uniques = pd.factorize(self.groups, use_na_sentinel=False)
        order = np.argsort(codes, kind="stable")  # keeps each group's read (time) order
        ends = np.cumsum(np.bincount(codes, minlength=len(uniques)))
        out = {}
        start = 0
        for g, end in zip(uniques, ends.tolist(), strict=True):
            idx = order[start:end]
            out[str(g)] = ReadResult(self.times[idx], self.values[idx])
            start = end
        return out


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
        self, db: str, lines: Sequence[str], rp: str | None = None, batch_size: int = WRITE_BATCH
    ) -> int:
        """Write line-protocol lines (ns precision) in batches; return the count.

        Each batch is one request of at most ``batch_size`` lines and
        :data:`WRITE_MAX_BYTES` bytes; a failure raises after the batches
        before it were written (callers that must not half-write keep their
        checkpoint behind the last successful call).  The exception's
        ``written`` attribute holds the number of lines of those batches
        (InfluxDB may also have kept part of the failing batch).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
    def _select(
        self,
        db: str,
        measurement: str,
        field_name: str,
        start_ns: int | None,
        end_ns: int | None,
        tags: Mapping[str, str] | None,
        group_by: str | None,
        rp: str | None,
        include_start: bool,
        limit: int | None,
    ) -> tuple[str, dict]:
        src = quote_ident(measurement)
        if rp:
            src = f"{quote_ident(rp)}.{src}"
        conds, params = [], {}
        if start_ns is not None:
            conds.append("time >= $t_start" if include_start else "time > $t_start")
            params["t_start"] = int(start_ns)
        if end_ns is not None:
            conds.append("time < $t_end")
            params["t_end"] = int(end_ns)
        tag_conds, tag_params = _tag_conditions(tags)
        conds += tag_conds
        params.update(tag_params)
        q = f"SELECT {quote_ident(field_name)}::field FROM {src}"
        if conds:
            q += " WHERE " + " AND ".join(conds)
        if group_by:
            q += f" GROUP BY {quote_ident(group_by)}"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return q, params

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
        q, params = self._select(
            db, measurement, field_name, start_ns, end_ns, tags, group_by, rp, include_start, limit
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
        q, params = self._select(db, measurement, field_name, start_ns, end_ns, tags, None, None,
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
        empty = (np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64))
        if not body.strip():
            return empty
        df = pd.read_csv(io.BytesIO(body), header=0, names=["name", "tags", "time", "count"],
                         dtype={"name": str, "tags": str, "time": np.int64, "count": np.int64},
                         keep_default_na=False, na_values=[], engine="c")
        if group_by:
            tagcol = df["tags"].astype(str)
            uniq = {t: _parse_tag_column(t).get(group_by, "") for t in pd.unique(tagcol)}
            groups = tagcol.map(uniq).to_numpy(object)
        else:
            groups = np.full(len(df), "", object)
        return groups, df["time"].to_numpy(np.int64), df["count"].to_numpy(np.int64)

    def count(self, db: str, measurement: str, field_name: str, tags=None) -> int:
        conds, params = _tag_conditions(tags)
        q = f"SELECT COUNT({quote_ident(field_name)}::field) FROM {quote_ident(measurement)}"
        if conds:
            q += " WHERE " + " AND ".join(conds)
        series = self.query_json(q, db, params)
        return int(series[0]["values"][0][1]) if series else 0


def _tag_conditions(tags: Mapping[str, str] | None) -> tuple[list[str], dict]:
    """``"key"::tag = $tagN`` conditions with bound values: user input never enters the query text.

    ``::tag`` keeps a tag key apart from a field key of the same name (the
    field selected is written ``"name"::field`` for the same reason).

    >>> _tag_conditions({"source": "a'b"})
    (['"source"::tag = $tag0'], {'tag0': "a'b"})
    """
    conds, params = [], {}
    for i, (k, v) in enumerate(sorted((tags or {}).items())):
        conds.append(f"{quote_ident(k)}::tag = $tag{i}")
        params[f"tag{i}"] = str(v)
    return conds, params


def _short(b) -> str:
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    b = str(b)
    try:
        b = json.loads(b).get("error", b)
    except (ValueError, AttributeError):
        pass
    return b[:500]


def _parse_csv(body: bytes, field_name: str, group_by: str | None) -> ReadResult:
    if not body.strip():
        return ReadResult(np.empty(0, np.int64), np.empty(0, np.float64),
                          np.empty(0, object) if group_by else None)
    # the header is name,tags,time,<field>; the field column is taken by position, since a
    # field key may itself be "name", "tags" or "value"
    header = next(csv.reader([body[:body.find(b"\n")].decode("utf-8", "replace")]))
    if header[:3] != ["name", "tags", "time"] or header[3:] != [field_name]:
        raise InfluxQueryError(f"unexpected CSV columns from InfluxDB: {header}")
    df = pd.read_csv(
        io.BytesIO(body),
        header=0,
        names=["name", "tags", "time", "value"],
        dtype={"name": str, "tags": str, "time": np.int64},
        keep_default_na=False,
        na_values=[],
        engine="c",
    )
    raw = df["value"]
    if raw.dtype.kind == "f":
        values = raw.to_numpy(np.float64)
        bad = ~(np.abs(values) <= Z_MAX_ABS)
    else:
        # strings, booleans, empty cells: anything that is not a finite number
        num = pd.to_numeric(raw, errors="coerce")
        values = num.to_numpy(np.float64, na_value=np.nan)
        bad = ~(np.abs(values) <= Z_MAX_ABS)  # not a number, or beyond the detectors' range
    times = df["time"].to_numpy(np.int64)
    groups = None
    if group_by:
        tagcol = df["tags"].astype(str)
        uniq = {t: _parse_tag_column(t).get(group_by, "") for t in pd.unique(tagcol)}
        groups = tagcol.map(uniq).to_numpy(object)
    n_bad = int(bad.sum())
    malformed_last = {}
    if n_bad:
        if groups is None:
            malformed_last[""] = int(times[bad].max())
        else:
            last = pd.Series(times[bad]).groupby(groups[bad]).max()
            malformed_last = {str(g): int(t) for g, t in last.items()}
        keep = ~bad
        times, values = times[keep], values[keep]
        if groups is not None:
            groups = groups[keep]
    return ReadResult(times, values, groups, n_bad, malformed_last)
