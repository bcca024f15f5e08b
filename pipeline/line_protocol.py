"""Line protocol and InfluxQL names, pure: what InfluxDB 1.6 stores and reads back unchanged.

Serialization is unit-tested on exact bytes; :mod:`pipeline.influx` (the
transport) re-exports the public names.  The rules were measured on a real
influxd 1.6.7 (``tests/test_names.py``, ``docs/names.md``):

* a backslash goes before each special character (``,`` and space in a
  measurement; ``,``, ``=`` and space in tag keys, tag values and field
  keys) and nowhere else -- 1.6 keeps a backslash that is not before a
  special character, so ``C:\\temp`` is written as it is;
* names 1.6 would lose, rename or misread are refused before anything is
  encoded (:func:`check_name`);
* the CSV ``tags`` column is unescaped exactly (:func:`_parse_tag_column`)
  and identifiers are quoted exactly (:func:`quote_ident`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import orjson

from .config import MAX_TIME_NS, MIN_TIME_NS

__all__ = [
    "InfluxNameError",
    "MAX_KEY_BYTES",
    "NAME_KINDS",
    "check_name",
    "check_times",
    "series_prefix",
    "escape_measurement",
    "escape_tag",
    "encode_lines",
    "float_texts",
    "fits_float32",
    "quote_ident",
]


# --------------------------------------------------------------------------
# names (pure): what InfluxDB 1.6 stores and reads back unchanged
# --------------------------------------------------------------------------
MAX_KEY_BYTES = 65535
"""InfluxDB's limit on a series key: escaped measurement and tags, ``#!~#`` and the field key."""

NAME_KINDS = ("measurement", "tag key", "tag value", "field key", "database")

_LOST_AFTER_BACKSLASH = {"measurement": ',= "', "tag key": " ", "tag value": " ",
                         "field key": ',= "'}
"""Per kind of name, the characters a backslash must not stand before (see :func:`check_name`)."""
_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESC = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_RESERVED_KEYS = ("time",)


class InfluxNameError(ValueError):
    """A name that InfluxDB 1.x would not store and read back unchanged (says why and what to do)."""


def _name_problem(name, kind: str) -> str | None:
    """Why ``name`` cannot round-trip as a ``kind`` (None if it can)."""
    if not isinstance(name, str):
        return f"it must be a string, not {type(name).__name__}"
    if name == "":
        return "it is empty (InfluxDB has no empty names)"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (it cannot be encoded as UTF-8)"
    if kind == "database":
        if name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
            return ("InfluxDB 1.x refuses database names that are '.' or '..' or contain '/', "
                    "a backslash or a character that is not printable (tab, line break...)")
        return None
    if "\n" in name:
        return "it contains a line break, which ends a line of the line protocol"
    if name.endswith("\\"):
        return ("it ends with a backslash, which InfluxDB reads as escaping the separator after "
                "it (the point is refused or stored under another name)")
    lost = _LOST_AFTER_BACKSLASH[kind]
    for i in range(len(name) - 1):
        if name[i] == "\\" and name[i + 1] in lost:
            c = name[i + 1]
            why = ("InfluxDB splits a request into lines as if that space were not escaped, so "
                   "this line and the next ones in a batch are misread" if kind.startswith("tag")
                   else f"InfluxDB 1.6 reads that pair as an escaped {c!r}, so the backslash is "
                   "lost or the line is refused")
            return f"it has a backslash directly before {c!r} (position {i}); {why}"
    if "\x00" in name and kind != "tag value":
        return ("it contains a NUL character, where InfluxQL's parser stops reading, so it could "
                "not be queried")
    if kind == "measurement" and name[0] == "#":
        return "it starts with '#', so InfluxDB reads the whole line as a comment and stores nothing"
    if kind in ("measurement", "field key") and name[0] == "\t":
        return f"it starts with {name[0]!r}, which InfluxDB strips from the start of a {kind}"
    if kind in ("tag key", "field key") and name in _RESERVED_KEYS:
        return f"InfluxDB 1.x refuses a {kind} named {name!r} (it is the time column)"
    return None


