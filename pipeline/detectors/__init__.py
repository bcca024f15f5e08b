"""Detectors: each fits on normal runs, calibrates to an alarm budget and streams as data.

See :mod:`pipeline.detectors.base` for the protocol.  ``DEFAULT_DETECTORS``
is what ``python -m pipeline.train`` fits for a series unless told
otherwise; calibration then turns off those that do not suit it.
"""

from .base import REGISTRY, Budget, Detector, DetectorOutput, DetectorState, hold_alarm
from .flatline import FlatLineDetector
from .fleet import FleetDetector
from .noise import NoiseDetector
from .shape import ShapeDetector
from .step import StepDetector
from .zscores import DriftDetector, ZScoreDetector

__all__ = ["Budget", "Detector", "DetectorOutput", "DetectorState", "REGISTRY", "hold_alarm",
           "ShapeDetector", "FlatLineDetector", "ZScoreDetector", "DriftDetector",
           "FleetDetector", "StepDetector", "NoiseDetector", "DEFAULT_DETECTORS", "FLEET_DETECTORS", "default_detectors",
           "make_detectors"]

DEFAULT_DETECTORS = ("shape", "flatline", "step", "noise", "zscore", "drift")
FLEET_DETECTORS = ("fleet",)
"""Added to the defaults for a fleet (fan-out) of at least :data:`MIN_FLEET_KEYS` keys."""
MIN_FLEET_KEYS = 3


def default_detectors(n_keys: int = 1) -> tuple:
    """What ``python -m pipeline.train`` fits for ``n_keys`` series keys sharing one model.

    >>> default_detectors(1), default_detectors(3)[-1]
    (('shape', 'flatline', 'step', 'noise', 'zscore', 'drift'), 'fleet')
    """
    return DEFAULT_DETECTORS + (FLEET_DETECTORS if n_keys >= MIN_FLEET_KEYS else ())


def make_detectors(names=DEFAULT_DETECTORS, **params) -> list:
    """New, unfitted detectors by name; ``params[name]`` holds one's constructor arguments."""
    out = []
    for n in names:
        if n not in REGISTRY:
            raise ValueError(f"unknown detector {n!r} (known: {sorted(REGISTRY)})")
        out.append(REGISTRY[n](**params.get(n, {})))
    return out
