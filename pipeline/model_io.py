"""Model files: a list of fitted, calibrated detectors, as data only.

A model file is written by :func:`pipeline.datafile.write_data` (an ``.npz``
of numpy arrays plus one JSON object, no pickle) and holds, for one series
(or one fleet with fan-out):

``detectors``
    One entry per detector, in order: its ``name`` (which class reads it),
    constructor ``params``, learned state (``fitted`` JSON plus arrays named
    ``d<i>.<name>``), ``enabled``, ``threshold``, the sample period, and the
    ``calibration`` evidence (budget, held-out hours, method, events at the
    threshold, the tail fit, how much data would confirm the budget, or why
    the detector is off).
``metadata``
    The caller's facts: sample period, training and validation ranges,
    the series it was trained on, the budget.
``version``
    A content hash: the first 12 hex digits of the sha256 of every array
    (name, dtype, shape, bytes) and the canonical JSON of everything but
    ``version`` and ``libraries``.  It is written as the ``model`` tag of
    every score and re-checked on load.

Files from before the detector list (format ``pipeline.kmeans-reconstructor``)
are refused with a message that says to retrain.  Every problem on load
raises :class:`ModelFileError`, naming the file, what is wrong and the way
out: retrain with ``python -m pipeline.train``.  Files are written with mode
``0o600`` (less if the umask asks for less): a model can be shared safely,
since loading one runs no code, but that is the owner's choice.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn

import pipeline

from .datafile import DataFileError, OldFormatError, read_data, write_data
from .detectors import Detector

__all__ = ["save_model", "load_model", "check_writable", "ModelFile", "ModelFileError",
           "FORMAT", "FORMAT_VERSION", "RETRAIN_HINT"]

FORMAT = "pipeline.detectors"
FORMAT_VERSION = 2
OLD_FORMATS = {"pipeline.kmeans-reconstructor"}
RETRAIN_HINT = "retrain with `python -m pipeline.train`"


class ModelFileError(ValueError):
    """A model file is missing, unreadable, corrupted or incompatible."""


@dataclass(frozen=True)
class ModelFile:
    """What :func:`load_model` returns: the detectors and their provenance."""

    detectors: list
    metadata: dict
    version: str
    libraries: dict = field(default_factory=dict)

    @property
    def enabled(self) -> list:
        """The detectors calibration kept on: what the stream runs."""
        return [d for d in self.detectors if d.enabled_]

    def get(self, name: str):
        """The detector called ``name`` (``None`` if the file has none)."""
        return next((d for d in self.detectors if d.name == name), None)

    @property
    def period_ns(self) -> float | None:
        p = self.metadata.get("sample_period_ns")
        return float(p) if p else None


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _content_hash(arrays: dict, meta: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode("ascii"))
        h.update(a.tobytes())
    h.update(_canonical({k: v for k, v in meta.items() if k not in ("version", "libraries")}))
    return h.hexdigest()[:12]


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _to_plain(name: str, obj):
    try:
        return json.loads(json.dumps(obj, default=_jsonable, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serializable (numbers, strings, lists, dicts; "
                         f"no NaN/inf): {exc}") from None


def save_model(path, detectors, metadata: dict | None = None) -> str:
    """Write fitted, calibrated detectors to ``path``; return the version.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pipeline.detectors import FlatLineDetector
    >>> t = np.arange(3000) * 10**7
    >>> x = np.round(np.sin(np.arange(3000) / 7.0), 2)
    >>> det = FlatLineDetector().fit([(t, x)], 1e7).calibrate([(t, x)], 1e7, 360.0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "models" / "m.npz"
    ...     v = save_model(p, [det], {"sample_period_ns": 1e7})
    ...     m = load_model(p)
    >>> m.version == v, [x.name for x in m.detectors], m.period_ns
    (True, ['flatline'], 10000000.0)
    """
    entries, arrays = [], {}
    for i, det in enumerate(detectors):
        if not isinstance(det, Detector):
            raise ValueError(f"detectors must be Detector objects, got {type(det).__name__}")
        if det.threshold_ is None:
            raise ValueError(f"detector {det.name} is not calibrated: call calibrate() first")
        meta, arr = det.to_data()
        entries.append(meta)
        for k, a in arr.items():
            arrays[f"d{i}.{k}"] = np.asarray(a)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "detectors": _to_plain("detector parameters", entries),
        "metadata": _to_plain("metadata", dict(metadata or {})),
        "libraries": {"numpy": np.__version__, "sklearn": sklearn.__version__,
                      "pipeline": pipeline.__version__, "python": platform.python_version()},
    }
    meta["version"] = _content_hash(arrays, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_data(path, meta, arrays)
    return meta["version"]


def check_writable(path) -> None:
    """Raise :class:`ValueError` unless a model file can be written at ``path``.

    >>> check_writable("/proc/x/m.npz")
    Traceback (most recent call last):
    ...
    ValueError: cannot write the model file '/proc/x/m.npz': ...
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write the model file {str(path)!r}: it is a directory; "
                         f"give a file name such as {str(path / 'model.npz')!r}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write the model file {str(path)!r}: {str(folder)!r} is not a "
                         "directory")
    try:
        with tempfile.NamedTemporaryFile(prefix=".write-check.", dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"cannot write the model file {str(path)!r}: cannot create files in "
                         f"{str(folder)!r} ({e.strerror or e})") from None


def _fail(path, what: str) -> ModelFileError:
    return ModelFileError(f"model file {str(path)!r} {what}; {RETRAIN_HINT}")


def load_model(path) -> ModelFile:
    """Read and verify a model file written by :func:`save_model`.

    Raises
    ------
    ModelFileError
        Missing, not a model file, truncated, corrupted (content hash
        mismatch), from an older version, or with unknown detectors.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "does not exist" if not path.exists() else "is not a regular file")
    try:
        meta, arrays = read_data(path)
    except OldFormatError:
        raise _fail(path, "was written by an older version of this project (a single K-Means "
                          "model, before detector lists and alarm budgets)") from None
    except DataFileError as e:
        raise _fail(path, f"cannot be read as a model file: {e}") from None
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror or e})") from None
    if meta.get("format") in OLD_FORMATS or (not meta and "centroids" in arrays):
        raise _fail(path, "was written by an older version of this project (a single K-Means "
                          "model, before detector lists and alarm budgets)")
    if meta.get("format") != FORMAT:
        raise _fail(path, f"has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"has format version {meta.get('format_version')!r}; this version "
                          f"reads {FORMAT_VERSION} only")
    try:
        actual = _content_hash(arrays, meta)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"has metadata that cannot be hashed ({exc})") from None
    if meta.get("version") != actual:
        raise _fail(path, f"is corrupted or was edited: content hash {actual} does not match "
                          f"the stored version {meta.get('version')!r}")
    try:
        dets = []
        for i, entry in enumerate(meta["detectors"]):
            pre = f"d{i}."
            own = {k[len(pre):]: a for k, a in arrays.items() if k.startswith(pre)}
            dets.append(Detector.from_data(entry, own))
        metadata = meta.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"is incompatible with this version ({type(exc).__name__}: "
                          f"{exc})") from None
    return ModelFile(dets, metadata, meta["version"], dict(meta.get("libraries") or {}))
