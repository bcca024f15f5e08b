"""Model files: one ``.npz`` with the arrays and a JSON metadata blob.

A model file holds three members, read back with ``allow_pickle=False``:

``centroids``
    float64 ``(n_clusters, segment_len)``: the K-Means centroids.
``window``
    float64 ``(segment_len,)``: the window applied to every segment.
``meta``
    uint8 bytes of a UTF-8 JSON object: ``format`` and ``format_version``;
    ``model`` (class, ``get_params()``, fitted facts such as
    ``n_train_segments``); ``threshold`` (``None`` or its params, value,
    ``n_scores``...); ``metadata`` (the caller's dict: sample period,
    training range...); ``libraries`` (numpy / scikit-learn / pipeline /
    Python versions at save time); ``version``.

``version`` is a content hash: the first 12 hex digits of the sha256 of
each array (name, dtype, shape, bytes) followed by the canonical JSON
(sorted keys, no spaces) of the metadata **without** ``version`` and
``libraries``.  The same model, threshold and metadata therefore get the
same version whatever library versions saved them, and any change to the
centroids, window, parameters, threshold or metadata changes it.  The hash
is re-checked on load (the zip CRC also catches damage to the rest).

Files are written atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a model.  The file gets the mode
of any new file, ``0o666 & ~umask`` (not the private ``0o600`` of a temporary
file), so whoever may read the folder may read the model.  Every problem on load
raises :class:`ModelFileError`, naming the file, what is wrong, and the way
out: retrain with ``python -m pipeline.train``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.utils.validation import check_is_fitted

import pipeline
from pipeline.kmeans import KMeansReconstructor
from pipeline.threshold import ScoreThreshold

__all__ = [
    "save_model",
    "load_model",
    "check_writable",
    "LoadedModel",
    "ModelFileError",
    "FORMAT",
    "FORMAT_VERSION",
    "RETRAIN_HINT",
]

FORMAT = "pipeline.kmeans-reconstructor"
FORMAT_VERSION = 1
RETRAIN_HINT = "retrain with `python -m pipeline.train`"
_ARRAYS = ("centroids", "window")
_THRESHOLD_FITTED = ("threshold_", "method_", "n_scores_", "base_", "score_max_", "few_scores_",
                     "calibration_alarm_rate_")
_MODEL_FITTED = ("slide_len_", "n_train_segments_", "n_runs_", "algorithm_", "inertia_", "n_iter_")


class ModelFileError(ValueError):
    """A model file is missing, unreadable, corrupted or incompatible."""


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`load_model` returns.

    Attributes
    ----------
    model : KMeansReconstructor
        Fitted; scores bit-identically to the model that was saved.
    threshold : ScoreThreshold or None
        Fitted threshold saved with the model, if any.
    metadata : dict
        The caller's metadata given to :func:`save_model`.
    version : str
        12 hex digits content hash (see the module docstring).
    libraries : dict
        Library versions at save time (provenance only).
    """

    model: KMeansReconstructor
    threshold: ScoreThreshold | None
    metadata: dict
    version: str
    libraries: dict = field(default_factory=dict)


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _content_hash(arrays: dict, meta: dict) -> str:
    h = hashlib.sha256()
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode("ascii"))
        h.update(a.tobytes())
    h.update(_canonical({k: v for k, v in meta.items() if k not in ("version", "libraries")}))
    return h.hexdigest()[:12]


def _jsonable(obj):
    """numpy scalars/arrays -> Python, so user metadata may hold them."""
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


def save_model(path, model: KMeansReconstructor, threshold: ScoreThreshold | None = None,
               metadata: dict | None = None) -> str:
    """Write a fitted model (and optionally its threshold) to ``path``; return its version.

    Parameters
    ----------
    path : str or Path
        Target file, written exactly there (conventionally ``*.npz``);
        parent folders are created.  An existing file is replaced atomically.
    model : KMeansReconstructor
        Fitted model.
    threshold : ScoreThreshold or None, default=None
        Fitted threshold calibrated for this model.
    metadata : dict or None, default=None
        JSON-serializable facts to keep with the model (sample period,
        training time range, series name...).

    Returns
    -------
    str
        The content-hash version (12 hex digits).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` or ``threshold`` is not fitted.
    ValueError
        If ``metadata`` (or a parameter such as a ``RandomState`` object
        given as ``random_state``) is not JSON-serializable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> x = np.tile([0.0, 1.0, 2.0, 1.0], 50)
    >>> m = KMeansReconstructor(n_clusters=2, segment_len=4).fit(x)
    >>> t = ScoreThreshold(method="max").fit(m.segment_errors(x))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "models" / "ekg.npz"
    ...     v = save_model(p, m, t, {"period_ns": 2_777_778})
    ...     loaded = load_model(p)
    >>> loaded.version == v, len(v), loaded.metadata
    (True, 12, {'period_ns': 2777778})
    >>> bool((loaded.model.segment_errors(x) == m.segment_errors(x)).all())
    True
    """
    if not isinstance(model, KMeansReconstructor):
        raise ValueError(f"model must be a fitted KMeansReconstructor, got {type(model).__name__}")
    check_is_fitted(model)
    if threshold is not None:
        if not isinstance(threshold, ScoreThreshold):
            raise ValueError(f"threshold must be a fitted ScoreThreshold or None, got {type(threshold).__name__}")
        check_is_fitted(threshold)
    arrays = {
        "centroids": np.ascontiguousarray(model.cluster_centers_, dtype=np.float64),
        "window": np.ascontiguousarray(model.window_, dtype=np.float64),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": _to_plain("model parameters", {
            "class": type(model).__name__,
            "params": model.get_params(),
            "fitted": {a.rstrip("_"): getattr(model, a) for a in _MODEL_FITTED if hasattr(model, a)},
        }),
        "threshold": None if threshold is None else _to_plain("threshold", {
            "class": type(threshold).__name__,
            "params": threshold.get_params(),
            "fitted": {a.rstrip("_"): getattr(threshold, a) for a in _THRESHOLD_FITTED},
        }),
        "metadata": _to_plain("metadata", {} if metadata is None else dict(metadata)),
        "libraries": {
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "pipeline": pipeline.__version__,
            "python": platform.python_version(),
        },
    }
    version = _content_hash(arrays, meta)
    meta["version"] = version
    blob = np.frombuffer(_canonical(meta), dtype=np.uint8)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return version


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, empty temporary file next to ``path``: ``(fd, name)``.

    Unlike :func:`tempfile.mkstemp` (mode ``0o600``) it is created with mode
    ``0o666``, from which the kernel removes the umask, so after
    ``os.replace`` the model file has the mode of any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {str(path)!r}")


