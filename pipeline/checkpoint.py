"""Checkpoints of ``python -m pipeline.stream``: where each series stands, and its rolling state.

One file per (series, fan-out tag value), written atomically (temporary
file, fsync, rename) *after* the scores it covers were written to InfluxDB.
A ``kill -9`` at any moment therefore leaves either the old or the new
checkpoint, never a torn one, and a restart redoes at most one batch,
rewriting identical points (same series, tags and timestamps overwrite).

A checkpoint holds data only (:mod:`pipeline.datafile`: JSON plus numpy
arrays, no pickle), so a checkpoint from someone else cannot run code when
the stream starts; files have mode ``0o600``.  Each detector's streaming
state is stored with :meth:`~pipeline.detectors.base.DetectorState.get_data`
and restored onto a fresh state of the same model.  Checkpoints from older
versions (pickles) are refused with a message that says ``--reset``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .datafile import DataFileError, read_data, write_data
from .stream_config import ConfigError

CHECKPOINT_VERSION = 2


@dataclass
class SeriesState:
    """Everything needed to resume one (series, fan-out tag value) exactly."""

    series: str
    key: str
    origin_ns: int | None
    last_time_ns: int | None = None
    period_checked: bool = False
    model_version: str | None = None
    n_samples: int = 0
    detectors: list = field(default_factory=list)
    """The streaming states of the model's enabled detectors, in the model's order."""
    saved: list | None = None
    """Detector data read from a checkpoint, waiting for :meth:`restore`."""

    def restore(self, detectors) -> bool:
        """Build the states of ``detectors``, from the checkpoint's data when it has them."""
        self.detectors = [d.new_state() for d in detectors]
        saved, self.saved = self.saved, None
        if saved is None:
            return False
        if [s[0] for s in saved] != [d.name for d in detectors]:
            raise ValueError("the checkpoint's detectors differ from the model's")
        for st, (_, meta, arrays) in zip(self.detectors, saved, strict=True):
            st.set_data(meta, arrays)
        return True


class CheckpointStore:
    """A directory of checkpoint files, one per series key."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, series: str, key: str) -> Path:
        h = hashlib.sha256(f"{series}\0{key}".encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{series}-{key}")[:60]
        return self.root / f"{safe}-{h}.ckpt"

    def load(self, series: str, key: str) -> SeriesState | None:
        p = self.path(series, key)
        if not p.exists():
            return None
        try:
            with open(p, "rb") as f:
                head = f.read(2)
            if head[:1] == b"\x80":
                raise ConfigError(f"checkpoint {p} is from an older version of pipeline.stream "
                                  "(a pickle, which this version never loads); run with --reset "
                                  "to start over")
            meta, arrays = read_data(p)
            if meta.get("version") != CHECKPOINT_VERSION:
                raise ConfigError(f"checkpoint {p} is from another version of pipeline.stream; "
                                  "run with --reset to start over")
            saved = []
            for i, d in enumerate(meta["detectors"]):
                pre = f"{i}."
                saved.append((d["name"], d["state"],
                              {k[len(pre):]: a for k, a in arrays.items() if k.startswith(pre)}))
            return SeriesState(series=meta["series"], key=meta["key"],
                               origin_ns=meta["origin_ns"], last_time_ns=meta["last_time_ns"],
                               period_checked=bool(meta["period_checked"]),
                               model_version=meta["model_version"],
                               n_samples=int(meta["n_samples"]), saved=saved)
        except ConfigError:
            raise
        except (DataFileError, OSError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"checkpoint {p} is unreadable ({type(e).__name__}: {e}); "
                              "delete it, or run with --reset to start over") from None

    def save(self, st: SeriesState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        dets, arrays = [], {}
        for i, ds in enumerate(st.detectors):
            meta, arr = ds.get_data()
            dets.append({"name": ds.det.name, "state": meta})
            arrays.update({f"{i}.{k}": a for k, a in arr.items()})
        write_data(self.path(st.series, st.key), {
            "version": CHECKPOINT_VERSION, "series": st.series, "key": st.key,
            "origin_ns": st.origin_ns, "last_time_ns": st.last_time_ns,
            "period_checked": st.period_checked, "model_version": st.model_version,
            "n_samples": st.n_samples, "detectors": dets}, arrays)

    def probe(self) -> None:
        """Create the directory and check that it is writable, before any score is written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            test = self.root / ".probe.tmp"
            test.write_bytes(b"")
            test.unlink()
        except OSError as e:
            raise ConfigError(f"checkpoint directory {self.root} is not usable: "
                              f"{e.strerror or e}; set --checkpoint-dir / [stream] checkpoint_dir "
                              "to a writable directory") from None

    def remove(self) -> None:
        """Delete this directory's checkpoints and the directory itself if it is then empty."""
        self.reset()
        try:
            self.root.rmdir()
        except OSError:
            pass

    def reset(self) -> int:
        """Delete every checkpoint here and in backfill subdirectories; return how many."""
        n = 0
        if self.root.exists():
            for p in [*self.root.rglob("*.ckpt"), *self.root.rglob("*.tmp")]:
                p.unlink()
                n += p.suffix == ".ckpt"
            for d in self.root.glob("backfill-*"):
                try:
                    d.rmdir()
                except OSError:
                    pass
        return n
