"""Numeric constants and defaults shared by every module.

Tunables live here, in one place, so that training, the stream and the
benchmarks use the same numbers.
"""

# --- K-Means reconstruction (defaults of the original tutorials) -----------
SEGMENT_LEN = 32
"""Samples per segment (tutorial: 32)."""
TRAIN_SLIDE = 2
"""Slide between training segments (tutorial: 2)."""
N_CLUSTERS = 150
"""K-Means clusters (tutorial: 150)."""
TUTORIAL_THRESHOLD = 8.8
"""The tutorial's fixed threshold, kept only for comparison."""

# --- rolling z-score (the Plexus detector) ---------------------------------
Z_WINDOW = 15
"""Baseline window in samples (15 = 30 s at a 2 s cadence)."""
Z_MIN_PERIODS = 5
"""Samples needed in the baseline before a z-score is produced."""
Z_THRESHOLD = 3.0
"""|z| above this counts toward a streak."""
Z_STREAK = 3
"""Consecutive samples above ``Z_THRESHOLD`` before an alert is emitted."""
Z_RESOLVE = 2.0
"""An active alert resolves once |z| drops to or below this (hysteresis)."""
EPS_STD = 1e-9
"""Relative std floor: std is floored at ``EPS_STD * max(1, |mean|)`` plus
the absolute ``STD_FLOOR`` of the detector, never silently 0."""
Z_MAX_ABS = 1e100
"""Every z-score detector (rolling, EWMA, fleet) treats a sample with
``|x| > Z_MAX_ABS`` like NaN: not part of any baseline, ``z = NaN``, never
an alert, counted in ``n_extreme`` by the streaming detectors.  Squares of
deviations (<= 4e200) summed over the largest window, and the rounding-error
bounds computed from those sums, then stay far below float64's 1.8e308; at
1e150 the error bounds of a 1e6-sample window already overflow.  No sensor
reads 1e100: such a value is a decoding error or a sentinel.  The absolute
``std_floor`` of every detector is bounded by it too."""
Z_MAX_WINDOW = 1_000_000
"""Largest rolling window (and lag) in samples: the baseline is kept in
memory (8 MB of float64 at this size; 1e10 asked for 74 GiB)."""

# --- regular series -----------------------------------------------------
JITTER_TOL = 0.1
"""Timestamps within this fraction of the sample period count as on grid."""

# --- K-Means reconstruction: fitting and scoring kernels -------------------
KMEANS_MINIBATCH_ABOVE = 200_000
"""``algorithm="auto"`` fits with ``MiniBatchKMeans`` above this many training
segments, with ``KMeans`` at or below it (k=150, L=32: KMeans takes ~5 s on
200k segments on 2 cores, MiniBatchKMeans < 1 s with ~3 % more inertia)."""
SCORE_CHUNK = 4096
"""Segments per block in the nearest-centroid kernel (GEMM + argmax): keeps
the (chunk, k) distance block small (k=150: 4.9 MB) and memory bounded;
2048-4096 measured fastest here, 32k about 1.5x slower."""

# --- long and fleet baselines (pipeline/baselines.py) ------------------------
Z_LONG_HALFLIFE = 900
"""EWMA baseline half-life in samples (900 = 30 min at a 2 s cadence)."""
Z_MAX_HALFLIFE = 1e9
"""Largest EWMA half-life in samples (63 years at a 2 s cadence, 32 days at
360 Hz); beyond it the smoothing factor ``1 - 2**(-1/halflife)`` loses its
precision in float64 (and is 0 from about 1e16)."""
Z_MAX_MIN_PERIODS = 1_000_000_000
"""Largest EWMA warm-up (``min_periods``) in samples."""
Z_FLEET_MIN_SENSORS = 3
"""Finite sensors needed at a time for a fleet (median/MAD) z-score."""

# --- InfluxDB 1.x limits (measured on 1.6.7: one ns beyond either end is refused) ---
MIN_TIME_NS = -(2**63) + 2
"""Earliest time InfluxDB 1.x stores: 1677-09-21T00:12:43.145224194Z."""
MAX_TIME_NS = 2**63 - 2
"""Latest time InfluxDB 1.x stores: 2262-04-11T23:47:16.854775806Z."""
