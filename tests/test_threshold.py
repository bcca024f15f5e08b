"""ScoreThreshold and the tutorial's threshold rule."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from pipeline.datasets import synthetic_ekg
from pipeline.kmeans import KMeansReconstructor
from pipeline.threshold import FewScoresWarning, ScoreThreshold, tutorial_threshold

from naive import naive_quantile, naive_tutorial_threshold


@pytest.fixture(scope="module")
def ekg_model():
    data, _ = synthetic_ekg(duration_s=40, normal_s=35)
    x = data.value.to_numpy()[: 20 * 360]
    return x, KMeansReconstructor(n_clusters=12).fit(x)


# ---------------------------------------------------------------------------
# ScoreThreshold
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "far", "margin", "scores", "expected"),
    [
        ("max", 1e-3, 1.0, [1.0, 5.0, 2.0], 5.0),
        ("max", 1e-3, 1.5, [1.0, 4.0, 2.0], 6.0),
        ("quantile", 0.1, 1.0, np.arange(11.0), 9.0),
        ("quantile", 0.1, 2.0, np.arange(11.0), 18.0),
        ("quantile", 0.25, 1.0, [0.0, 4.0, 1.0, 2.0, 3.0], 3.0),
        ("quantile", 0.2, 1.0, [0.0, 1.0, 2.0, 10.0], 5.2),  # 0.8 * 3 = 2.4: 2 + 0.4 * 8
    ],
)
def test_threshold_table(method, far, margin, scores, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewScoresWarning)
        t = ScoreThreshold(method=method, false_alarm_rate=far, margin=margin).fit(scores)
    assert t.threshold_ == pytest.approx(expected, rel=1e-12)
    assert t.method_ == method and t.n_scores_ == len(scores)


def test_quantile_matches_naive_and_alarm_rate_is_honest():
    s = np.random.default_rng(3).gamma(2.0, size=20_000)
    t = ScoreThreshold(false_alarm_rate=1e-3, margin=1.2).fit(s)
    assert t.base_ == pytest.approx(naive_quantile(s, 1 - 1e-3), rel=1e-12)
    assert t.threshold_ == pytest.approx(1.2 * t.base_, rel=1e-15)
    assert not t.few_scores_ and t.score_max_ == s.max()
    assert t.calibration_alarm_rate_ == np.mean(s > t.threshold_) < 1e-3
    t1 = ScoreThreshold(false_alarm_rate=1e-3).fit(s)
    assert 0 < t1.calibration_alarm_rate_ <= 1e-3


def test_few_scores_are_flagged_and_warned():
    with pytest.warns(FewScoresWarning, match=r"999 calibration scores cannot resolve false_alarm_rate=0.001 \(needs at least 1000\)"):
        t = ScoreThreshold(false_alarm_rate=1e-3).fit(np.arange(999.0))
    assert t.few_scores_
    assert t.threshold_ > np.sort(np.arange(999.0))[-2]  # between the two largest: in effect the max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not ScoreThreshold(false_alarm_rate=1e-3).fit(np.arange(1000.0)).few_scores_
        assert not ScoreThreshold(method="max").fit([1.0]).few_scores_


def test_predict_is_strict_keeps_shape_and_nan_never_alerts():
    t = ScoreThreshold(method="max").fit([1.0, 2.0])
    assert t.predict([2.0, 2.0000001, np.nan, np.inf, -np.inf]).tolist() == [False, True, False, True, False]
    out = t.predict(np.full((2, 3), np.nan))
    assert out.shape == (2, 3) and out.dtype == bool and not out.any()
    assert t.predict([]).shape == (0,)


@pytest.mark.parametrize(
    ("params", "scores", "match"),
    [
        ({}, [], r"at least 1 held-out normal score, got 0"),
        ({}, [1.0, np.nan, 2.0], r"must be finite, got 1 NaN/inf value\(s\) out of 3"),
        ({}, [np.inf, -np.inf], r"got 2 NaN/inf value\(s\) out of 2"),
        ({}, ["a"], r"scores must be an array of numbers"),
        ({"method": "mean"}, [1.0], r"method must be one of \('quantile', 'max'\), got 'mean'"),
        ({"false_alarm_rate": 0.0}, [1.0], r"false_alarm_rate must be a number in \(0, 1\), got 0.0"),
        ({"false_alarm_rate": 1.0}, [1.0], r"false_alarm_rate must be a number in \(0, 1\), got 1.0"),
        ({"false_alarm_rate": np.nan}, [1.0], r"false_alarm_rate must be a number in \(0, 1\), got nan"),
        ({"false_alarm_rate": True}, [1.0], r"false_alarm_rate must be a number in \(0, 1\), got True"),
        ({"margin": 0}, [1.0], r"margin must be a number in \(0, inf\), got 0"),
        ({"margin": np.inf}, [1.0], r"margin must be a number in \(0, inf\), got inf"),
    ],
)
def test_fit_rejects_bad_input(params, scores, match):
    with pytest.raises(ValueError, match=match):
        ScoreThreshold(**params).fit(scores)


def test_estimator_contract():
    t = ScoreThreshold(method="max", margin=2.0)
    assert t.get_params() == {"method": "max", "false_alarm_rate": 1e-3, "margin": 2.0}
    assert clone(t).get_params() == t.get_params()
    with pytest.raises(NotFittedError):
        t.predict([1.0])
    assert t.fit([1.0]) is t
    assert not hasattr(clone(t), "threshold_")


# ---------------------------------------------------------------------------
# tutorial_threshold
# ---------------------------------------------------------------------------
def test_tutorial_threshold_equals_naive_loop(ekg_model):
    x, m = ekg_model
    part = x[:3000]
    fast = tutorial_threshold(m, part)
    slow = naive_tutorial_threshold([part.tolist()], m.window_.tolist(), m.cluster_centers_.tolist())
    assert fast == pytest.approx(slow, rel=1e-9)
    assert fast > 0


def test_tutorial_threshold_never_stitches_runs(ekg_model):
    x, m = ekg_model
    runs = [x[:1000], x[1000:1017], x[1017:2500], x[2500:2530]]  # 17 and 30 samples: too short
    fast = tutorial_threshold(m, runs)
    per_run = max(tutorial_threshold(m, r) for r in (runs[0], runs[2]))
    assert fast == per_run
    slow = naive_tutorial_threshold([r.tolist() for r in runs], m.window_.tolist(),
                                    m.cluster_centers_.tolist())
    assert fast == pytest.approx(slow, rel=1e-9)
    assert fast != tutorial_threshold(m, np.concatenate(runs))


def test_tutorial_threshold_needs_a_reconstructable_sample(ekg_model):
    _, m = ekg_model
    with pytest.raises(ValueError, match=r"shorter than segment_len \+ segment_len // 2 = 48"):
        tutorial_threshold(m, [np.zeros(40), np.zeros(47)])
    assert np.isfinite(tutorial_threshold(m, np.zeros(48)))
