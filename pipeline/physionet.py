"""Real EKG from PhysioNet (WFDB records) as the project's CSV series and labelled events.

``python -m pipeline.datasets fetch NAME`` reads one record with the
``wfdb`` package, from PhysioNet (``wfdb.rdrecord(..., pn_dir=...)``) or
from a folder of records downloaded before (``--from-dir``), and writes a
folder ``OUT/<name>/`` holding

* ``<name>.csv``: columns ``time_s,value``, one lead in its physical units
  (mV), ``time_s`` = sample / rate written exactly (as many decimals as the
  sample grid needs, integer nanoseconds), the layout ``python -m
  pipeline.load`` reads;
* ``<name>_events.csv``: columns ``start,end,type`` in seconds on the same
  time base, the record's reference labels (see
  :func:`pipeline.annotations.beat_events` and ``apnea_events``);
* ``<name>.json``: where it came from, lead, units, rate, counts, license.

Nothing is written until the whole record has been read and converted; the
files are then written into a temporary folder next to the target and
renamed into place, so an interrupted or failed fetch leaves nothing
half-written behind.

=========  =============================  ======  ====================================
name       database (version)             rate    labels
=========  =============================  ======  ====================================
a02        Apnea-ECG, record a02 (1.0.0)  100 Hz  apnea minutes (``.apn``)
apnea-ecg  Apnea-ECG, ``--record``        100 Hz  apnea minutes (where ``.apn`` exists)
mitdb      MIT-BIH Arrhythmia (1.0.0)     360 Hz  beats and rhythms (``.atr``), MLII
=========  =============================  ======  ====================================
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests

from .annotations import HALF_WIDTH_S, apnea_events, beat_events, format_seconds, sample_times_ns

PHYSIONET_URL = "https://physionet.org/files/"
LICENSE = "ODC-By 1.0 (Open Data Commons Attribution License v1.0)"
PHYSIONET_CITATION = ("Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet. "
                      "Circulation 101(23):e215-e220 (2000)")


class FetchError(RuntimeError):
    """A dataset cannot be fetched or converted; the message says what to do."""


class FetchNetworkError(FetchError):
    """PhysioNet (or the mirror) could not be reached, or answered with an error."""


@dataclass(frozen=True)
class Database:
    """A PhysioNet database this module knows how to convert."""

    slug: str
    version: str
    title: str
    annotator: str
    lead: str | None  # default lead; None: the record's first signal
    records: tuple[str, ...]
    default_record: str
    citation: str
    doi: str


def _numbered(prefix: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i:02d}" for i in range(first, last + 1))


MITDB_RECORDS = tuple(str(r) for r in [*range(100, 110), *range(111, 120), *range(121, 125),
                                       200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213,
                                       214, 215, 217, 219, 220, 221, 222, 223, 228,
                                       *range(230, 235)])
DATABASES = {
    "apnea-ecg": Database(
        "apnea-ecg", "1.0.0", "Apnea-ECG Database", "apn", None,
        _numbered("a", 1, 20) + _numbered("b", 1, 5) + _numbered("c", 1, 10)
        + _numbered("x", 1, 35), "a02",
        "Penzel T, Moody GB, Mark RG, Goldberger AL, Peter JH. The Apnea-ECG Database. "
        "Computers in Cardiology 27:255-258 (2000)", "10.13026/C23W2R"),
    "mitdb": Database(
        "mitdb", "1.0.0", "MIT-BIH Arrhythmia Database", "atr", "MLII", MITDB_RECORDS, "208",
        "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. "
        "IEEE Eng in Med and Biol 20(3):45-50 (2001)", "10.13026/C2F305"),
}
ALIASES = {"a02": ("apnea-ecg", "a02")}
NAMES = (*ALIASES, *DATABASES)


@dataclass
class Recording:
    """One lead of one record, read and not yet written.

    ``values`` are physical (``units``), NaN where the record marks a sample
    as missing; ``ann_*`` are the reference annotations (empty if the record
    has none) restricted to the samples read.
    """

    name: str
    database: Database
    record: str
    lead: str
    rate: float
    units: str
    values: np.ndarray
    source: str
    ann_samples: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ann_symbols: list = field(default_factory=list)
    ann_aux: list = field(default_factory=list)
    has_annotations: bool = False


def resolve(name: str, record: str | None = None) -> tuple[Database, str]:
    """The database and record a dataset name (and ``--record``) stand for.

    Examples
    --------
    >>> db, rec = resolve("mitdb", "208"); db.slug, rec
    ('mitdb', '208')
    >>> resolve("a02")[1]
    'a02'
    >>> resolve("mitdb", "999")
    Traceback (most recent call last):
    ...
    pipeline.physionet.FetchError: mitdb has no record '999'; its records are 100, 101, ...
    """
    if name in ALIASES:
        slug, rec = ALIASES[name]
        if record not in (None, rec):
            raise FetchError(f"{name} is record {rec} of {slug}; for another record use "
                             f"`fetch {slug} --record {record}`")
        return DATABASES[slug], rec
    if name not in DATABASES:
        raise FetchError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    db = DATABASES[name]
    rec = db.default_record if record is None else str(record)
    if rec not in db.records:
        raise FetchError(f"{name} has no record {rec!r}; its records are {', '.join(db.records)}")
    return db, rec


# --------------------------------------------------------------------------
# reading (network or local folder)
# --------------------------------------------------------------------------
class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """wfdb's requests carry no timeout; this gives every one of them ``timeout`` seconds."""

    def __init__(self, timeout: float, **kwargs):
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, timeout=None, **kwargs):
        return super().send(request, timeout=self._timeout if timeout is None else timeout,
                            **kwargs)