def check_writable(path) -> None:
    """Raise :class:`ValueError` unless a model file can be written at ``path``.

    For commands that fit for a while before saving: a directory, a parent
    that is a file, or a folder that refuses new files is reported up
    front.  The check creates and removes one empty file in the nearest
    existing folder; it creates no folder.

    Examples
    --------
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
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=folder)
    except OSError as e:
        raise ValueError(f"cannot write the model file {str(path)!r}: cannot create files in "
                         f"{str(folder)!r} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)


def _fail(path, what: str) -> ModelFileError:
    return ModelFileError(f"model file {str(path)!r} {what}; {RETRAIN_HINT}")


def load_model(path) -> LoadedModel:
    """Read and verify a model file written by :func:`save_model`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    LoadedModel
        ``(model, threshold, metadata, version, libraries)``.

    Raises
    ------
    ModelFileError
        If the file is missing, not an ``.npz``, truncated, corrupted
        (content hash mismatch), or of an unknown format version or shape.
        The message names the file and says to retrain with
        ``python -m pipeline.train``.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "does not exist" if not path.exists() else "is not a regular file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not hasattr(npz, "files"):
            raise _fail(path, "is a single .npy array, not a model .npz archive")
        with npz:
            missing = [m for m in (*_ARRAYS, "meta") if m not in npz.files]
            if missing:
                raise _fail(path, f"is not a model file: missing member(s) {missing} (has {npz.files})")
            arrays = {name: npz[name] for name in _ARRAYS}
            blob = npz["meta"]
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(path, f"cannot be read as a model .npz archive (truncated or not a model "
                          f"file: {type(exc).__name__}: {exc})") from exc
    try:
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(f"meta member has dtype {blob.dtype} and shape {blob.shape}")
        meta = json.loads(blob.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"has unreadable metadata ({exc})") from exc

    if meta.get("format") != FORMAT:
        raise _fail(path, f"has format {meta.get('format')!r}, expected {FORMAT!r}")
    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        raise _fail(path, f"has format version {fv!r}; this pipeline {pipeline.__version__} reads "
                          f"format version {FORMAT_VERSION} only")
    stored = meta.get("version")
    try:
        actual = _content_hash(arrays, meta)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"has metadata that cannot be hashed ({exc})") from exc
    if stored != actual:
        raise _fail(path, f"is corrupted or was edited: content hash {actual} does not match the "
                          f"stored version {stored!r}")

    try:
        model = _rebuild_model(meta["model"], arrays)
        threshold = None if meta.get("threshold") is None else _rebuild_threshold(meta["threshold"])
        metadata = meta.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"is incompatible with this pipeline ({type(exc).__name__}: {exc})") from exc
    return LoadedModel(model=model, threshold=threshold, metadata=metadata, version=stored,
                       libraries=dict(meta.get("libraries") or {}))


def _rebuild_model(info: dict, arrays: dict) -> KMeansReconstructor:
    if info.get("class") != KMeansReconstructor.__name__:
        raise ValueError(f"model class {info.get('class')!r} is not {KMeansReconstructor.__name__}")
    model = KMeansReconstructor(**info["params"])
    k, seg_len, _, slide = model._validate_params()
    centers, window = arrays["centroids"], arrays["window"]
    if centers.dtype != np.float64 or centers.shape != (k, seg_len):
        raise ValueError(f"centroids have dtype {centers.dtype} and shape {centers.shape}, "
                         f"expected float64 ({k}, {seg_len})")
    if window.dtype != np.float64 or window.shape != (seg_len,):
        raise ValueError(f"window has dtype {window.dtype} and shape {window.shape}, "
                         f"expected float64 ({seg_len},)")
    if not (np.isfinite(centers).all() and np.isfinite(window).all()):
        raise ValueError("centroids or window hold NaN/inf")
    model._set_fitted(centers, window)
    fitted = info.get("fitted", {})
    for a in _MODEL_FITTED:
        key = a.rstrip("_")
        if key in fitted:
            setattr(model, a, fitted[key])
    model.slide_len_ = slide
    return model


def _rebuild_threshold(info: dict) -> ScoreThreshold:
    if info.get("class") != ScoreThreshold.__name__:
        raise ValueError(f"threshold class {info.get('class')!r} is not {ScoreThreshold.__name__}")
    t = ScoreThreshold(**info["params"])
    fitted = info["fitted"]
    for a in _THRESHOLD_FITTED:
        setattr(t, a, fitted[a.rstrip("_")])
    t.threshold_ = float(t.threshold_)
    return t

