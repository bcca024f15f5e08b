"""Files that hold data only: an ``.npz`` of numpy arrays plus one JSON object.

Model files and checkpoints are files a user may receive from someone else,
so loading one must never run code: no pickle anywhere.  Arrays are read
with ``allow_pickle=False`` (an object array is refused) and the JSON is
parsed by :mod:`json`.  Files are written atomically (a temporary file in
the same folder, fsync, ``os.replace``) with mode ``0o600`` (less if the
umask asks for less), so a reader never sees half a file and others cannot
read a model or a checkpoint unless the owner opens it up.

>>> import tempfile, os, numpy as np
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "x.npz")
>>> write_data(p, {"a": 1}, {"v": np.arange(3.0)})
>>> meta, arrays = read_data(p)
>>> meta, arrays["v"].tolist(), oct(os.stat(p).st_mode & 0o777)
({'a': 1}, [0.0, 1.0, 2.0], '0o600')
"""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["write_data", "read_data", "encode_data", "write_atomic", "DataFileError", "OldFormatError"]

_META = "__meta__"


class DataFileError(ValueError):
    """The file is not a readable data file (truncated, corrupt, foreign, pickled)."""


class OldFormatError(DataFileError):
    """A file of this project written before data files had their metadata member."""


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {str(path)!r}")


def write_atomic(path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file, fsync, rename, folder fsync).

    The file gets ``mode`` less the umask; a reader sees the old or the new file, never half.
    """
    path = Path(path)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself survives a power cut only once the folder is synced
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def encode_data(meta: dict, arrays: dict) -> bytes:
    """The bytes :func:`write_data` writes: ``meta`` (JSON-able, no NaN) and ``arrays``.

    >>> meta, arrays = read_data(io.BytesIO(encode_data({"n": 1}, {"x": np.arange(3)})))
    >>> meta, arrays["x"].tolist()
    ({'n': 1}, [0, 1, 2])
    """
    text = json.dumps(meta, sort_keys=True, allow_nan=False)
    buf = io.BytesIO()
    np.savez(buf, **{_META: np.frombuffer(text.encode(), np.uint8)},
             **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def write_data(path, meta: dict, arrays: dict, mode: int = 0o600) -> None:
    """Write ``meta`` (JSON-able, no NaN) and ``arrays`` atomically to ``path``."""
    write_atomic(path, encode_data(meta, arrays), mode)


def read_data(path) -> tuple[dict, dict]:
    """Read ``(meta, arrays)`` written by :func:`write_data` (a path, or a binary file object);
    :class:`DataFileError` if not."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataFileError("a single numpy array (.npy), not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (FileNotFoundError, DataFileError):
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        # numpy's own text for a non-archive invites loading it with allow_pickle=True: never
        why = ("not an .npz archive" if "pickle" in str(e)
               else f"{type(e).__name__}: {str(e)[:200]}")
        raise DataFileError(f"not a data file written by this project ({why})") from None
    raw = arrays.pop(_META, None)
    if raw is None and "meta" in arrays and "centroids" in arrays:
        raise OldFormatError("a model file of an older version (a single K-Means model)")
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataFileError("no metadata member: not a file written by this version")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFileError(f"damaged metadata ({e})") from None
    if not isinstance(meta, dict):
        raise DataFileError("metadata is not an object")
    return meta, arrays
