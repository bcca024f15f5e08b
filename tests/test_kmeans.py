"""KMeansReconstructor: estimator contract, runs, errors, fast kernel vs the naive loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError

import pipeline.kmeans as kmeans_mod
from pipeline import config
from pipeline.datasets import synthetic_ekg
from pipeline.kmeans import KMeansReconstructor
from pipeline.segment import sin2_window, sliding_segments

from naive import naive_reconstruct, naive_score_segments, naive_sliding_segments

RATE = 360
TRAIN_S = 30


@pytest.fixture(scope="module")
def ekg():
    data, anomalies = synthetic_ekg(duration_s=100, normal_s=40)
    return data.value.to_numpy(), anomalies


@pytest.fixture(scope="module")
def model(ekg):
    x, _ = ekg
    return KMeansReconstructor(n_clusters=24).fit(x[: TRAIN_S * RATE])


@pytest.fixture(scope="module")
def offset_model(ekg):
    x, _ = ekg
    return KMeansReconstructor(n_clusters=24).fit(x[: TRAIN_S * RATE] + 1e8)


def assert_matches_naive(model, segs, rtol=1e-9):
    """Fast scores equal the naive loop's; where the centroid differs, it is a genuine tie."""
    fast_scores = model.score_segments(segs)
    fast_idx = model.nearest(segs)
    scores, idx, dists = naive_score_segments(segs.tolist(), model.window_.tolist(),
                                              model.cluster_centers_.tolist())
    idx = np.asarray(idx)
    same = fast_idx == idx
    np.testing.assert_allclose(fast_scores[same], np.asarray(scores)[same], rtol=rtol, atol=0)
    for i in np.flatnonzero(~same):
        d_fast, d_naive = dists[i][fast_idx[i]], dists[i][idx[i]]
        assert d_fast - d_naive <= 1e-9 * max(d_naive, 1e-300), (i, d_fast, d_naive)
    return same.mean()


# ---------------------------------------------------------------------------
# scikit-learn estimator contract
# ---------------------------------------------------------------------------
PARAMS = ["algorithm", "batch_size", "max_iter", "n_clusters", "random_state", "segment_len",
          "slide_len", "train_slide", "window"]


def test_defaults_are_the_tutorials():
    p = KMeansReconstructor().get_params()
    assert sorted(p) == PARAMS
    assert (p["n_clusters"], p["segment_len"], p["train_slide"], p["slide_len"], p["window"]) == (
        150, 32, 2, None, "sin2")


def test_init_only_stores_and_clone_works():
    m = KMeansReconstructor(n_clusters=-5, segment_len="x")  # validated in fit, not here
    assert m.get_params()["n_clusters"] == -5
    c = clone(KMeansReconstructor(n_clusters=7, slide_len=3))
    assert c.get_params()["n_clusters"] == 7 and c.get_params()["slide_len"] == 3
    assert c.set_params(n_clusters=9).n_clusters == 9
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 1, got -5"):
        m.fit(np.zeros(100))


def test_fit_returns_self_and_sets_only_underscore_attributes():
    m = KMeansReconstructor(n_clusters=4, segment_len=8)
    before = set(vars(m))
    assert m.fit(np.sin(np.arange(400) / 3.0)) is m
    new = set(vars(m)) - before
    public = {a for a in new if not a.startswith("_")}
    assert public == {"cluster_centers_", "window_", "slide_len_", "n_train_segments_", "n_runs_",
                      "algorithm_", "inertia_", "n_iter_"}
    assert all(a.endswith("_") for a in public)
    assert m.cluster_centers_.shape == (4, 8) and m.window_.shape == (8,)
    np.testing.assert_array_equal(m.window_, sin2_window(8))
    assert m.n_train_segments_ == (400 - 8) // 2 + 1 and m.slide_len_ == 4 and m.n_runs_ == 1


def test_clone_of_fitted_model_is_unfitted(model):
    c = clone(model)
    assert c.get_params() == model.get_params()
    assert not hasattr(c, "cluster_centers_")


