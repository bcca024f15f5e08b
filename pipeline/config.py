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
Z_FLEET_MIN_SENSORS = 3
"""Finite sensors needed at a time for a fleet (median/MAD) z-score."""

# --- InfluxDB 1.x limits (measured on 1.6.7: one ns beyond either end is refused) ---
MIN_TIME_NS = -(2**63) + 2
"""Earliest time InfluxDB 1.x stores: 1677-09-21T00:12:43.145224194Z."""
MAX_TIME_NS = 2**63 - 2
"""Latest time InfluxDB 1.x stores: 2262-04-11T23:47:16.854775806Z."""
