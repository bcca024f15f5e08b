"""Checkpoints of ``python -m pipeline.stream``: where each series stands, and its rolling state.

One file per configured series holds every fan-out key of it (a
:class:`~pipeline.fleet.Fleet`: the keys, their marks and the detectors'
states as arrays), written atomically (temporary file, fsync, rename)
*after* the scores it covers were written to InfluxDB.  A ``kill -9`` at any
moment therefore leaves either the old or the new checkpoint, never a torn
one, and a restart redoes at most one batch, rewriting identical points
(same series, tags and timestamps overwrite).  One file per series, not per
key: a fleet of 10,000 sensors polled every second writes one file a poll,
not 10,000.

A checkpoint holds data only (:mod:`pipeline.datafile`: JSON plus numpy
arrays, no pickle), so a checkpoint from someone else cannot run code when
the stream starts; files have mode ``0o600``.  Checkpoints from older
versions: pickles are refused with a message that says ``--reset``; the
per-key files of version 2 are read once and folded into the series' file
(:meth:`CheckpointStore.legacy`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .datafile import DataFileError, encode_data, read_data, write_atomic
from .stream_config import ConfigError

CHECKPOINT_VERSION = 3
LEGACY_VERSION = 2


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
    """A directory of checkpoint files, one per series (version 2: one per series key)."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, series: str, key: str = "") -> Path:
        """The file of a series (``key=""``), or a version 2 file of one fan-out key."""
        h = hashlib.sha256(f"{series}\0{key}".encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{series}-{key}")[:60]
        return self.root / f"{safe}-{h}.ckpt"

    def _read(self, p: Path) -> tuple[dict, dict]:
        try:
            with open(p, "rb") as f:
                head = f.read(2)
            if head[:1] == b"\x80":
                raise ConfigError(f"checkpoint {p} is from an older version of pipeline.stream "
                                  "(a pickle, which this version never loads); run with --reset "
                                  "to start over")
            meta, arrays = read_data(p)
        except ConfigError:
            raise
        except (DataFileError, OSError) as e:
            raise ConfigError(f"checkpoint {p} is unreadable ({type(e).__name__}: {e}); "
                              "delete it, or run with --reset to start over") from None
        if meta.get("version") not in (CHECKPOINT_VERSION, LEGACY_VERSION):
            raise ConfigError(f"checkpoint {p} is from another version of pipeline.stream; "
                              "run with --reset to start over")
        return meta, arrays

    def load_fleet(self, series: str):
        """``(meta, arrays)`` of the series' file, a :class:`SeriesState` if it is a version 2
        file of an unfanned series, or None if there is none."""
        p = self.path(series)
        if not p.exists():
            return None
        meta, arrays = self._read(p)
        if meta["version"] == LEGACY_VERSION:
            return self._legacy_state(p, meta, arrays)
        if meta.get("series") != series:
            raise ConfigError(f"checkpoint {p} belongs to series {meta.get('series')!r}, not "
                              f"{series!r}; run with --reset to start over")
        return meta, arrays

    @staticmethod
    def snapshot(fleet) -> tuple[str, bytes]:
        """``(series, bytes)``: the fleet's checkpoint as it stands now, to :meth:`save` later
        (after the writes it covers, while the fleet has moved on)."""
        meta, arrays = fleet.get_data()
        return fleet.name, encode_data({"version": CHECKPOINT_VERSION, **meta}, arrays)

    def save(self, snapshot: tuple[str, bytes]) -> None:
        """Write a :meth:`snapshot` atomically to its series' file."""
        name, data = snapshot
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(name), data)

    def _legacy_state(self, p: Path, meta: dict, arrays: dict) -> SeriesState:
        try:
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
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"checkpoint {p} is unreadable ({type(e).__name__}: {e}); "
                              "delete it, or run with --reset to start over") from None

    def legacy(self, series: str) -> list[tuple[Path, SeriesState]]:
        """Version 2 files of the fan-out keys of ``series`` in this directory."""
        out = []
        if not self.root.exists():
            return out
        own = self.path(series)
        for p in sorted(self.root.glob("*.ckpt")):
            if p == own:
                continue
            meta, arrays = self._read(p)
            if meta["version"] == LEGACY_VERSION and meta.get("series") == series:
                out.append((p, self._legacy_state(p, meta, arrays)))
        return out

    def load(self, series: str, key: str = "") -> SeriesState | None:
        """Where one key of a series stands (for people and tests; the stream loads fleets).

        ``detectors`` are left empty; ``saved`` holds each detector's per-key state data.
        """
        data = self.load_fleet(series)
        if data is None:
            p = self.path(series, key)
            if key and p.exists():
                meta, arrays = self._read(p)
                return self._legacy_state(p, meta, arrays)
            return None
        if isinstance(data, SeriesState):
            return data if data.key == key else None
        meta, arrays = data
        try:
            i = meta["keys"].index(key)
        except ValueError:
            return None
        return SeriesState(series=series, key=key, origin_ns=int(arrays["origin"][i]),
                           last_time_ns=int(arrays["last"][i]),
                           period_checked=bool(arrays["checked"][i]),
                           model_version=meta["model_version"],
                           n_samples=int(arrays["n_samples"][i]))

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
            for d in [self.root, *self.root.glob("backfill-*")]:
                for p in [*d.glob("*.ckpt"), *d.glob("*.tmp"), *d.glob(".*.tmp")]:
                    p.unlink()
                    n += p.suffix == ".ckpt"
            for d in self.root.glob("backfill-*"):
                try:
                    d.rmdir()
                except OSError:
                    pass
        return n