@pytest.mark.parametrize("method", ["score_segments", "nearest", "segment_errors", "reconstruct"])
def test_not_fitted_error_before_fit(method):
    arg = np.zeros((3, 32)) if method in ("score_segments", "nearest") else np.zeros(100)
    with pytest.raises(NotFittedError):
        getattr(KMeansReconstructor(), method)(arg)


# ---------------------------------------------------------------------------
# fit: runs and validation
# ---------------------------------------------------------------------------
def test_fit_on_runs_never_builds_a_segment_across_runs(monkeypatch):
    seen = {}

    class SpyKMeans(KMeans):
        def fit(self, X, y=None, sample_weight=None):
            seen["X"] = np.array(X)
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(kmeans_mod, "KMeans", SpyKMeans)
    rng = np.random.default_rng(1)
    runs = [rng.standard_normal(n) + 10 * i for i, n in enumerate([40, 7, 33, 21])]  # 7 < L: skipped
    m = KMeansReconstructor(n_clusters=5, segment_len=8, train_slide=3).fit(runs)
    w = sin2_window(8)
    expected = np.array([np.multiply(s, w) for r in runs for s in naive_sliding_segments(r, 8, 3)])
    assert m.n_train_segments_ == len(expected) == 11 + 0 + 9 + 5
    assert m.n_runs_ == 4
    got = seen["X"]
    # the spy sees centred rows; the centring is a constant shift
    np.testing.assert_allclose(got - got[0] + expected[0], expected, rtol=0, atol=1e-12)
    joined = np.concatenate(runs)
    assert KMeansReconstructor(n_clusters=5, segment_len=8, train_slide=3).fit(joined) \
        .n_train_segments_ == (len(joined) - 8) // 3 + 1 > len(expected)


def test_fit_on_runs_recovers_exact_centroids_of_constant_runs():
    """Two constant runs give two distinct windowed segments; a straddling one would add a third."""
    m = KMeansReconstructor(n_clusters=2, segment_len=4, train_slide=1).fit([np.zeros(20), np.full(20, 3.0)])
    centers = sorted(m.cluster_centers_.tolist())
    w = sin2_window(4)
    np.testing.assert_allclose(centers, [0 * w, 3 * w], atol=1e-12)
    assert m.inertia_ < 1e-20


def test_fit_accepts_a_plain_list_of_numbers():
    x = np.sin(np.arange(300) / 4.0)
    a = KMeansReconstructor(n_clusters=4, segment_len=8).fit(x)
    b = KMeansReconstructor(n_clusters=4, segment_len=8).fit(x.tolist())
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert b.n_runs_ == 1


