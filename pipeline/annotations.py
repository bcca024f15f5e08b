"""WFDB annotations and sample grids as the project's tables: exact sample times, labelled events.

Pure functions, no I/O: :mod:`pipeline.physionet` reads the records and
writes the files.  Events are rows ``start,end,type`` in seconds from the
first sample, the layout of every labels file in this project.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

__all__ = ["BEAT_LABELS", "NORMAL_BEATS", "HALF_WIDTH_S", "sample_times_ns", "format_seconds",
           "beat_events", "apnea_events"]

NORMAL_BEATS = frozenset("NLRej")
"""Beat labels that are not events: normal, bundle branch block (L, R), atrial/nodal escape."""
BEAT_LABELS = frozenset("NLRBAaJSVrFejnE/fQ?!")
"""WFDB's QRS (beat) labels, as in the WFDB library's ``isqrs`` (``!`` flutter wave included)."""
HALF_WIDTH_S = 0.3
"""Default half-width of a beat event around the annotated beat, in seconds."""


def sample_times_ns(n: int, rate: float) -> np.ndarray:
    """Exact ``round(k * 1e9 / rate)`` for ``k = 0..n-1`` (half up), as int64 ns.

    Examples
    --------
    >>> sample_times_ns(4, 360).tolist()
    [0, 2777778, 5555556, 8333333]
    """
    return _to_ns(np.arange(n, dtype=np.int64), rate)


def _to_ns(samples: np.ndarray, rate: float) -> np.ndarray:
    """Sample numbers -> exact int64 ns from sample 0 (rounded half up)."""
    f = Fraction(str(rate))
    num, den = f.numerator, f.denominator  # t_k = k * den / num seconds
    k = np.asarray(samples, np.int64)
    if len(k) and int(k.max()) * 10**9 * den * 2 >= 2**62:
        raise ValueError(f"sample {int(k.max())} at {rate} Hz does not fit int64 nanoseconds")
    return (k * (10**9 * den) * 2 + num) // (2 * num)


def format_seconds(ns: np.ndarray) -> list[str]:
    """Integer ns as decimal seconds with the fewest decimals that are exact for all of them.

    Examples
    --------
    >>> format_seconds(np.array([0, 10_000_000, 1_230_000_000]))
    ['0.00', '0.01', '1.23']
    >>> format_seconds(np.array([0, 2777778]))
    ['0.000000000', '0.002777778']
    """
    ns = np.asarray(ns, np.int64)
    if (ns < 0).any():
        raise ValueError("times must be >= 0")
    d = next(d for d in range(10) if not (ns % 10 ** (9 - d)).any())
    if d == 0:
        return [str(t) for t in (ns // 10**9).tolist()]
    q = ns // 10 ** (9 - d)
    return [f"{s}.{f:0{d}d}" for s, f in zip((q // 10**d).tolist(), (q % 10**d).tolist(),
                                             strict=True)]


def _merge_same_type(rows: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Merge overlapping or touching intervals (int ns) of the same type; other types never merge."""
    out = []
    for typ in sorted({r[2] for r in rows}):
        cur = None
        for s, e, _ in sorted(r for r in rows if r[2] == typ):
            if cur is not None and s <= cur[1]:
                cur[1] = max(cur[1], e)
                continue
            if cur is not None:
                out.append(tuple(cur))
            cur = [s, e, typ]
        if cur is not None:
            out.append(tuple(cur))
    return out


def _events_frame(rows) -> pd.DataFrame:
    """int-ns rows -> the ``start,end,type`` table in seconds (rounded to the microsecond)."""
    rows = sorted(_merge_same_type(rows), key=lambda r: (r[0], r[1], r[2]))
    return pd.DataFrame({"start": [round(r[0] / 1e9, 6) for r in rows],
                         "end": [round(r[1] / 1e9, 6) for r in rows],
                         "type": [r[2] for r in rows]}).astype({"start": float, "end": float})


def beat_events(samples, symbols, aux_notes, rate: float, n_samples: int,
                half_width: float = HALF_WIDTH_S) -> pd.DataFrame:
    """MIT-BIH reference annotations as labelled events (seconds from the first sample).

    * A **beat** whose label is not normal (every WFDB beat label except
      ``N L R e j``; :data:`BEAT_LABELS`) is an event of that label, from
      ``half_width`` s before to ``half_width`` s after the beat.
    * A **rhythm** change (label ``+``, ``aux_note`` like ``(AFIB``) starts an
      event of that rhythm that lasts until the next rhythm annotation or the
      last sample; normal sinus rhythm ``(N`` is no event.
    * Events of the same type that overlap or touch are merged (a run of
      PVCs is one ``V`` event); events of different types are kept apart and
      may overlap. Times are clipped to the series (0 .. last sample).
      Other non-beat annotations (noise ``~``, artifact ``|``, ``[``/``]``...)
      are not events.

    Examples
    --------
    >>> ev = beat_events([10, 50, 52, 100, 300], ["N", "V", "V", "+", "+"],
    ...                  ["", "", "", "(AFIB", "(N"], rate=100, n_samples=400, half_width=0.1)
    >>> ev.values.tolist()
    [[0.4, 0.62, 'V'], [1.0, 3.0, '(AFIB']]
    """
    s = np.asarray(samples, np.int64)
    keep = (s >= 0) & (s < n_samples)
    s, symbols = s[keep], [x for x, k in zip(symbols, keep, strict=True) if k]
    aux = [str(a).strip("\x00 ") for a, k in zip(aux_notes, keep, strict=True) if k]
    t, last = _to_ns(s, rate).tolist(), int(_to_ns([n_samples - 1], rate)[0])
    hw = round(half_width * 10**9)
    rows = []
    rhythm = [(ti, a) for ti, sym, a in zip(t, symbols, aux, strict=True)
              if sym == "+" and a.startswith("(")]
    ends = [r[0] for r in rhythm[1:]] + [last] if rhythm else []
    for (start, name), end in zip(rhythm, ends, strict=True):
        if name != "(N" and end > start:
            rows.append((start, end, name))
    for ti, sym in zip(t, symbols, strict=True):
        if sym in BEAT_LABELS and sym not in NORMAL_BEATS:
            rows.append((max(0, ti - hw), min(last, ti + hw), sym))
    return _events_frame(rows)


def apnea_events(samples, symbols, rate: float, n_samples: int) -> pd.DataFrame:
    """Apnea-ECG minute labels as events: each ``A`` minute (the 60 s from its annotation).

    Consecutive apnea minutes merge into one ``apnea`` event; ``N`` minutes are no event.

    Examples
    --------
    >>> apnea_events([0, 6000, 12000, 18000], ["N", "A", "A", "N"], rate=100,
    ...              n_samples=24000).values.tolist()
    [[60.0, 180.0, 'apnea']]
    """
    s = np.asarray(samples, np.int64)
    t, last = _to_ns(s, rate).tolist(), int(_to_ns([n_samples - 1], rate)[0])
    rows = [(ti, min(last, ti + 60 * 10**9), "apnea")
            for ti, si, sym in zip(t, s.tolist(), symbols, strict=True)
            if sym == "A" and 0 <= si < n_samples]
    return _events_frame(rows)
