"""Anomaly detection for regular time series stored in InfluxDB 1.x.

The public API is re-exported here; implementations live in modules named
after the data they handle (``influx``, ``series``, ``segment``, ``kmeans``,
``detectors``, ``calibrate``, ``zscore``, ``baselines``, ``model_io``,
``scoring``, ``stream``, ``alerts``).  One score direction everywhere: higher is more anomalous.

Examples
--------
>>> import numpy as np
>>> import pipeline
>>> x = np.tile(np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False)), 40)
>>> model = pipeline.KMeansReconstructor(n_clusters=4).fit(x[:640])
>>> scores = model.segment_errors(x[640:])
>>> bool(pipeline.ScoreThreshold(method="max").fit(scores).predict(scores + 1).all())
True
"""

from .baselines import EWMAZScore, ewma_zscore, fleet_zscore
from .detectors import (
    Budget,
    Detector,
    DriftDetector,
    FlatLineDetector,
    FleetDetector,
    ShapeDetector,
    ZScoreDetector,
)
from .influx import Influx, InfluxSettings
from .kmeans import KMeansReconstructor
from .model_io import ModelFileError, load_model, save_model
from .scoring import SegmentScorer, score_segments_batch
from .segment import overlap_add, sin2_window, sliding_segments
from .series import IrregularSeriesError, resample_regular, validate_series
from .threshold import ScoreThreshold, tutorial_threshold
from .zscore import RollingZScore, rolling_zscore, streak_guard

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Influx",
    "InfluxSettings",
    "validate_series",
    "resample_regular",
    "IrregularSeriesError",
    "sliding_segments",
    "sin2_window",
    "overlap_add",
    "KMeansReconstructor",
    "ScoreThreshold",
    "tutorial_threshold",
    "save_model",
    "load_model",
    "ModelFileError",
    "SegmentScorer",
    "score_segments_batch",
    "RollingZScore",
    "rolling_zscore",
    "streak_guard",
    "EWMAZScore",
    "ewma_zscore",
    "fleet_zscore",
    "Budget",
    "Detector",
    "ShapeDetector",
    "FlatLineDetector",
    "ZScoreDetector",
    "DriftDetector",
    "FleetDetector",
]