def check_name(name, kind: str = "measurement") -> str:
    r"""Return ``name`` if InfluxDB 1.6 stores it and reads it back unchanged, else raise.

    Rules (each checked against a real influxd 1.6.7 in ``tests/test_names.py``):

    * a non-empty string of valid Unicode without a line break (``\n`` ends a
      line of the line protocol);
    * no trailing backslash (it would escape the separator after it);
    * in a measurement or field key, no backslash directly before ``,``,
      space, ``=`` or ``"``: InfluxDB reads the pair as an escape, so the
      backslash is lost (measurement) or the line refused (field key);
    * in a tag key or value, no backslash directly before a space: the line
      splitter of a batch takes that space for the end of the tags and
      misreads this line and the next ones.  A backslash anywhere else is
      kept as it is (``C:\temp`` and ``a\,b`` are fine);
    * a measurement must not start with ``#`` (the line is a comment);
    * a measurement or field key must not start with a tab (stripped);
    * only a tag value may contain NUL (InfluxQL's parser stops there; tag
      values are bound as parameters, never parsed);
    * a tag key or field key must not be ``time``;
    * a database name must be printable, without ``/`` or backslash, and not
      ``.`` or ``..`` (InfluxDB answers "invalid name").

    Quotes, ``#`` after the start, unicode and InfluxQL keywords are fine.

    Parameters
    ----------
    name : str
    kind : {"measurement", "tag key", "tag value", "field key", "database"}

    Raises
    ------
    InfluxNameError
        Naming the kind, the name, the reason and what to do.

    Examples
    --------
    >>> check_name("C:\\temp, room 2", "tag value")
    'C:\\temp, room 2'
    >>> check_name("#cpu")
    Traceback (most recent call last):
    ...
    pipeline.line_protocol.InfluxNameError: measurement '#cpu' cannot be written to InfluxDB and read back under the same name: it starts with '#', so InfluxDB reads the whole line as a comment and stores nothing; choose another measurement
    """
    if kind not in NAME_KINDS:
        raise ValueError(f"kind must be one of {NAME_KINDS}, got {kind!r}")
    problem = _name_problem(name, kind)
    if problem is not None:
        raise InfluxNameError(f"{kind} {name!r} cannot be written to InfluxDB and read back under "
                              f"the same name: {problem}; choose another {kind}")
    return name


def escape_measurement(name: str) -> str:
    r"""Escape a measurement name for line protocol (after :func:`check_name`).

    Only ``,`` and space are escaped; a backslash is kept as it is, because
    InfluxDB 1.6 keeps a backslash that is not before a special character.

    >>> escape_measurement("my ekg,1")
    'my\\ ekg\\,1'
    >>> escape_measurement("C:\\data")
    'C:\\data'
    """
    return check_name(name, "measurement").translate(_MEAS_ESC)


def escape_tag(text: str, kind: str = "tag value") -> str:
    r"""Escape a tag key, tag value or field key for line protocol (after :func:`check_name`).

    Only ``,``, ``=`` and space are escaped; a backslash is kept as it is.

    >>> escape_tag("a b=c")
    'a\\ b\\=c'
    >>> escape_tag("C:\\temp")
    'C:\\temp'
    """
    return check_name(text, kind).translate(_TAG_ESC)


def series_prefix(measurement: str, tags: Mapping[str, str] | None = None,
                  field_keys: Sequence[str] = ()) -> str:
    r"""The escaped ``measurement[,tag=value...]`` of a line, after checking every name.

    Tags with an empty or ``None`` value are left out (InfluxDB has no empty
    tag values).  Raises :class:`InfluxNameError` for a name that cannot
    round-trip (:func:`check_name`), or when the series key with one of
    ``field_keys`` would exceed :data:`MAX_KEY_BYTES`.

    >>> series_prefix("ekg", {"b": "x y", "a": "1", "c": ""})
    'ekg,a=1,b=x\\ y'
    """
    prefix = escape_measurement(measurement)
    for k in sorted(tags or {}):
        v = tags[k]
        if v is None or v == "":
            continue  # InfluxDB has no empty tag values
        prefix += f",{escape_tag(k, 'tag key')}={escape_tag(str(v), 'tag value')}"
    longest = max((len(escape_tag(f, "field key").encode()) for f in field_keys), default=0)
    size = len(prefix.encode()) + len("#!~#") + longest
    if size > MAX_KEY_BYTES:
        raise InfluxNameError(
            f"the series key of measurement {measurement[:40]!r}... is {size} bytes with its tags "
            f"and field key (escaped); InfluxDB refuses more than {MAX_KEY_BYTES}: shorten the names")
    return prefix


