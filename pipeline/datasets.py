"""Synthetic data the project generates itself (no downloads).

* :func:`synthetic_ekg`: a 360 Hz EKG-like series (Gaussian P-QRS-T beats
  with heart-rate variability, baseline wander and noise) with labelled
  anomalies injected after a normal lead-in, for demos and honest tests.
* :func:`synthetic_temperature`: a fleet of 2 s-cadence temperature sensors,
  with a spike, an overnight drift and one sensor off by a few degrees.

``python -m pipeline.datasets`` (or ``... generate``) rewrites the CSV files in
``datasets/``; ``python -m pipeline.datasets fetch NAME`` converts real EKG
from PhysioNet (:mod:`pipeline.physionet`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# (offset from R peak in s, amplitude mV, width s) of P, Q, R, S, T waves
_BEAT = [(-0.20, 0.15, 0.025), (-0.035, -0.15, 0.010), (0.0, 1.2, 0.012),
         (0.035, -0.25, 0.010), (0.25, 0.30, 0.045)]
# a premature ventricular beat: no P, wide tall QRS, inverted T
_PVC = [(0.0, 1.9, 0.035), (0.06, -0.6, 0.03), (0.30, -0.4, 0.06)]


def _add_beat(x, t, r_time, waves, scale=1.0):
    for off, amp, width in waves:
        c = r_time + off
        lo, hi = np.searchsorted(t, [c - 5 * width, c + 5 * width])
        x[lo:hi] += scale * amp * np.exp(-0.5 * ((t[lo:hi] - c) / width) ** 2)


def synthetic_ekg(duration_s: float = 300.0, rate: int = 360, seed: int = 208,
                  normal_s: float = 180.0):
    """Generate an EKG-like series with labelled anomalies after ``normal_s``.

    Returns
    -------
    data : DataFrame with columns ``time_s`` (sample / rate) and ``value`` (mV)
    anomalies : DataFrame with columns ``start_s``, ``end_s``, ``kind``

    Examples
    --------
    >>> data, anomalies = synthetic_ekg(duration_s=20, normal_s=10)
    >>> len(data), list(anomalies.kind)[:1]
    (7200, ['pvc'])
    """
    if normal_s >= duration_s:
        raise ValueError(f"normal_s must be < duration_s, got {normal_s} >= {duration_s}")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    t = np.arange(n) / rate
    x = np.zeros(n)
    beats = []
    r = 0.4
    while r < duration_s - 0.5:
        beats.append(r)
        r += 0.8 + 0.04 * rng.standard_normal()
    anomalies = []
    # anomalies every ~12 s after the normal lead-in, cycling over kinds
    kinds = ["pvc", "dropout", "noise", "pvc", "tall_t"]
    slots = np.arange(normal_s + 5, duration_s - 3, 12.0)
    special = {}
    for i, s in enumerate(slots):
        j = int(np.searchsorted(beats, s))
        if j < len(beats):
            special[j] = kinds[i % len(kinds)]
    for j, rt in enumerate(beats):
        kind = special.get(j)
        scale = 1 + 0.05 * rng.standard_normal()
        if kind == "pvc":
            _add_beat(x, t, rt, _PVC, scale)
            anomalies.append((rt - 0.15, rt + 0.5, "pvc"))
        elif kind == "tall_t":
            _add_beat(x, t, rt, _BEAT[:4], scale)
            _add_beat(x, t, rt, [(0.25, 0.9, 0.045)], scale)
            anomalies.append((rt + 0.1, rt + 0.45, "tall_t"))
        else:
            _add_beat(x, t, rt, _BEAT, scale)
    x += 0.08 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))  # breathing wander
    x += 0.02 * rng.standard_normal(n)
    for j, kind in special.items():
        rt = beats[j]
        if kind == "dropout":
            lo, hi = np.searchsorted(t, [rt - 0.3, rt + 0.5])
            x[lo:hi] = x[lo]  # the lead comes loose: a flat line
            anomalies.append((t[lo], t[hi - 1], "dropout"))
        elif kind == "noise":
            lo, hi = np.searchsorted(t, [rt - 0.3, rt + 0.4])
            x[lo:hi] += 0.5 * rng.standard_normal(hi - lo)
            anomalies.append((t[lo], t[hi - 1], "noise"))
    data = pd.DataFrame({"time_s": t, "value": np.round(x, 4)})
    anom = pd.DataFrame(sorted(anomalies), columns=["start_s", "end_s", "kind"]).round(4)
    return data, anom


def synthetic_temperature(hours: float = 12.0, n_sensors: int = 5, cadence_s: float = 2.0,
                          seed: int = 7):
    """A fleet of temperature sensors at a 2 s cadence (long format).

    Sensor ``s00`` gets a 3-sample spike of +4 degC at 1 h; sensor ``s01``
    drifts linearly by +5 degC over the last 8 h (the slow drift a 30 s
    window cannot see); sensor ``s02`` is offset by +3 degC throughout
    (only a fleet baseline sees it).

    Returns
    -------
    DataFrame with columns ``time_s``, ``sensor``, ``value``
    """
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 / cadence_s)
    t = np.arange(n) * cadence_s
    frames = []
    for s in range(n_sensors):
        v = 21.0 + 0.5 * np.sin(2 * np.pi * t / 86400) + 0.1 * rng.standard_normal(n)
        if s == 0:
            k = int(3600 / cadence_s)
            v[k:k + 3] += 4.0
        if s == 1:
            start = max(0, n - int(8 * 3600 / cadence_s))
            v[start:] += np.linspace(0, 5.0, n - start)
        if s == 2:
            v += 3.0
        frames.append(pd.DataFrame({"time_s": t, "sensor": f"s{s:02d}", "value": np.round(v, 3)}))
    return pd.concat(frames, ignore_index=True)


def write_datasets(folder: Path) -> list[Path]:
    """Write the synthetic EKG and its labels into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    data, anom = synthetic_ekg()
    paths = [folder / "synthetic_ekg.csv", folder / "synthetic_ekg_anomalies.csv"]
    data.to_csv(paths[0], index=False, float_format="%.6f")
    anom.to_csv(paths[1], index=False)
    return paths


def _generate(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.datasets [generate]",
                                description="regenerate the synthetic data in datasets/")
    p.add_argument("--out", default="datasets", help="folder (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        paths = write_datasets(Path(args.out))
    except OSError as e:
        print(f"error: cannot write to {args.out}: {e.strerror or e}; pass a writable --out",
              file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


USAGE = """\
usage: python -m pipeline.datasets [generate] [--out DIR]
       python -m pipeline.datasets fetch NAME [--record R] [--out DIR] [--load --db DB] ...

  generate   regenerate the synthetic data in datasets/ (the default, also with no argument)
  fetch      real EKG from PhysioNet (a02, apnea-ecg, mitdb) as CSV series + events;
             see `python -m pipeline.datasets fetch --help`
"""


def main(argv=None) -> int:
    """``python -m pipeline.datasets``: ``generate`` (default) or ``fetch``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    if argv[:1] == ["fetch"]:
        from .physionet import add_fetch_args, run_fetch

        p = argparse.ArgumentParser(
            prog="python -m pipeline.datasets fetch",
            description="Fetch a PhysioNet record as the project's CSV series (time_s,value) "
                        "and labelled events (start,end,type); optionally load it.")
        add_fetch_args(p)
        return run_fetch(p.parse_args(argv[1:]))
    return _generate(argv[1:] if argv[:1] == ["generate"] else argv)


if __name__ == "__main__":
    sys.exit(main())
