"""Shards: the keys of a fleet split over N stream processes by a stable hash.

``--shard K/N`` (or ``shard = "K/N"`` in ``[stream]``) makes a stream score
only the series keys whose shard is ``K`` (1-based) of ``N``: the first 8
bytes of ``sha256(series name + NUL + key)`` as an unsigned integer, modulo
``N``, plus 1.  The hash depends on nothing but the series name, the key and
``N``: a key never moves while ``N`` stays, whatever keys come and go, and
every process computes the same split without talking to the others.  A
series without fan-out is one key (``""``): one shard scores all of it.

Each shard keeps its checkpoints (and its alert outbox) in its own
subdirectory ``shard-K-of-N`` of the checkpoint directory.  Changing ``N``
moves keys between shards: stop every shard first, then start the new ones
with ``--reset`` (or a new checkpoint directory) and a backfill of the gap.

>>> Shard.parse("2/3")
Shard(k=2, n=3)
>>> sorted({Shard(k, 3).owns("temp", "s001") for k in (1, 2, 3)})
[False, True]
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Shard", "shard_of"]

_FORM = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(series: str, key: str, n: int) -> int:
    """The shard (1..n) of one series key.

    >>> shard_of("temp", "s001", 1)
    1
    """
    h = hashlib.sha256(f"{series}\0{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") % n + 1


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` (1 <= k <= n)."""

    k: int
    n: int

    @classmethod
    def parse(cls, text, where: str = "--shard") -> Shard:
        """``"K/N"`` with 1 <= K <= N; raise ``ValueError`` saying what is wrong otherwise."""
        m = _FORM.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"{where} must look like K/N (this process is shard K of N, "
                             f"1 <= K <= N, e.g. 1/4), got {text!r}")
        k, n = int(m.group(1)), int(m.group(2))
        if n < 1 or not 1 <= k <= n:
            raise ValueError(f"{where} must be K/N with 1 <= K <= N (shards are counted from "
                             f"1), got {text!r}")
        return cls(k, n)

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    @property
    def dirname(self) -> str:
        """The checkpoint subdirectory of this shard."""
        return f"shard-{self.k}-of-{self.n}"

    def owns(self, series: str, key: str) -> bool:
        return self.n == 1 or shard_of(series, key, self.n) == self.k

    def owned(self, series: str, keys) -> np.ndarray:
        """A mask over ``keys``: the ones this shard scores."""
        return np.fromiter((self.owns(series, k) for k in keys), bool, len(keys))