# --------------------------------------------------------------------------
# line protocol (pure)
# --------------------------------------------------------------------------
def check_times(times_ns) -> None:
    """Raise ``ValueError`` unless every time is within InfluxDB's range.

    The range is :data:`pipeline.config.MIN_TIME_NS` ..
    :data:`~pipeline.config.MAX_TIME_NS` (1677-09-21T00:12:43.145224194Z ..
    2262-04-11T23:47:16.854775806Z); InfluxDB 1.6 refuses a point one
    nanosecond outside it.

    >>> check_times(np.array([0, 2**63 - 2]))
    >>> check_times(np.array([2**63 - 1]))
    Traceback (most recent call last):
    ...
    ValueError: time 9223372036854775807 ns (index 0) is outside the range InfluxDB stores (-9223372036854775806 .. 9223372036854775806 ns, 1677-09-21T00:12:43.145224194Z .. 2262-04-11T23:47:16.854775806Z)
    """
    t = np.asarray(times_ns)
    if t.size == 0 or (t.min() >= MIN_TIME_NS and t.max() <= MAX_TIME_NS):
        return
    bad = (t < MIN_TIME_NS) | (t > MAX_TIME_NS)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"time {int(t[i])} ns (index {i}) is outside the range InfluxDB stores "
                         f"({MIN_TIME_NS} .. {MAX_TIME_NS} ns, 1677-09-21T00:12:43.145224194Z .. "
                         "2262-04-11T23:47:16.854775806Z)")



_BOOL_TEXT = np.array(["false", "true"], dtype=object)
_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


def fits_float32(values: np.ndarray) -> bool:
    """Whether every finite value keeps float32's full precision: none beyond ±3.4e38, and
    none but 0 below float32's smallest normal (1.2e-38).

    >>> fits_float32(np.array([1 / 3, np.nan, 0.0])), fits_float32(np.array([1e300]))
    (True, False)
    """
    mag = np.abs(values[np.isfinite(values)])
    return not (len(mag) and (mag.max() > _F32_MAX or ((mag < _F32_TINY) & (mag > 0)).any()))


def float_texts(values, single: bool = False) -> list[str]:
    """The shortest decimal text of each float that reads back as the same float64, bit for bit.

    The digits of ``repr``, 5-7x faster (orjson's Ryu-style formatter: one
    call for the whole column); it may write an exponent differently (orjson
    3.13: ``1e-05`` as ``0.00001``, ``1e-09`` as ``1e-9``), which InfluxDB
    reads as the same value.  Non-finite values come out as ``null``: callers
    skip them.

    ``single=True`` writes the shortest text of each value rounded to float32
    instead (about 7 significant digits, at most 9 in the text; what InfluxDB
    reads back is within one float32 step of the value, a relative 1.2e-7): a
    third of the bytes, which influxd ingests faster.  A column that float32
    cannot hold to its full precision (:func:`fits_float32`) is written at
    float64, whole.

    >>> float_texts(np.array([0.1, -2.5, 1 / 3]))
    ['0.1', '-2.5', '0.3333333333333333']
    >>> float_texts(np.array([0.1, -2.5, 1 / 3]), single=True)
    ['0.1', '-2.5', '0.33333334']
    >>> x = np.array([1e-05, -2.5e-09, 1e+16, 5e-324])
    >>> [float(t) for t in float_texts(x)] == x.tolist()
    True
    """
    arr = np.ascontiguousarray(values, dtype=np.float64).ravel()
    return _texts(arr, single and fits_float32(arr))


