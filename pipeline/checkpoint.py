"""Checkpoints of ``python -m pipeline.stream``: where each series stands, and its rolling state.

One file per (series, fan-out tag value), written atomically (temporary
file, fsync, rename) *after* the scores it covers were written to InfluxDB.
A ``kill -9`` at any moment therefore leaves either the old or the new
checkpoint, never a torn one, and a restart redoes at most one batch,
rewriting identical points (same series, tags and timestamps overwrite).

The state objects (:class:`~pipeline.scoring.SegmentScorer`,
:class:`~pipeline.zscore.RollingZScore`) are pickled as they are.  Pickle
files must only be read from a directory you trust, like any state file of
a service.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from .baselines import EWMAZScore
from .scoring import SegmentScorer
from .stream_config import ConfigError
from .zscore import RollingZScore

CHECKPOINT_VERSION = 1


@dataclass
class SeriesState:
    """Everything needed to resume one (series, fan-out tag value) exactly."""

    series: str
    key: str
    origin_ns: int | None
    last_time_ns: int | None = None
    period_checked: bool = False
    model_version: str | None = None
    zscore_params: dict | None = None
    scorer: SegmentScorer | None = None
    zstate: RollingZScore | None = None
    long_params: dict | None = None
    lstate: EWMAZScore | None = None
    n_samples: int = 0
    version: int = CHECKPOINT_VERSION


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
                st = pickle.load(f)
        except Exception as e:  # truncated or foreign file
            raise ConfigError(f"checkpoint {p} is unreadable ({type(e).__name__}: {e}); "
                              "delete it, or run with --reset to start over") from None
        if not isinstance(st, SeriesState) or st.version != CHECKPOINT_VERSION:
            raise ConfigError(f"checkpoint {p} is from another version of pipeline.stream; "
                              "run with --reset to start over")
        return st

    def save(self, st: SeriesState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.path(st.series, st.key)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(st, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)

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
