"""The flat-line detector on quantized EKG: zeroed samples, a held value and a frozen sensor are
caught at 90 Hz, 360 Hz and at a 2 s cadence, with no alarm on the normal data around them."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.calibrate import CalibrationWarning
from pipeline.datasets import synthetic_ekg
from pipeline.detectors import Budget, FlatLineDetector

# (rate Hz, ADC quantum mV, seconds of fit / held-out / test data, fault seconds)
RATES = {
    "90Hz": (90, 0.005, (30, 60, 60), 0.5),
    "360Hz": (360, 0.005, (30, 60, 60), 0.5),
    "2s": (0.5, 0.01, (3600, 3 * 3600, 2 * 3600), 120),
}


@pytest.fixture(scope="module", params=sorted(RATES))
def setup(request):
    rate, q, (n_fit, n_val, n_test), fault_s = RATES[request.param]
    total = n_fit + n_val + n_test
    d, _ = synthetic_ekg(duration_s=total, rate=rate, normal_s=total - 1, seed=9)  # all normal
    x = np.round(d.value.to_numpy() / q) * q  # the ADC's quantization
    period = 1e9 / rate
    t = np.round(np.arange(len(x)) * period).astype(np.int64)
    a, b = round(n_fit * rate), round((n_fit + n_val) * rate)
    det = FlatLineDetector().fit([(t[:a], x[:a])], period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # an hour cannot confirm 1 a day
        det.calibrate([(t[a:b], x[a:b])], period, Budget.per_day(1))
    return det, t[b:], x[b:], rate, fault_s


def _faults(x, rate, fault_s):
    """Zeroed samples, then a held value, then a sensor frozen until the end: ``(y, spans)``."""
    y = x.copy()
    n, k = len(x), round(fault_s * rate)
    z0, h0, f0 = n // 6, n // 3, 2 * n // 3
    y[z0:z0 + k] = 0.0  # the tutorial's zeroed samples
    y[h0:h0 + k] = y[h0]  # a held value (sample and hold)
    y[f0:] = y[f0]  # a frozen sensor
    return y, {"zeroed": (z0, z0 + k), "held": (h0, h0 + k), "frozen": (f0, n)}


LATTICE_XFAIL = pytest.mark.xfail(strict=True, reason=(
    "pipeline/calibrate.py _fit_gpd: at 90 Hz every declustered peak of flat_s is 2 periods "
    "(whole periods plus ns rounding), the GPD fit collapses (shape 0.5, scale ~1e-10), the "
    "threshold falls back to the largest held-out value (2 periods = 0.0222 s), and a 3-period "
    "flat run of normal quantized EKG (about one a minute) alarms against a budget of one a day; "
    "see test_detectors.py::test_lattice_statistic_threshold_keeps_the_true_rate_within_budget"))


@pytest.fixture
def normal_part(setup, request):
    """The setup, for checks of the normal data (known to fail at 90 Hz)."""
    if request.node.callspec.params["setup"] == "90Hz":
        request.applymarker(LATTICE_XFAIL)
    return setup


def test_normal_quantized_data_raises_no_alarm(normal_part):
    det, t, x, _, _ = normal_part
    out = det.new_state().update_many(t, x)
    assert not out.alarm.any(), f"false alarm at {np.flatnonzero(out.alarm)[:5]} (threshold " \
                                f"{det.threshold_:.4g} s)"
    # the threshold was learned from quantized normal data, where readings do repeat
    assert np.nanmax(out.score) > 0 and det.threshold_ >= 2 * det.period_ns_ / 1e9


@pytest.mark.parametrize("fault", ["zeroed", "held", "frozen"])
def test_flat_faults_are_caught(setup, fault):
    det, t, x, rate, fault_s = setup
    assert det.threshold_ < 0.5 * fault_s, f"a {fault_s} s fault cannot outlast {det.threshold_} s"
    y, spans = _faults(x, rate, fault_s)
    out = det.new_state().update_many(t, y)
    lo, hi = spans[fault]
    hits = np.flatnonzero(out.alarm[lo:hi])
    assert len(hits), f"{fault} not caught (max flat_s {np.nanmax(out.score[lo:hi]):.3g} s, " \
                      f"threshold {det.threshold_:.3g} s)"
    # as soon as the run outlasts the threshold: at most two samples late
    assert hits[0] <= math.ceil(det.threshold_ * rate) + 2
    # the fault is one alarm event: on from the first hit to its end
    assert out.alarm[lo + hits[0]:hi].all()
    # the same however the samples arrive
    state = det.new_state()
    chunks = [state.update_many(t[i:i + 997], y[i:i + 997]) for i in range(0, len(t), 997)]
    np.testing.assert_array_equal(np.concatenate([c.alarm for c in chunks]), out.alarm)


def test_no_alarm_outside_the_faults(normal_part):
    det, t, x, rate, fault_s = normal_part
    y, spans = _faults(x, rate, fault_s)
    out = det.new_state().update_many(t, y)
    hold = math.ceil(det.hold_ns() / det.period_ns_)
    allowed = np.zeros(len(y), bool)
    for a, b in spans.values():
        allowed[max(0, a - 1):b + hold + 1] = True
    assert not out.alarm[~allowed].any(), np.flatnonzero(out.alarm & ~allowed)[:5]
