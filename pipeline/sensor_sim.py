"""Temperature/humidity fleets at a 2 s cadence and their labelled scenarios, for :mod:`pipeline.suites`.

A fleet is ``n`` sensors in one building.  Each reading is::

    daily cycle (per-sensor amplitude and phase) + per-sensor offset
    + a slow fluctuation common to the building (AR(1))
    + a slower per-sensor fluctuation (AR(1)) + white read noise,

rounded to the ADC step (0.01 degC, 0.1 %RH).  Scenarios (each a labelled
event of one sensor, :data:`SENSOR_SCENARIOS`):

======== ======================================================== =========================
type     what happens                                             label
======== ======================================================== =========================
finger   a finger on the sensor during the day: +3-6 degC         from the press until the
         approached with a 8 s time constant for 15-25 s, then    excess is below 0.05 degC
         a decay with a 60-120 s time constant
spike    one reading off by 3-15 degC (either sign)               that reading
freeze   the reading frozen (held exactly) for 5-20 min           the frozen readings
drift    overnight (22:00-00:00 start) drift of 2-5 degC over      from its start to the end
         3-6 h, which then stays                                  of the case
offset   one sensor reads 1.5-3 degC off the fleet from a time    from that time to the end
         on (a bad sensor in the fleet)
slide    humidity sliding 8-15 %RH down over 1.5-2.5 days, then    from its start to the end
         staying there
======== ======================================================== =========================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import signal

__all__ = ["SENSOR_SCENARIOS", "CADENCE_S", "fleet", "temperature_scenarios", "humidity_scenarios"]

SENSOR_SCENARIOS = ("finger", "spike", "freeze", "drift", "offset", "slide")
"""Scenario types of the sensor suite."""
CADENCE_S = 2.0
H = 3600.0

_QUANTITIES = {
    # level, daily amplitude (sign: humidity falls when it is warm), offset sd, common AR(1)
    # (tau s, sd), own AR(1) (tau s, sd), white sd, ADC step, limits
    "temperature": dict(level=21.0, daily=1.5, offset=0.25, common=(1800.0, 0.15), own=(300.0, 0.05),
                        white=0.02, step=0.01, limits=(-40.0, 125.0)),
    "humidity": dict(level=45.0, daily=-6.0, offset=1.5, common=(3 * H, 2.0), own=(600.0, 0.3),
                     white=0.1, step=0.1, limits=(0.0, 100.0)),
}


def _ar1(rng, shape, tau_s, sd):
    """Stationary AR(1) noise along the last axis, time constant ``tau_s``, std ``sd``."""
    phi = np.exp(-CADENCE_S / tau_s)
    e = rng.standard_normal(shape)
    e[..., 0] /= np.sqrt(1 - phi**2)
    return signal.lfilter([sd * np.sqrt(1 - phi**2)], [1.0, -phi], e, axis=-1)


def fleet(quantity: str, n_sensors: int, n_samples: int, start_hour: float, rng) -> np.ndarray:
    """Normal readings of a fleet, shape ``(n_sensors, n_samples)``, before quantization.

    Examples
    --------
    >>> v = fleet("temperature", 3, 1800, 6.0, np.random.default_rng(0))
    >>> v.shape, bool(19 < v.mean() < 23)
    ((3, 1800), True)
    """
    q = _QUANTITIES[quantity]
    hours = start_hour + np.arange(n_samples) * CADENCE_S / H
    amp = rng.uniform(0.8, 1.2, (n_sensors, 1))
    phase = rng.normal(0.0, 0.3, (n_sensors, 1))
    v = q["level"] + rng.normal(0.0, q["offset"], (n_sensors, 1))
    v = v + q["daily"] * amp * np.cos(2 * np.pi * (hours[None, :] - 15.0 - phase) / 24.0)
    v = v + _ar1(rng, (1, n_samples), *q["common"]) + _ar1(rng, (n_sensors, n_samples), *q["own"])
    return v + q["white"] * rng.standard_normal((n_sensors, n_samples))


def finish(quantity: str, v: np.ndarray) -> np.ndarray:
    """Clip to the sensor's range and round to its ADC step."""
    q = _QUANTITIES[quantity]
    return np.round(np.clip(v, *q["limits"]) / q["step"]) * q["step"]


def _i(t_s):
    return int(round(t_s / CADENCE_S))


