"""Scoring throughput of the K-Means reconstruction detector vs the tutorial-style baselines.

Run ``python bench/bench_kmeans.py`` (not a test).  It fits k=150 centroids of
32-sample sin^2-windowed segments (training slide 2) on 180 s of synthetic EKG
(:func:`pipeline.datasets.synthetic_ekg`, 360 Hz), then scores a long
synthetic EKG at slide 16 three ways, all with the *same* centroids:

* ``KMeansReconstructor.score_segments``: blocked GEMM nearest centroid,
  exact max |error| recomputed for the chosen centroid;
* scikit-learn's vectorized ``KMeans.predict`` on all windowed segments,
  then the same max |error| computation in numpy;
* the tutorial's loop: window one segment, ``predict`` it, compute its error;
  run on a short slice and extrapolated (it is ~1000x slower).

The machine is shared and noisy: the script prints rates and ratios measured
in the same run (best of ``--repeats``), never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.datasets import synthetic_ekg  # noqa: E402
from pipeline.kmeans import KMeansReconstructor  # noqa: E402
from pipeline.segment import sin2_window, sliding_segments  # noqa: E402

RATE = 360
L, TRAIN_SLIDE, SLIDE, K = 32, 2, 16, 150


def best_of(repeats: int, fn):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sklearn_vectorized(km: KMeans, segs: np.ndarray, window: np.ndarray) -> np.ndarray:
    windowed = segs * window
    labels = km.predict(windowed)
    return np.abs(windowed - km.cluster_centers_[labels]).max(axis=1)


def tutorial_loop(km: KMeans, segs: np.ndarray, window: np.ndarray) -> np.ndarray:
    errors = np.empty(len(segs))
    for i, segment in enumerate(segs):
        windowed = segment * window
        nearest = km.predict(windowed.reshape(1, -1))[0]
        errors[i] = np.max(np.abs(windowed - km.cluster_centers_[nearest]))
    return errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=2_000_000, help="samples to score (default %(default)s)")
    p.add_argument("--loop-samples", type=int, default=20_000,
                   help="samples scored by the tutorial loop, then extrapolated (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs (default %(default)s)")
    args = p.parse_args(argv)

    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"{os.cpu_count()} CPU(s), OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    t0 = time.perf_counter()
    duration = args.samples / RATE + 181.0
    data, _ = synthetic_ekg(duration_s=duration, normal_s=duration - 1.0, seed=11)
    x = data.value.to_numpy()
    train, test = x[: 180 * RATE], x[180 * RATE :][: args.samples]
    print(f"data: {len(train):,} training + {len(test):,} scored samples ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    model = KMeansReconstructor(n_clusters=K, segment_len=L, train_slide=TRAIN_SLIDE, random_state=0).fit(train)
    print(f"fit KMeansReconstructor(k={K}, L={L}, train slide {TRAIN_SLIDE}): "
          f"{model.n_train_segments_:,} segments, {model.algorithm_}, {time.perf_counter() - t0:.1f} s")

    # a scikit-learn KMeans fitted the tutorial's way; all three scorers share its centroids
    window = sin2_window(L)
    km = KMeans(n_clusters=K, n_init=1, random_state=0).fit(sliding_segments(train, L, TRAIN_SLIDE) * window)
    ours = clone(model)
    ours._set_fitted(km.cluster_centers_, window)
    ours.slide_len_ = SLIDE

    segs = sliding_segments(test, L, SLIDE)
    n_scored = (len(segs) - 1) * SLIDE + L
    loop_segs = segs[: max(1, args.loop_samples // SLIDE)]
    n_loop = (len(loop_segs) - 1) * SLIDE + L

    t_ours, s_ours = best_of(args.repeats, lambda: ours.score_segments(segs))
    t_skl, s_skl = best_of(args.repeats, lambda: sklearn_vectorized(km, segs, window))
    t_loop, s_loop = best_of(max(1, min(args.repeats, 3)), lambda: tutorial_loop(km, loop_segs, window))

    rates = {
        f"ours: score_segments, slide {SLIDE}": (n_scored, t_ours, n_scored / t_ours),
        "sklearn KMeans.predict + error": (n_scored, t_skl, n_scored / t_skl),
        "tutorial per-segment predict loop": (n_loop, t_loop, n_loop / t_loop),
    }
    r_loop = rates["tutorial per-segment predict loop"][2]
    r_skl = rates["sklearn KMeans.predict + error"][2]
    print()
    print(f"{'method':<38}{'samples':>12}{'seconds':>10}{'samples/s':>14}{'x loop':>10}{'x sklearn':>11}")
    for name, (n, t, r) in rates.items():
        print(f"{name:<38}{n:>12,}{t:>10.3f}{r:>14,.0f}{r / r_loop:>10.3g}{r / r_skl:>11.3g}")
    print()
    same = np.mean(s_ours == s_skl)
    print(f"agreement with sklearn: {same:.6f} of scores bit-identical, "
          f"max |diff| {np.max(np.abs(s_ours - s_skl)):.3g}; "
          f"tutorial loop slice max |diff| {np.max(np.abs(s_loop - s_ours[: len(s_loop)])):.3g}")
    print(f"(tutorial loop timed on {n_loop:,} samples and extrapolated; best of {args.repeats} runs; "
          "ratios, not pass/fail: the machine is shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