@pytest.mark.parametrize(
    ("X", "params", "match"),
    [
        (np.r_[np.zeros(50), np.nan], {}, r"X\[0\] contains 1 non-finite value\(s\)"),
        ([np.zeros(50), np.r_[np.zeros(50), np.inf]], {}, r"X\[1\] contains 1 non-finite"),
        (np.zeros((10, 40)), {}, r"1-D series or a list of 1-D runs.*\(10, 40\).*list\(X\)"),
        ([np.zeros((2, 40))], {}, r"X\[0\] must be 1-D"),
        ([], {}, r"non-empty list"),
        ([1.0, np.zeros(3)], {}, r"mixes numbers and arrays"),
        (np.zeros(7), {}, r"n_clusters=4 needs at least 4 segments, got 0 from 1 run\(s\) of 7"),
        ([np.zeros(9), np.zeros(9)], {"train_slide": 2},
         r"n_clusters=4 needs at least 4 segments, got 2 from 2 run\(s\) of 18 samples"),
        (np.zeros(100), {"segment_len": 7}, r"segment_len must be even.*got 7"),
        (np.zeros(100), {"train_slide": 9}, r"train_slide must be an integer in \[1, 8\], got 9"),
        (np.zeros(100), {"slide_len": 0}, r"slide_len must be an integer in \[1, 8\], got 0"),
        (np.zeros(100), {"window": "hann"}, r"window must be one of \['sin2'\], got 'hann'"),
        (np.zeros(100), {"algorithm": "elkan"}, r"algorithm must be one of .*got 'elkan'"),
        (np.zeros(100), {"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        (np.zeros(100), {"batch_size": 1.5}, r"batch_size must be an integer >= 1, got 1.5"),
    ],
)
def test_fit_rejects_bad_input(X, params, match):
    m = KMeansReconstructor(**{"n_clusters": 4, "segment_len": 8, **params})
    with pytest.raises(ValueError, match=match):
        m.fit(X)


def test_algorithm_auto_switches_to_minibatch(monkeypatch):
    x = np.sin(np.arange(600) / 5.0)
    m = KMeansReconstructor(n_clusters=4, segment_len=8).fit(x)
    assert m.algorithm_ == "kmeans"
    monkeypatch.setattr(config, "KMEANS_MINIBATCH_ABOVE", 100)
    m = KMeansReconstructor(n_clusters=4, segment_len=8, batch_size=64).fit(x)
    assert m.algorithm_ == "minibatch" and m.cluster_centers_.shape == (4, 8)
    m = KMeansReconstructor(n_clusters=4, segment_len=8, algorithm="kmeans").fit(x)
    assert m.algorithm_ == "kmeans"


def test_minibatch_is_accurate_on_offset_data():
    """Centring before clustering keeps MiniBatchKMeans sane 1e8 away from the origin."""
    x = np.sin(2 * np.pi * np.arange(3000) / 16)  # 8 phases at train_slide=2
    m = KMeansReconstructor(n_clusters=8, segment_len=16, algorithm="minibatch", batch_size=256)
    m.fit(x + 1e8)
    assert m.segment_errors(x + 1e8).max() < 1e-6


# ---------------------------------------------------------------------------
# scoring: fast kernel vs naive loop
# ---------------------------------------------------------------------------
def test_score_segments_matches_naive_on_ekg_with_anomalies(ekg, model):
    x, _ = ekg
    segs = sliding_segments(x[TRAIN_S * RATE :], 32, 16)
    assert assert_matches_naive(model, segs) > 0.99


def test_score_segments_matches_naive_with_1e8_offset(ekg, offset_model):
    x, _ = ekg
    segs = sliding_segments(x[TRAIN_S * RATE :] + 1e8, 32, 16)
    assert assert_matches_naive(offset_model, segs) > 0.99
    assert np.median(offset_model.score_segments(segs)) < 0.2  # not rounding noise of 1e8


def test_the_offset_test_would_catch_the_plain_expanded_formula(ekg, offset_model):
    """Without the reference shift, the GEMM picks wrong centroids on offset data."""
    x, _ = ekg
    segs = sliding_segments(x[TRAIN_S * RATE :] + 1e8, 32, 16)
    plain = clone(offset_model)
    plain._set_fitted(offset_model.cluster_centers_, offset_model.window_)
    plain._ref = np.zeros(32)
    c = offset_model.cluster_centers_
    plain._gemm = np.vstack([c.T, -0.5 * (c * c).sum(axis=1)])
    with pytest.raises(AssertionError):
        assert_matches_naive(plain, segs)


def test_offset_model_scores_like_the_unshifted_one(ekg, model, offset_model):
    x, _ = ekg
    s0 = model.segment_errors(x[TRAIN_S * RATE :])
    s8 = offset_model.segment_errors(x[TRAIN_S * RATE :] + 1e8)
    assert np.corrcoef(s0, s8)[0, 1] > 0.95


def test_chunk_boundaries_do_not_change_scores(ekg, model, monkeypatch):
    x, _ = ekg
    segs = sliding_segments(x[TRAIN_S * RATE :], 32, 16)
    whole = model.score_segments(segs)
    monkeypatch.setattr(config, "SCORE_CHUNK", 7)
    np.testing.assert_array_equal(model.score_segments(segs), whole)


def test_score_segments_nan_in_nan_out(model):
    segs = np.zeros((4, 32))
    segs[1, 5] = np.nan
    segs[2, 0] = np.inf  # window is 0 there: 0 * inf is NaN, still NaN out
    segs[3, 16] = -np.inf
    scores = model.score_segments(segs)
    assert np.isfinite(scores[0]) and np.isnan(scores[1:]).all()
    assert model.nearest(segs)[1:].tolist() == [-1, -1, -1]


@pytest.mark.parametrize(
    ("segs", "match"),
    [
        (np.zeros(32), r"shape \(n, segment_len=32\), got shape \(32,\).*segs\[None, :\]"),
        (np.zeros((3, 16)), r"got shape \(3, 16\)"),
        (np.zeros((2, 3, 32)), r"got shape \(2, 3, 32\)"),
    ],
)
def test_score_segments_rejects_bad_shapes(model, segs, match):
    with pytest.raises(ValueError, match=match):
        model.score_segments(segs)


def test_score_segments_empty(model):
    assert model.score_segments(np.zeros((0, 32))).shape == (0,)


def test_segment_errors_is_score_segments_of_the_slid_series(ekg, model):
    x, _ = ekg
    part = x[TRAIN_S * RATE : TRAIN_S * RATE + 2000]
    np.testing.assert_array_equal(model.segment_errors(part),
                                  model.score_segments(sliding_segments(part, 32, 16)))
    m5 = clone(model).set_params(slide_len=5)
    m5._set_fitted(model.cluster_centers_, model.window_)
    m5.slide_len_ = 5
    assert m5.segment_errors(part).shape == ((2000 - 32) // 5 + 1,)
    with pytest.raises(ValueError, match="too short"):
        model.segment_errors(part[:31])
    with pytest.raises(ValueError, match="non-finite"):
        model.segment_errors(np.r_[part, np.nan])


def test_score_is_absolute_so_dips_are_seen():
    """The tutorial's signed max would miss a deviation below the centroid."""
    m = KMeansReconstructor(n_clusters=1, segment_len=16).fit(np.ones(200))
    dip = np.ones(16)
    dip[4:12] -= 2.0
    w = m.window_
    nearest = m.cluster_centers_[m.nearest(dip[None, :])[0]]
    assert (w * dip - nearest).max() < 1e-12  # the signed error sees nothing
    assert m.score_segments(dip[None, :])[0] == pytest.approx(2.0)


# ---------------------------------------------------------------------------
# reconstruction and detection
# ---------------------------------------------------------------------------
def test_reconstruct_matches_naive_loop(ekg, model):
    x, _ = ekg
    part = x[TRAIN_S * RATE : TRAIN_S * RATE + 1500]  # 1500 = 92 * 16 + 28: a tail
    fast = model.reconstruct(part)
    slow = np.asarray(naive_reconstruct(part.tolist(), model.window_.tolist(),
                                        model.cluster_centers_.tolist()))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    assert np.isnan(fast[:16]).all() and np.isnan(fast[92 * 16 :]).all()
    assert not np.isnan(fast[16 : 92 * 16]).any()
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9, equal_nan=True)


def test_reconstruction_of_training_like_data_is_close(ekg, model):
    x, _ = ekg
    held_out = x[TRAIN_S * RATE : 40 * RATE]  # normal, not trained on
    rec = model.reconstruct(held_out)
    err = np.abs(rec - held_out)
    assert np.nanmean(err) < 0.15 * held_out.std()
    assert np.nanmax(err) < 0.5 * np.ptp(held_out)


def test_labelled_anomalies_outscore_normal_segments(ekg, model):
    x, anomalies = ekg
    scores = model.segment_errors(x)
    starts = np.arange(len(scores)) * 16
    ends = starts + 32

    def overlapping(a_s, b_s):
        return (starts < b_s * RATE) & (ends > a_s * RATE)

    near_any = np.zeros(len(scores), bool)
    for r in anomalies.itertuples():
        near_any |= overlapping(r.start_s - 0.5, r.end_s + 0.5)
    normal = scores[(starts >= TRAIN_S * RATE) & ~near_any]  # held-out normal segments
    assert len(normal) > 1000
    for r in anomalies.itertuples():
        if r.kind == "dropout":
            continue  # a flat line looks like the baseline between beats: see the report
        peak = scores[overlapping(r.start_s, r.end_s)].max()
        assert peak > 1.3 * normal.max(), (r.kind, peak, normal.max())