def _texts(arr: np.ndarray, as_float32: bool) -> list[str]:
    """:func:`float_texts` of a float64 array, at float32's digits when ``as_float32`` (the
    caller has checked :func:`fits_float32`)."""
    if len(arr) == 0:
        return []
    if as_float32:
        arr = arr.astype(np.float32)
    return orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")


def _field_formatter(values: np.ndarray, as_float32: bool = False):
    """Return (list of per-point strings or None for missing) for one field column; floats
    at float32's digits with ``as_float32``, which :func:`_render` decides once per column
    (:func:`float_texts`)."""
    if values.dtype == bool:
        return _BOOL_TEXT[values.view(np.uint8)].tolist()
    if np.issubdtype(values.dtype, np.integer):
        return [f"{v}i" for v in values.tolist()]
    if np.issubdtype(values.dtype, np.floating):
        texts = _texts(np.ascontiguousarray(values, dtype=np.float64).ravel(), as_float32)
        finite = np.isfinite(values)
        if finite.all():
            return texts
        return [t if ok else None for t, ok in zip(texts, finite.tolist(), strict=True)]
    # strings
    return ['"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values.tolist()]


def encode_lines(
    measurement: str,
    times_ns: np.ndarray,
    fields: Mapping[str, np.ndarray],
    tags: Mapping[str, str] | None = None,
    single: bool = False,
) -> list[str]:
    r"""Encode points of one series as line-protocol lines (ns precision).

    Float fields that are NaN or infinite are omitted from their line
    (line protocol cannot carry them); a point with no field left is
    dropped.  Integer fields get the ``i`` suffix, booleans ``true/false``.
    Every name is checked first (:func:`series_prefix`), and so is the time
    range (:func:`check_times`): nothing is encoded that InfluxDB would
    refuse or store under another name.

    Parameters
    ----------
    measurement : str
    times_ns : array of int64
        Timestamps, nanoseconds since the epoch.
    fields : mapping of field key -> array
        One array per field, each as long as ``times_ns``.
    tags : mapping, optional
        Tags shared by all points.
    single : bool, default=False
        Write floats at float32's digits (:func:`float_texts`), as the stream does at
        ``[output] precision = "float32"``; default: every float64 digit.

    Examples
    --------
    >>> import numpy as np
    >>> encode_lines("ekg", np.array([1, 2]), {"value": np.array([0.5, np.nan]),
    ...              "n": np.array([3, 4])}, {"source": "p 1"})
    ['ekg,source=p\\ 1 n=3i,value=0.5 1', 'ekg,source=p\\ 1 n=4i 2']
    """
    times, cols = _columns(times_ns, fields)
    return _render(series_prefix(measurement, tags, list(fields)), cols, times, single)


def _columns(times_ns, fields):
    """Checked times and ``[(escaped key=, array)]`` in key order, for :func:`_render`."""
    times = np.asarray(times_ns)
    if times.dtype.kind not in "iu":
        raise ValueError(f"times_ns must be integers (ns since epoch), got dtype {times.dtype}")
    check_times(times)
    n = len(times)
    cols = []
    for key in sorted(fields):
        arr = np.asarray(fields[key])
        if arr.shape != (n,):
            raise ValueError(f"field {key!r} has shape {arr.shape}, expected ({n},)")
        cols.append((escape_tag(key, "field key") + "=", arr))
    return times, cols


def _literal(arr: np.ndarray, as_float32: bool = False) -> str | None:
    """The one formatted value of a column whose values are all the same, else None."""
    if len(arr) == 0 or arr.dtype.kind not in "bf" or arr[0] != arr[-1]:
        return None
    if arr.dtype.kind == "f" and not (np.isfinite(arr[0]) and (arr == arr[0]).all()):
        return None
    if arr.dtype.kind == "b" and not (arr == arr[0]).all():
        return None
    return _field_formatter(arr[:1], as_float32)[0]


def _render(prefix, cols: list, times: np.ndarray, single: bool = False) -> list[str]:
    """Lines for columns ``[(key=, array)]``: rows are grouped by which fields they lack (NaN
    floats), each group rendered with one %-template in which constant columns are literals;
    the lines come back in time order.  ``prefix`` is one series prefix, or an object array of
    one per row (many keys at once: :func:`pipeline.fanout.encode_rows`); ``single``: floats
    at float32's digits (:func:`float_texts`)."""
    n = len(times)
    per_row = not isinstance(prefix, str)
    if single:  # decided per column, not per group of rows below: a column's digits are one
        single = [arr.dtype.kind == "f" and fits_float32(arr) for _, arr in cols]
    else:
        single = [False] * len(cols)
    pattern = np.zeros(n, np.int64)
    for k, (_, arr) in enumerate(cols):
        if arr.dtype.kind == "f":
            pattern |= (~np.isfinite(arr)).astype(np.int64) << k
    whole = not pattern.any()
    out = None if whole else np.empty(n, dtype=object)
    for pat in ([0] if whole else np.unique(pattern).tolist()):
        rows = None if whole else np.flatnonzero(pattern == pat)
        present = [(key, arr if rows is None else arr[rows], single[k])
                   for k, (key, arr) in enumerate(cols) if not pat & (1 << k)]
        if not present:
            continue
        parts, values = [], []
        if per_row:
            values.append((prefix if rows is None else prefix[rows]).tolist())
        for key, arr, one in present:
            lit = _literal(arr, one)
            if lit is not None:
                parts.append((key + lit).replace("%", "%%"))
            else:
                parts.append(key.replace("%", "%%") + "%s")
                values.append(_field_formatter(arr, one))
        head = "%s" if per_row else prefix.replace("%", "%%")
        template = head + " " + ",".join(parts) + " %s"
        t = (times if rows is None else times[rows]).tolist()
        lines = [template % row for row in zip(*values, t, strict=True)]
        if out is None:
            return lines
        out[rows] = lines
    return [] if out is None else [x for x in out.tolist() if x is not None]


_IDENT_ESC = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def quote_ident(name: str) -> str:
    r"""Quote an InfluxQL identifier (database, measurement, field, tag key), exactly.

    InfluxQL's quoted identifiers know four escapes: ``\\``, ``\"``, ``\'``
    and ``\n``; every other character stands for itself.  So any non-empty
    name is quoted exactly: ``\``, ``"`` and a line break are escaped, the
    rest (``'``, spaces, tabs, keywords such as ``select``) is kept.  Only NUL
    cannot be quoted: the parser stops reading there.

    >>> quote_ident('my "db"')
    '"my \\"db\\""'
    >>> print(quote_ident("C:\\temp"))
    "C:\\temp"
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"an InfluxQL identifier must be a non-empty string without NUL "
                         f"(InfluxQL's parser stops there), got {name!r}")
    return '"' + name.translate(_IDENT_ESC) + '"'


_TAG_UNESC = re.compile(r"\\([,= ])")
_TAG_SEP = re.compile(r"(?<!\\),")
_TAG_EQ = re.compile(r"(?<!\\)=")


def _unescape_tag(text: str) -> str:
    return _TAG_UNESC.sub(r"\1", text) if "\\" in text else text


def _parse_tag_column(tags: str) -> dict[str, str]:
    r"""Parse the CSV ``tags`` column: ``k=v,k2=v2`` as InfluxDB 1.6 writes it.

    InfluxDB puts a backslash before every ``,``, ``=`` and space of a tag key
    or value and leaves every other character, backslashes included, as it
    is.  So a separator is a ``,`` or ``=`` without a backslash before it,
    and unescaping removes exactly one backslash before ``,``, ``=`` or space.
    (A stored tag key or value never ends with a backslash: 1.6 cannot write
    one.)

    >>> _parse_tag_column(r"sensor=C:\temp,k\,2=a\=b\ c")
    {'sensor': 'C:\\temp', 'k,2': 'a=b c'}
    """
    out = {}
    if not isinstance(tags, str) or not tags:
        return out
    for part in _TAG_SEP.split(tags):
        k, v = (_TAG_EQ.split(part, maxsplit=1) + [""])[:2]
        out[_unescape_tag(k)] = _unescape_tag(v)
    return out
