"""EKG sources and the faults injected into them, for :mod:`pipeline.suites`.

Sources, all at 360 Hz (then decimated by :func:`decimate`):

* :func:`load_mitdb208`: the real MIT-BIH record 208 excerpt (5 min, MLII,
  unlabelled, with many natural PVCs and a few large artifacts);
* :func:`synthetic_clean`: :func:`pipeline.datasets.synthetic_ekg` without
  its own anomalies (Gaussian P-QRS-T beats, fast: hours in a second);
* :func:`ecgsyn_clean`: neurokit2's ECGSYN (McSharry et al. 2003), a
  dynamical model with realistic heart-rate variability (~17 s of CPU per
  1000 s of signal at :data:`ECGSYN_TOLERANCES`).

Faults (:data:`EKG_FAULTS`), each one labelled event ``[start, end)``:

========== ======================================================= ==================
type       what is done to the signal                              label
========== ======================================================= ==================
zeros      samples set to 0 for 0.2-0.5 s (the tutorial's fault)  the zeroed samples
hold       the last value held for 0.5 s (a frozen ADC)            the held samples
spike      one sample + or - 1-2 x the local QRS amplitude         that one sample
noise      1 s of white noise, sd 0.1-0.25 x the QRS amplitude     the noisy second
step       baseline step of 0.4-0.8 x the QRS amplitude, held 8 s, its first second
           then back over 8 s (a slow return, like wander)
amplitude  waves scaled by 0.4-0.6 or 1.6-2.0 around the local     the scaled beats
           baseline for 3-5 s (several beats; 0.1 s tapers)
ectopic    a wide premature beat (QRS 0.06-0.09 s wide, inverted   -0.1 s to +0.45 s
           T, either polarity) at 60 % of an RR interval           around its peak
========== ======================================================= ==================

Fault times are drawn once per case from the 360 Hz signal (its local QRS
amplitude, its R peaks) and snapped to the 1/90 s grid, so the 360 Hz and
90 Hz versions of a case carry the same faults at the same times.  Values
are quantized to 0.005 mV (MIT-BIH's 200 units per mV) after injection.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal

__all__ = ["EKG_FAULTS", "QUANTUM_MV", "Fault", "mitdb208_path", "load_mitdb208", "synthetic_clean",
           "ecgsyn_clean", "decimate", "plan_faults", "inject", "quantize"]

EKG_FAULTS = ("zeros", "hold", "spike", "noise", "step", "amplitude", "ectopic")
"""Fault types injected into the EKG suites."""
QUANTUM_MV = 0.005
"""ADC step (mV) of the generated EKG (MIT-BIH: 200 units per mV)."""
RATE = 360
GRID = 90  # fault times are multiples of 1/GRID s, on the grid of every rate used
RECOVERY_S = 5.0  # normal signal after each fault before the next one may start
STEP_HOLD_S, STEP_RAMP_S = 8.0, 8.0
MITDB_ENV = "PIPELINE_MITDB208"
ROOT = Path(__file__).resolve().parent.parent
MITDB_DEFAULT = ROOT.parent / "shared" / "datasets" / "mitdb208_scipy_excerpt"
MITDB_FILE = "ecg208_mlii_360hz.csv"


@dataclass(frozen=True)
class Fault:
    """One injected fault: its type, start (s, on the 1/90 s grid) and drawn parameters."""

    type: str
    start: float
    params: dict = field(default_factory=dict)

    def label(self, rate: float) -> tuple[float, float]:
        """The labelled interval ``[start, end)`` in seconds at ``rate`` Hz."""
        p = self.params
        if self.type == "spike":
            return self.start, self.start + 1.0 / rate
        if self.type == "ectopic":
            return p["peak"] - 0.1, p["peak"] + 0.45
        if self.type == "step":
            return self.start, self.start + 1.0
        return self.start, self.start + p["duration"]

    @property
    def occupied_s(self) -> float:
        """How long the fault changes the signal, from its start."""
        if self.type == "step":
            return STEP_HOLD_S + STEP_RAMP_S
        if self.type == "ectopic":
            return self.params["peak"] + 0.6 - self.start
        if self.type == "spike":
            return 1.0 / GRID
        return self.params["duration"]


# ---------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------
def mitdb208_path(path: str | os.PathLike | None = None) -> Path | None:
    """The record 208 CSV: ``path`` (file or folder), else ``$PIPELINE_MITDB208``, else
    ``../shared/datasets/mitdb208_scipy_excerpt/`` beside the repository; None when absent."""
    for cand in (path, os.environ.get(MITDB_ENV), MITDB_DEFAULT):
        if not cand:
            continue
        p = Path(cand)
        p = p / MITDB_FILE if p.is_dir() else p
        if p.is_file():
            return p
        if cand is path:
            raise FileNotFoundError(f"no {MITDB_FILE} at {cand}; pass the folder of the record 208 excerpt")
    return None


def load_mitdb208(path: Path) -> np.ndarray:
    """The 300 s, 360 Hz MLII excerpt of MIT-BIH record 208, in mV."""
    frame = pd.read_csv(path)
    if list(frame.columns[:2]) != ["time_s", "value"] or len(frame) != 300 * RATE:
        raise ValueError(f"{path} is not the record 208 excerpt (time_s,value; 108000 rows at 360 Hz)")
    return frame["value"].to_numpy(np.float64)


def synthetic_clean(duration_s: float, seed: int) -> np.ndarray:
    """``pipeline.datasets.synthetic_ekg`` at 360 Hz with none of its own anomalies."""
    from .datasets import synthetic_ekg

    data, anomalies = synthetic_ekg(duration_s=duration_s, rate=RATE, seed=seed, normal_s=duration_s - 1)
    assert len(anomalies) == 0
    return data["value"].to_numpy(np.float64)


ECGSYN_TOLERANCES = {"rtol": 1e-6, "atol": 1e-8}
"""Tolerances ECGSYN's ODE is integrated with.  neurokit2 calls ``scipy.integrate.solve_ivp`` with its
defaults (``rtol=1e-3``), whose adaptive steps now and then step over part of a wave: the baseline
state jumps (by up to 1.2 mV in the test split's 1500 s) and relaxes back over ~2 s, an unlabelled
glitch that is the integrator's, not an EKG's.  At these tolerances the signal is within 0.001 mV of
``rtol=1e-8`` (about 4x the CPU of the default)."""


def _ecgsyn(duration_s: float, seed: int, heart_rate: float, tolerances: dict | None) -> np.ndarray:
    """neurokit2's ECGSYN at 360 Hz, its ODE integrated with ``tolerances`` (None: solve_ivp's defaults)."""
    import neurokit2 as nk
    import scipy.integrate

    n = int(round(duration_s * RATE))
    solve_ivp = scipy.integrate.solve_ivp
    if tolerances:  # neurokit2 offers no tolerance argument; it looks solve_ivp up on scipy.integrate
        scipy.integrate.solve_ivp = functools.partial(solve_ivp, **tolerances)
    try:
        x = nk.ecg_simulate(duration=duration_s, length=n, sampling_rate=RATE, method="ecgsyn", heart_rate=heart_rate,
                            heart_rate_std=3, noise=0, random_state=seed)
    finally:
        scipy.integrate.solve_ivp = solve_ivp
    return np.asarray(x, dtype=np.float64)


def ecgsyn_clean(duration_s: float, seed: int, heart_rate: float = 70.0) -> np.ndarray:
    """ECGSYN (neurokit2) at 360 Hz, plus 0.01 mV white noise and slow baseline wander.

    Its ODE is integrated at :data:`ECGSYN_TOLERANCES`.
    Raises ImportError when neurokit2 is not installed (``pip install neurokit2``).
    """
    x = _ecgsyn(duration_s, seed, heart_rate, ECGSYN_TOLERANCES)
    n = len(x)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    wander = (0.06 * np.sin(2 * np.pi * 0.22 * t + rng.uniform(0, 2 * np.pi))
              + 0.1 * np.sin(2 * np.pi * 0.013 * t + rng.uniform(0, 2 * np.pi)))
    return x + wander + 0.01 * rng.standard_normal(n)


def decimate(x360: np.ndarray, rate: int) -> np.ndarray:
    """360 Hz to ``rate`` Hz (a divisor of 360) with ``scipy.signal.resample_poly``.

    A zero-phase polyphase FIR (Kaiser window) low-pass at the new Nyquist;
    output sample ``j`` is at time ``j / rate`` (input sample ``j * 360 / rate``);
    edges padded with a fitted line so that the first and last samples do not dip.
    """
    if RATE % rate:
        raise ValueError(f"rate must divide {RATE}, got {rate}")
    if rate == RATE:
        return x360.copy()
    return signal.resample_poly(x360, 1, RATE // rate, padtype="line")


def quantize(x: np.ndarray, q: float = QUANTUM_MV) -> np.ndarray:
    """Round to the ADC step ``q`` (mV)."""
    return np.round(x / q) * q


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------
def _qrs_amplitude(x360, t):
    lo, hi = max(0, int((t - 3) * RATE)), int((t + 3) * RATE)
    w = x360[lo:hi]
    return float(np.percentile(w, 99) - np.median(w))


def _r_peaks(x360, t0, t1):
    """Approximate R peak times (s) in [t0, t1) of the 360 Hz signal (band-pass 5-25 Hz energy)."""
    lo, hi = max(0, int(t0 * RATE)), min(len(x360), int(t1 * RATE))
    sos = signal.butter(2, [5, 25], btype="band", fs=RATE, output="sos")
    e = signal.sosfiltfilt(sos, x360[lo:hi]) ** 2
    peaks, _ = signal.find_peaks(e, distance=int(0.3 * RATE), height=0.2 * e.max())
    return (lo + peaks) / RATE


def _draw(kind, start, rng, x360):
    amp = _qrs_amplitude(x360, start)
    sign = float(rng.choice([-1.0, 1.0]))
    if kind == "zeros":
        return {"duration": round(float(rng.uniform(0.2, 0.5)) * GRID) / GRID}
    if kind == "hold":
        return {"duration": 0.5}
    if kind == "spike":
        return {"delta": sign * amp * float(rng.uniform(1.0, 2.0))}
    if kind == "noise":
        return {"duration": 1.0, "sd": amp * float(rng.uniform(0.1, 0.25)),
                "seed": int(rng.integers(2**31))}
    if kind == "step":
        return {"delta": sign * amp * float(rng.uniform(0.4, 0.8))}
    if kind == "amplitude":
        k = float(rng.uniform(0.4, 0.6)) if rng.random() < 0.5 else float(rng.uniform(1.6, 2.0))
        return {"duration": round(float(rng.uniform(3.0, 5.0)) * GRID) / GRID, "factor": k}
    if kind == "ectopic":
        r = _r_peaks(x360, start, start + 4.0)
        rr = np.diff(r)
        ok = np.flatnonzero((rr > 0.45) & (rr < 2.0))
        peak = r[ok[0]] + 0.6 * rr[ok[0]] if len(ok) else start + 0.5
        peak = max(round(peak * GRID) / GRID, start + 0.1)
        return {"peak": peak, "height": sign * amp * float(rng.uniform(1.0, 1.5)),
                "width": float(rng.uniform(0.03, 0.045))}
    raise ValueError(f"unknown fault type {kind!r}; known: {', '.join(EKG_FAULTS)}")


def plan_faults(x360: np.ndarray, t_from: float, t_to: float, counts: dict, rng: np.random.Generator,
                keep_out=(), lead_in: float = 10.0) -> list[Fault]:
    """Place ``counts[type]`` faults of each type in ``[t_from + lead_in, t_to)``, apart and at random.

    Faults come in shuffled order, each followed by :data:`RECOVERY_S` of
    normal signal; the slack is split at random between them.  Nothing is
    placed in a ``keep_out`` interval ``(a, b)`` (seconds).

    Raises
    ------
    ValueError
        If the faults do not fit.
    """
    kinds = [k for k, n in counts.items() for _ in range(int(n))]
    rng.shuffle(kinds)
    # the worst-case occupied time of each kind, to size the slack
    worst = {"zeros": 0.5, "hold": 0.5, "spike": 0.02, "noise": 1.0, "step": STEP_HOLD_S + STEP_RAMP_S,
             "amplitude": 5.0, "ectopic": 5.0}
    need = sum(worst[k] + RECOVERY_S for k in kinds)
    blocked = sum(max(0.0, min(b, t_to) - max(a, t_from)) for a, b in keep_out)
    slack = (t_to - t_from - lead_in) - blocked - need
    if slack < 0:
        raise ValueError(f"{len(kinds)} faults need {need + blocked + lead_in:.0f} s, "
                         f"the interval [{t_from}, {t_to}) has {t_to - t_from:.0f} s")
    gaps = rng.dirichlet(np.ones(len(kinds) + 1)) * slack
    cursor, faults = t_from + lead_in, []
    for kind, gap in zip(kinds, gaps, strict=False):
        start = np.ceil((cursor + gap) * GRID) / GRID
        for a, b in sorted(keep_out):
            if start < b and start + worst[kind] + RECOVERY_S > a:
                start = np.ceil(b * GRID) / GRID
        fault = Fault(kind, float(start), _draw(kind, float(start), rng, x360))
        faults.append(fault)
        cursor = start + max(fault.occupied_s, 0.0) + RECOVERY_S
    if faults and cursor - RECOVERY_S > t_to:
        raise ValueError(f"the faults overran [{t_from}, {t_to}) (keep-out intervals too long)")
    return faults


# ---------------------------------------------------------------------------
# injection
# ---------------------------------------------------------------------------
def _idx(t, rate):
    return int(round(t * rate))


def inject(x: np.ndarray, rate: int, faults) -> tuple[np.ndarray, pd.DataFrame]:
    """Apply ``faults`` to a copy of ``x`` (sampled at ``rate`` Hz, from time 0).

    Returns the faulty signal (not yet quantized) and the labels as a table
    ``start, end, type`` (seconds).
    """
    y = np.array(x, dtype=np.float64)
    n = len(y)
    t = np.arange(n) / rate
    rows = []
    for f in faults:
        p = f.params
        i = _idx(f.start, rate)
        if f.type == "zeros":
            y[i:_idx(f.start + p["duration"], rate)] = 0.0
        elif f.type == "hold":
            y[i:_idx(f.start + p["duration"], rate)] = y[i - 1]
        elif f.type == "spike":
            y[i] += p["delta"]
        elif f.type == "noise":
            j = _idx(f.start + p["duration"], rate)
            y[i:j] += p["sd"] * np.random.default_rng(p["seed"]).standard_normal(j - i)
        elif f.type == "step":
            k = np.clip((t[i:] - f.start - STEP_HOLD_S) / STEP_RAMP_S, 0.0, 1.0)
            y[i:] += p["delta"] * (1.0 - k)
        elif f.type == "amplitude":
            j = _idx(f.start + p["duration"], rate)
            pad = _idx(1.0, rate)
            a, b = max(0, i - pad), min(n, j + pad)
            base = signal.medfilt(y[a:b], 2 * (_idx(0.6, rate) // 2) + 1)[i - a:j - a]
            ramp = np.clip(np.minimum(t[i:j] - f.start, f.start + p["duration"] - t[i:j]) / 0.1, 0, 1)
            w = np.sin(0.5 * np.pi * ramp) ** 2
            y[i:j] += (p["factor"] - 1.0) * w * (y[i:j] - base)
        elif f.type == "ectopic":
            c, w, h = p["peak"], p["width"], p["height"]
            a, b = max(0, _idx(c - 0.4, rate)), min(n, _idx(c + 0.7, rate))
            tt = t[a:b] - c
            for off, amp, width in ((0.0, 1.0, w), (1.7 * w, -0.32, 0.85 * w), (0.30, -0.25, 0.06)):
                y[a:b] += h * amp * np.exp(-0.5 * ((tt - off) / width) ** 2)
        else:
            raise ValueError(f"unknown fault type {f.type!r}")
        s, e = f.label(rate)
        rows.append((round(s, 6), round(e, 6), f.type))
    return y, pd.DataFrame(rows, columns=["start", "end", "type"])