def temperature_scenarios(v: np.ndarray, labelled: tuple[float, float], start_hour: float, rng,
                          per_type: int = 3) -> pd.DataFrame:
    """Inject ``per_type`` finger, spike, freeze, drift and offset scenarios, each on its own sensor.

    ``v`` (sensors x samples, unquantized) is changed in place; freezes are
    applied by :func:`apply_freezes` after quantization (a frozen reading
    repeats the last quantized value exactly).  Returns the labels
    ``start, end, type, sensor`` (seconds, sensor index) plus, for freezes,
    the rows to apply.
    """
    a, b = labelled
    n = v.shape[1]
    end_s = n * CADENCE_S
    kinds = [k for k in ("finger", "spike", "freeze", "drift", "offset") for _ in range(per_type)]
    sensors = rng.choice(v.shape[0], len(kinds), replace=False)
    rows = []

    def clock(t):  # seconds since the case start -> hour of day
        return (start_hour + t / H) % 24.0

    for kind, s in zip(kinds, sensors, strict=True):
        if kind == "finger":
            day = [t for t in np.arange(a + 600, b - 1200, 60.0) if 8.0 <= clock(t) < 20.0]
            t0 = float(rng.choice(day))
            rise, fall = float(rng.uniform(15, 25)), float(rng.uniform(60, 120))
            dt = float(rng.uniform(3, 6))
            tt = np.arange(n) * CADENCE_S - t0
            peak = dt * (1 - np.exp(-rise / 8.0))
            bump = np.where(tt < rise, dt * (1 - np.exp(-np.clip(tt, 0, None) / 8.0)),
                            peak * np.exp(-np.clip(tt - rise, 0, None) / fall))
            bump[tt < 0] = 0.0
            v[s] += bump
            rows.append((t0, t0 + rise + fall * np.log(peak / 0.05), kind, s))
        elif kind == "spike":
            t0 = _i(float(rng.uniform(a + 600, b - 600))) * CADENCE_S
            v[s, _i(t0)] += float(rng.choice([-1, 1]) * rng.uniform(3, 15))
            rows.append((t0, t0 + CADENCE_S, kind, s))
        elif kind == "freeze":
            t0 = _i(float(rng.uniform(a + 600, b - 1800))) * CADENCE_S
            rows.append((t0, t0 + _i(float(rng.uniform(300, 1200))) * CADENCE_S, kind, s))
        elif kind == "drift":
            nights = [t for t in np.arange(a, b - 6 * H, 60.0) if 22.0 <= clock(t) < 24.0]
            t0 = float(rng.choice(nights))
            dur, dt = float(rng.uniform(3, 6)) * H, float(rng.choice([-1, 1]) * rng.uniform(2, 5))
            tt = np.arange(n) * CADENCE_S - t0
            v[s] += dt * np.clip(tt / dur, 0.0, 1.0)
            rows.append((t0, end_s, kind, s))
        else:  # offset
            t0 = _i(float(rng.uniform(a + H, (a + b) / 2))) * CADENCE_S
            v[s, _i(t0):] += float(rng.choice([-1, 1]) * rng.uniform(1.5, 3.0))
            rows.append((t0, end_s, kind, s))
    return pd.DataFrame(rows, columns=["start", "end", "type", "sensor"])


def apply_freezes(v: np.ndarray, labels: pd.DataFrame) -> None:
    """Hold the reading at each ``freeze`` label's start exactly until its end (in place)."""
    for r in labels[labels["type"] == "freeze"].itertuples():
        i, j = _i(r.start), _i(r.end)
        v[r.sensor, i:j] = v[r.sensor, i - 1]


def humidity_scenarios(v: np.ndarray, labelled: tuple[float, float], rng, per_type: int = 3) -> pd.DataFrame:
    """Inject ``per_type`` humidity slides (each on its own sensor), in place; returns the labels."""
    a, b = labelled
    n = v.shape[1]
    rows = []
    for s in rng.choice(v.shape[0], per_type, replace=False):
        t0 = _i(float(rng.uniform(a + 6 * H, a + 30 * H))) * CADENCE_S
        dur, dh = float(rng.uniform(36, 60)) * H, -float(rng.uniform(8, 15))
        v[s] += dh * np.clip((np.arange(n) * CADENCE_S - t0) / dur, 0.0, 1.0)
        rows.append((t0, n * CADENCE_S, "slide", s))
    return pd.DataFrame(rows, columns=["start", "end", "type", "sensor"])
