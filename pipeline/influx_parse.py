"""Answers of InfluxDB read as arrays: :class:`ReadResult`, the CSV parsers, error text.

Pure: parses bytes that :class:`pipeline.influx.Influx` received, sends
nothing.  Reads ask for ``Accept: application/csv`` with ``epoch=ns``, whose
header is ``name,tags,time,<field>``; values that are not numbers, or beyond
:data:`pipeline.config.Z_MAX_ABS`, are dropped and counted, never turned into 0.
Re-exported by :mod:`pipeline.influx`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import Z_MAX_ABS
from .influx_errors import InfluxQueryError
from .line_protocol import _parse_tag_column

__all__ = ["ReadResult"]


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


def _short(b) -> str:
    """The error text of an answer (its JSON ``error`` if any), at most 500 characters.

    >>> _short(b'{"error":"database not found: x"}')
    'database not found: x'
    >>> len(_short("x" * 900))
    500
    """
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    b = str(b)
    try:
        b = json.loads(b).get("error", b)
    except (ValueError, AttributeError):
        pass
    return b[:500]


def _parse_csv(body: bytes, field_name: str, group_by: str | None) -> ReadResult:
    """A ``SELECT "field"::field`` CSV answer as a :class:`ReadResult` (bad values dropped, counted).

    >>> body = b"name,tags,time,v\\nm,,1,2.5\\nm,,2,oops\\nm,,3,1e300\\nm,,4,-1\\n"
    >>> r = _parse_csv(body, "v", None)
    >>> r.times.tolist(), r.values.tolist(), r.n_malformed, r.malformed_last
    ([1, 4], [2.5, -1.0], 2, {'': 3})
    """
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


def _parse_counts(body: bytes, group_by: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(groups, bucket starts in ns, counts)`` of a ``COUNT ... GROUP BY time()`` CSV answer.

    ``groups`` holds the ``group_by`` tag value per row, ``""`` without ``group_by``.
    """
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
