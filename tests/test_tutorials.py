"""The tutorials' exact methods: hand-computed z-scores, the slow reference, the K-Means rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.kmeans import KMeansReconstructor
from pipeline.suites import ekg_suite, sensor_suite
from pipeline.threshold import tutorial_threshold
from pipeline.tutorials import evaluate_suite, kmeans_tutorial, plexus_tutorial, plexus_zscore

from naive import naive_plexus_tutorial, tutorial_zscore


def test_plexus_by_hand_window_4():
    x = [0, 0, 0, 0, 10, 20, 0]
    # i=3 [0,0,0,0]: std 0 -> z = 0 (silently, as the tutorial did)
    # i=4 [0,0,0,10]: mean 2.5, squares 3*2.5^2 + 7.5^2 = 75, var 75/3 = 25, z = 7.5/5 = 1.5
    # i=5 [0,0,10,20]: mean 7.5, squares 2*7.5^2 + 2.5^2 + 12.5^2 = 275, z = 12.5/sqrt(275/3) = 1.3056
    # i=6 [0,10,20,0]: mean 7.5, same squares, z = -7.5/sqrt(275/3) = -0.7833
    z = plexus_zscore(x, window=4)
    assert np.isnan(z[:3]).all()
    assert z[3:].tolist() == pytest.approx([0.0, 1.5, 12.5 / math.sqrt(275 / 3), -7.5 / math.sqrt(275 / 3)])
    # |z| > 1.2 at i=4 and i=5: a streak of 2 alarms at i=5 only
    f = plexus_tutorial(x, period_ns=2, t0_ns=100, window=4, threshold=1.2, streak=2)
    assert f.alarm.tolist() == [False] * 5 + [True, False]
    assert f.times.tolist() == [100, 102, 104, 106, 108, 110, 112] and f.period_ns == 2


def test_plexus_a_spike_can_never_alarm():
    # 14 zeros then a spike a: mean a/15, z = (14a/15) / (a/sqrt(15)) = 14/sqrt(15) = 3.615 (the
    # Samuelson bound); the next sample 0 scores -(a/15) / (a/sqrt(15)) = -1/sqrt(15)
    x = [0.0] * 14 + [50.0, 0.0, 0.0]
    z = plexus_zscore(x)
    assert z[14] == pytest.approx(14 / math.sqrt(15)) and z[15] == pytest.approx(-1 / math.sqrt(15))
    assert not plexus_tutorial(x, period_ns=1).alarm.any()  # one sample above 3, never 3 in a row


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(-5000, 5000).map(lambda v: 20 + v / 100),  # 0.01 steps
                         st.sampled_from([21.37, 21.38, 1e8 + 0.01])),  # repeats: flat windows
               min_size=0, max_size=80),
       st.integers(2, 16), st.floats(0.5, 3.5), st.integers(1, 4))
def test_plexus_equals_the_slow_reference(x, window, threshold, streak):
    z = plexus_zscore(x, window)
    ref = np.array(tutorial_zscore(x, window), dtype=float)
    assert np.array_equal(np.isnan(z), np.isnan(ref))
    assert np.allclose(z[~np.isnan(z)], ref[~np.isnan(ref)], rtol=1e-9, atol=1e-9)
    # flags equal wherever no |z| lies within rounding of the threshold
    if not np.any(np.abs(np.abs(ref[~np.isnan(ref)]) - threshold) < 1e-7):
        flags = plexus_tutorial(x, period_ns=1, window=window, threshold=threshold, streak=streak).alarm
        assert flags.tolist() == naive_plexus_tutorial(x, window, threshold, streak)


def test_kmeans_tutorial_rule():
    rng = np.random.default_rng(0)
    beat = np.r_[np.zeros(40), np.hanning(24)]
    train = np.tile(beat, 60) + 0.01 * rng.standard_normal(64 * 60)
    x = np.tile(beat, 20) + 0.01 * rng.standard_normal(64 * 20)
    up, down = x.copy(), x.copy()
    up[600:606] += 2.0    # above every centroid: the signed error sees it
    down[600:606] -= 2.0  # below: the tutorial's signed max(w*seg - centroid) does not
    f_up = kmeans_tutorial(train, up, period_ns=1000, t0_ns=5, n_clusters=8)
    f_down = kmeans_tutorial(train, down, period_ns=1000, t0_ns=5, n_clusters=8)
    model = KMeansReconstructor(n_clusters=8).fit(train)
    assert f_up.threshold == pytest.approx(tutorial_threshold(model, train))
    assert f_up.period_ns == 16_000 and f_up.times[:2].tolist() == [5 + 16_000, 5 + 32_000]
    assert f_up.alarm.any() and not f_down.alarm.any()
    hit = (f_up.times[f_up.alarm] - 5) // 1000
    assert ((hit >= 600 - 16) & (hit <= 606 + 16)).all()  # segments whose centre is near the bump
    assert not kmeans_tutorial(train, x, period_ns=1000, n_clusters=8).alarm.any()


def test_evaluate_suite_scores_both_tutorials():
    ekg = evaluate_suite(ekg_suite(split="dev", rates=(90,), sources=("synthetic",)))
    assert list(ekg) == ["dev/synthetic_90", "dev/all 90 Hz"]
    rows = ekg["dev/synthetic_90"].rows
    assert list(rows) == ["kmeans_tutorial", "plexus_tutorial", "any"]
    assert rows["any"].n_labels == 42 and rows["kmeans_tutorial"].n_found > 10
    assert rows["any"].n_found >= rows["kmeans_tutorial"].n_found
    assert ekg["dev/all 90 Hz"].rows["any"].n_found == rows["any"].n_found  # one case: same pool
    suite = sensor_suite(split="dev", n_temperature=15, n_humidity=3)
    temp = evaluate_suite(suite)["dev/temperature"].rows["plexus_tutorial"]
    # normal time: 15 sensors x 24 h, minus each label widened by 10 s / 30 s and clipped to the
    # labelled day (one label per sensor, so they never overlap)
    case = suite.cases[0]
    a, b = case.parts["labelled"]
    r = suite.rules
    lost = sum(min(e + r.tol_after_s, b) - max(s - r.tol_before_s, a)
               for s, e in zip(case.events["start"], case.events["end"], strict=True))
    assert temp.n_labels == 15
    assert temp.normal_ns == pytest.approx((15 * (b - a) - lost) * 1e9, abs=15)
