"""Throughput of the rolling z-score, beside the tutorial's way of computing it.

    python bench/bench_zscore.py            # 5M samples, best of 3
    python bench/bench_zscore.py --quick    # 1M samples, for a smoke run

Rows (samples per second, best of ``--repeat`` timed runs after one untimed
warm-up run, so that first-touch page faults of fresh output arrays are not
counted):

* ``rolling_zscore``: the vectorized batch function on ``--n`` samples of
  plain noise (sigma 0.1), of the same with a 20-sigma spike every 10k
  samples (the data of every other row, and the row checked against the
  target), and with a 1e4-sigma "sentinel" glitch every 10k samples (each
  forces exact recomputation of up to 128 windows behind it: the slow case).
* ``update_many``: the streaming object fed ``--chunk``-sample batches.
* ``update``: the streaming object fed one Python float at a time.
* ``ewma_zscore`` / ``EWMAZScore.update``: the long-horizon baseline.
* ``tutorial``: the Plexus tutorial's way (a ``deque(maxlen=15)``,
  ``statistics.mean`` / ``statistics.stdev`` per sample, the sample inside its
  own window, a streak counter), run on a ``--tutorial-n`` slice and
  extrapolated.

Ratios are against the tutorial row measured in the same run.  The targets
(vectorized >= 50M samples/s, ``update`` >= 500k samples/s) are checked and
printed; the exit status is 0 either way (this is not a test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import deque

import numpy as np

from pipeline.baselines import EWMAZScore, ewma_zscore
from pipeline.zscore import RollingZScore, rolling_zscore

TARGET_VECTORIZED = 50e6
TARGET_UPDATE = 500e3


def tutorial_detector(values, window=15, threshold=3.0, streak=3):
    """The tutorial's loop: deque window including the current sample, stdev
    per sample, 0 when the std is 0, |z| > 3 for 3 samples emits."""
    buf = deque(maxlen=window)
    run = 0
    out = []
    for v in values:
        buf.append(v)
        if len(buf) < window:
            out.append(0.0)
            continue
        sd = statistics.stdev(buf)
        z = 0.0 if sd == 0 else (v - statistics.mean(buf)) / sd
        run = run + 1 if abs(z) > threshold else 0
        out.append(abs(z) if run >= streak else 0.0)
    return out


def best_of(fn, repeat, warmup=True):
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5_000_000, help="samples, vectorized (default %(default)s)")
    p.add_argument("--stream-n", type=int, default=500_000,
                   help="samples fed to update() one at a time (default %(default)s)")
    p.add_argument("--chunk", type=int, default=100_000, help="update_many batch (default %(default)s)")
    p.add_argument("--tutorial-n", type=int, default=30_000,
                   help="samples for the tutorial-style loop (default %(default)s)")
    p.add_argument("--window", type=int, default=15)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="1M samples, 100k per-sample updates")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.stream_n, a.tutorial_n = 1_000_000, 100_000, 10_000

    rng = np.random.default_rng(a.seed)
    x = 21.0 + 0.1 * rng.standard_normal(a.n)
    spikes = rng.integers(0, a.n, max(1, a.n // 10_000))
    x[spikes] += 2.0  # 20 sigma
    xs_list = x[:a.stream_n].tolist()
    tut_list = x[:a.tutorial_n].tolist()
    w = a.window

    rows = []

    def run_update(cls_make, data):
        det = cls_make()
        u = det.update
        for v in data:
            u(v)

    def run_many(make):
        det = make()
        for i in range(0, a.n, a.chunk):
            det.update_many(x[i:i + a.chunk])

    t_tut = best_of(lambda: tutorial_detector(tut_list, w), a.repeat, warmup=False)
    tut_rate = a.tutorial_n / t_tut
    rows.append(("tutorial (deque + statistics.stdev)", a.tutorial_n, t_tut))
    clean = 21.0 + 0.1 * np.random.default_rng(a.seed + 1).standard_normal(a.n)
    t = best_of(lambda: rolling_zscore(clean, window=w), a.repeat)
    rows.append(("rolling_zscore (vectorized), plain noise", a.n, t))
    clean_rate = a.n / t
    t = best_of(lambda: rolling_zscore(x, window=w), a.repeat)
    rows.append(("rolling_zscore (vectorized), + 20-sigma spikes", a.n, t))
    vec_rate = a.n / t
    glitch = clean.copy()
    glitch[rng.integers(0, a.n, max(1, a.n // 10_000))] = 1e3  # sentinel readings
    t = best_of(lambda: rolling_zscore(glitch, window=w), a.repeat)
    rows.append(("rolling_zscore (vectorized), + 1e4-sigma glitches", a.n, t))
    t = best_of(lambda: run_many(lambda: RollingZScore(window=w)), a.repeat)
    rows.append((f"RollingZScore.update_many ({a.chunk:,} chunks)", a.n, t))
    t = best_of(lambda: run_update(lambda: RollingZScore(window=w), xs_list), a.repeat)
    rows.append(("RollingZScore.update (per sample)", a.stream_n, t))
    upd_rate = a.stream_n / t
    t = best_of(lambda: ewma_zscore(x), a.repeat)
    rows.append(("ewma_zscore (vectorized, lfilter)", a.n, t))
    t = best_of(lambda: run_update(EWMAZScore, xs_list), a.repeat)
    rows.append(("EWMAZScore.update (per sample)", a.stream_n, t))

    print(f"window={w}, best of {a.repeat} (after a warm-up run), numpy {np.__version__}, "
          f"python {sys.version.split()[0]}")
    print(f"{'implementation':52s} {'samples':>10s} {'best s':>9s} {'samples/s':>12s} "
          f"{'x tutorial':>10s}")
    for name, n, t in rows:
        rate = n / t
        print(f"{name:52s} {n:>10,d} {t:>9.4f} {rate:>12,.0f} {rate / tut_rate:>10.0f}")
    print()
    for label, rate, target in (
            ("vectorized rolling_zscore, plain noise", clean_rate, TARGET_VECTORIZED),
            ("vectorized rolling_zscore, + 20-sigma spikes", vec_rate, TARGET_VECTORIZED),
            ("streaming update()", upd_rate, TARGET_UPDATE)):
        verdict = "meets" if rate >= target else "MISSES"
        print(f"{label}: {rate:,.0f} samples/s {verdict} the target of {target:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