def _check_resolves(url: str, timeout: float) -> None:
    """Look up the server's (or its proxy's) host in a thread, bounded by ``timeout`` seconds.

    A name lookup is not covered by socket timeouts and may hang for long on
    a machine without network; this fails fast instead.
    """
    proxy = requests.utils.get_environ_proxies(url).get(urlsplit(url).scheme)
    parts = urlsplit(proxy or url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    box: dict = {}

    def look_up():
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            box["error"] = e

    t = threading.Thread(target=look_up, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise FetchNetworkError(f"looking up {host} took more than {timeout:g} s")
    if "error" in box:
        raise FetchNetworkError(f"cannot resolve {host} ({box['error']})")


@contextmanager
def _physionet(mirror: str, timeout: float):
    """Point wfdb at ``mirror`` with bounded requests; turn its failures into FetchNetworkError."""
    import wfdb
    from wfdb.io import _url, download

    old_url = download.config.db_index_url
    session = getattr(_url, "_get_session", lambda: None)()
    old_adapters = dict(session.adapters) if session is not None else {}
    try:
        _check_resolves(mirror, timeout)
        wfdb.set_db_index_url(mirror)
        if session is not None:
            for scheme in ("http://", "https://"):
                session.mount(scheme, _TimeoutAdapter(timeout, pool_maxsize=2, pool_block=True))
        yield
    except _url.NetFileNotFoundError as e:
        raise FetchNetworkError(f"{e.url} does not exist (404)") from None
    except (requests.RequestException, _url.NetFileError) as e:
        raise FetchNetworkError(f"{type(e).__name__}: {_first_line(e)}") from None
    except (ValueError, IndexError) as e:  # an answer that is not a WFDB file
        raise FetchNetworkError(f"the answer is not a readable WFDB record: {_first_line(e)}; "
                                "is --mirror a PhysioNet mirror?") from None
    finally:
        download.config.db_index_url = old_url
        if session is not None:
            session.adapters.clear()
            session.adapters.update(old_adapters)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def read_recording(name: str, record: str | None = None, lead: str | None = None,
                   samples: int | None = None, from_dir: str | Path | None = None,
                   mirror: str = PHYSIONET_URL, timeout: float = 30.0) -> Recording:
    """Read one lead of a record (and its reference annotations) into memory.

    Parameters
    ----------
    name : str
        ``a02``, ``apnea-ecg`` or ``mitdb`` (see :data:`NAMES`).
    record : str, optional
        Record of the database (default: a02 for apnea-ecg, 208 for mitdb).
    lead : str, optional
        Signal name (default: MLII for mitdb, the first signal otherwise).
    samples : int, optional
        Read only the first ``samples`` samples (the K-Means tutorial used
        the first 8,192 of a02).
    from_dir : path, optional
        A folder with ``<record>.hea``, its signal file and annotations;
        nothing is downloaded.
    mirror : str, default PhysioNet
        Base URL of the database files (``<mirror>/<db>/<version>/<record>.hea``).
    timeout : float, default 30
        Seconds allowed for the host lookup and for each request.

    Raises
    ------
    FetchError
        Unknown name, record or lead, a bad ``samples``, missing local files.
    FetchNetworkError
        PhysioNet unreachable or answering with an error.
    """
    import wfdb
    from wfdb.io import _url

    db, rec = resolve(name, record)
    if samples is not None and samples < 1:
        raise FetchError(f"--samples must be a positive number of samples, got {samples}")
    if from_dir is not None:
        path = Path(from_dir) / rec
        if not path.with_suffix(".hea").is_file():
            raise FetchError(f"no record {rec} in {from_dir} (expected {path}.hea and its signal "
                             f"file); pass the folder that holds the {db.slug} files, or fetch "
                             "without --from-dir to download them")
        where, pn_dir, source = str(path), None, str(path)
        reading = _local_errors(path)
    else:
        where, pn_dir = rec, f"{db.slug}/{db.version}"
        source = mirror.rstrip("/") + f"/{pn_dir}/{rec}"
        reading = _physionet(mirror, timeout)
    with reading:
        header = wfdb.rdheader(where, pn_dir=pn_dir)
        names = list(header.sig_name or [])
        chosen = lead or db.lead or (names[0] if names else None)
        if chosen not in names:
            raise FetchError(f"record {rec} has no lead {chosen!r} (its leads: "
                             f"{', '.join(names) or 'none'}); choose one with --lead")
        if samples is not None and samples > header.sig_len:
            raise FetchError(f"record {rec} has {header.sig_len} samples; --samples {samples} "
                             "asks for more")
        channel = names.index(chosen)
        r = wfdb.rdrecord(where, pn_dir=pn_dir, channels=[channel], sampto=samples)
        n = r.p_signal.shape[0]
        out = Recording(f"{rec if db.slug == 'apnea-ecg' else db.slug + rec}"
                        + (f"_{samples}" if samples else ""), db, rec, chosen, float(r.fs),
                        r.units[0], np.asarray(r.p_signal[:, 0], np.float64), source)
        try:
            ann = wfdb.rdann(where, db.annotator, pn_dir=pn_dir)
        except (FileNotFoundError, _url.NetFileNotFoundError):
            return out  # no reference labels for this record (e.g. apnea-ecg's test set)
    keep = np.asarray(ann.sample) < n
    out.ann_samples = np.asarray(ann.sample, np.int64)[keep]
    out.ann_symbols = [s for s, k in zip(ann.symbol, keep, strict=True) if k]
    aux = ann.aux_note or [""] * len(ann.sample)
    out.ann_aux = [a for a, k in zip(aux, keep, strict=True) if k]
    out.has_annotations = True
    return out


@contextmanager
def _local_errors(path: Path):
    try:
        yield
    except (OSError, ValueError) as e:
        raise FetchError(f"cannot read record {path}: {_first_line(e)}; is it a complete WFDB "
                         "record (header, signal file)?") from None


# --------------------------------------------------------------------------
# conversion (pure)
# --------------------------------------------------------------------------
def series_frame(rec: Recording) -> pd.DataFrame:
    """The ``time_s,value`` table of a recording; missing (NaN) samples are left out."""
    t = format_seconds(sample_times_ns(len(rec.values), rec.rate))
    keep = np.isfinite(rec.values)
    return pd.DataFrame({"time_s": np.asarray(t, dtype=object)[keep], "value": rec.values[keep]})


def events_frame(rec: Recording, half_width: float = HALF_WIDTH_S) -> pd.DataFrame | None:
    """The recording's labels as events, or None when it has no annotations."""
    if not rec.has_annotations:
        return None
    n = len(rec.values)
    if rec.database.slug == "apnea-ecg":
        return apnea_events(rec.ann_samples, rec.ann_symbols, rec.rate, n)
    return beat_events(rec.ann_samples, rec.ann_symbols, rec.ann_aux, rec.rate, n, half_width)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
@dataclass
class Fetched:
    """What :func:`write_recording` wrote."""

    folder: Path
    series: Path
    events: Path | None
    meta: Path
    n_samples: int
    n_missing: int
    events_by_type: dict


def write_recording(rec: Recording, out: str | Path, half_width: float = HALF_WIDTH_S,
                    ) -> Fetched:
    """Write ``out/<name>/`` (series CSV, events CSV, JSON), replacing it atomically.

    The files are written into a temporary folder in ``out`` and renamed to
    ``out/<name>`` at the end; on any error the temporary folder is removed.
    """
    if not half_width > 0:
        raise FetchError(f"--half-width must be > 0 seconds, got {half_width}")
    data = series_frame(rec)
    events = events_frame(rec, half_width)
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    target = out / rec.name
    tmp = _new_dir(out, f".{rec.name}.", ".partial")
    try:
        series = tmp / f"{rec.name}.csv"
        data.to_csv(series, index=False)
        if events is not None:
            events.to_csv(tmp / f"{rec.name}_events.csv", index=False, float_format="%.6f")
        counts = {} if events is None else {str(k): int(v) for k, v in
                                            events["type"].value_counts().sort_index().items()}
        meta = _metadata(rec, len(data), half_width, counts)
        (tmp / f"{rec.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            _rmdir_if_empty(out)
        raise
    return Fetched(target, target / series.name,
                   target / f"{rec.name}_events.csv" if events is not None else None,
                   target / f"{rec.name}.json", len(data), len(rec.values) - len(data), counts)


def _metadata(rec: Recording, n_rows: int, half_width: float, counts: dict) -> dict:
    db = rec.database
    return {
        "name": rec.name, "database": db.slug, "version": db.version, "title": db.title,
        "record": rec.record, "lead": rec.lead, "units": rec.units, "rate_hz": rec.rate,
        "samples": len(rec.values), "rows": n_rows, "missing_samples": len(rec.values) - n_rows,
        "duration_s": len(rec.values) / rec.rate, "source": rec.source,
        "events": None if not rec.has_annotations else {
            "annotator": db.annotator, "counts": counts,
            "rule": ("apnea minutes (A), merged when consecutive" if db.slug == "apnea-ecg" else
                     f"non-normal beats +- {half_width} s, rhythms other than (N until the next "
                     "rhythm annotation; same-type overlaps merged")},
        "license": LICENSE, "doi": db.doi, "cite": [db.citation, PHYSIONET_CITATION],
    }


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise FetchError(f"{target} exists and is not a folder; move it away or choose --out")
    if not target.exists():
        os.rename(tmp, target)
        return
    old = _new_dir(target.parent, f".{target.name}.", ".old")
    os.rename(target, old / target.name)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _new_dir(parent: Path, prefix: str, suffix: str) -> Path:
    """A new, unique folder in ``parent`` with the usual (umask) permissions, unlike mkdtemp."""
    for _ in range(100):
        path = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder in {parent}")


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


# --------------------------------------------------------------------------
# command line: python -m pipeline.datasets fetch
# --------------------------------------------------------------------------
LOAD_START = "2026-01-01T00:00:00Z"


def add_fetch_args(p) -> None:
    """The arguments of ``python -m pipeline.datasets fetch`` (an argparse parser)."""
    from .load import add_influx_args

    p.add_argument("name", help=f"dataset: {', '.join(NAMES)}")
    p.add_argument("--record", default=None,
                   help="record of the database (default: a02 for apnea-ecg, 208 for mitdb)")
    p.add_argument("--lead", default=None, help="signal name (default: MLII for mitdb, else the "
                   "record's first signal)")
    p.add_argument("--samples", type=int, default=None,
                   help="keep only the first N samples (the K-Means tutorial used 8192 of a02)")
    p.add_argument("--half-width", type=float, default=HALF_WIDTH_S,
                   help="seconds either side of a labelled beat (default: %(default)s)")
    p.add_argument("--out", default="var/datasets",
                   help="folder; the files go to OUT/NAME/ (default: %(default)s)")
    p.add_argument("--from-dir", default=None, metavar="DIR",
                   help="read the WFDB record from DIR (downloaded before) instead of PhysioNet")
    p.add_argument("--mirror", default=PHYSIONET_URL,
                   help="base URL of the PhysioNet files (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds allowed per request and for the host lookup (default: %(default)s)")
    g = p.add_argument_group("loading into InfluxDB (with --load)")
    g.add_argument("--load", action="store_true",
                   help="then load the series like `python -m pipeline.load` would")
    g.add_argument("--db", default="ekg", help="database (default: %(default)s)")
    g.add_argument("--measurement", default="ekg", help="measurement (default: %(default)s)")
    g.add_argument("--start", default=LOAD_START,
                   help="time of the first sample (default: %(default)s)")
    add_influx_args(p)


def load_command(f: Fetched, name: str, db: str = "ekg", measurement: str = "ekg",
                 start: str = LOAD_START) -> str:
    """The ``python -m pipeline.load`` command that loads a fetched series."""
    q = shlex.quote
    return (f"python -m pipeline.load {q(str(f.series))} --db {q(db)} --measurement "
            f"{q(measurement)} --field value --tag source={q(name)} --start {q(start)}")


def run_fetch(args) -> int:
    """``python -m pipeline.datasets fetch``: 0 done, 2 bad input, 1 network, disk or server."""
    import sys

    from .influx import Influx, InfluxError
    from .load import LoadError, load_csv, settings_from_args

    def fail(msg: str, code: int) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return code

    if args.timeout <= 0:
        return fail(f"--timeout must be > 0 seconds, got {args.timeout}", 2)
    try:
        settings = settings_from_args(args) if args.load else None
    except ValueError as e:  # INFLUXDB_PORT=abc, --port 0...
        return fail(f"InfluxDB settings: {e}", 2)
    try:
        rec = read_recording(args.name, args.record, args.lead, args.samples, args.from_dir,
                             args.mirror, args.timeout)
        fetched = write_recording(rec, args.out, args.half_width)
    except FetchNetworkError as e:
        return fail(f"cannot reach PhysioNet at {args.mirror} ({e}); check your internet "
                    "connection or proxy (HTTPS_PROXY), or use --from-dir with records "
                    "downloaded before; nothing was written", 1)
    except FetchError as e:
        return fail(str(e), 2)
    except OSError as e:
        return fail(f"cannot write to {args.out}: {e.strerror or e}; pass a writable --out; "
                    "nothing was written", 1)
    except KeyboardInterrupt:
        return fail("interrupted; nothing was written", 130)
    db = rec.database
    print(f"wrote {fetched.folder}/: {db.title} record {rec.record}, lead {rec.lead}, "
          f"{len(rec.values):,} samples at {rec.rate:g} Hz ({len(rec.values) / rec.rate:,.1f} s), "
          f"values in {rec.units}")
    print(f"  series: {fetched.series}" + (f" ({fetched.n_missing} missing samples left out)"
                                           if fetched.n_missing else ""))
    if fetched.events is not None:
        kinds = ", ".join(f"{k} {v}" for k, v in fetched.events_by_type.items()) or "none"
        n_events = sum(fetched.events_by_type.values())
        print(f"  events: {fetched.events} ({n_events} events; by type: {kinds})")
    else:
        print(f"  events: none (record {rec.record} has no .{db.annotator} annotations)")
    print(f"  license: {LICENSE}; cite {db.citation} (doi:{db.doi})")
    command = load_command(fetched, rec.name, args.db, args.measurement, args.start)
    if not args.load:
        print(f"load it with:\n  {command}")
        return 0
    try:
        series, n = load_csv(fetched.series, args.db, args.measurement, "value",
                             {"source": rec.name}, args.start, Influx(settings))
    except LoadError as e:
        return fail(str(e), 2)
    except InfluxError as e:
        return fail(f"{e}\nThe files are written; load them later with:\n  {command}", 1)
    print(f"loaded {n:,} points into {args.db}.{args.measurement}.value with tag "
          f"source={rec.name}, from {args.start}")
    return 0
