"""Chunked segment scoring (the stream's state) equals the batch function, and never spans a gap."""

import json

import numpy as np
import pytest
from conftest import PERIOD
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detectors import ShapeDetector
from pipeline.kmeans import KMeansReconstructor
from pipeline.scoring import Gap, SegmentScorer, score_segments_batch

from naive import naive_segment_scores


def _naive_batch(model, t, v, period, jitter_tol=0.1):
    times, errs, _, _ = naive_segment_scores(t, v, period, model.segment_len, model.slide_len_,
                                             lambda seg: model.score_segments(seg[None])[0], jitter_tol)
    return np.array(times, np.int64), np.array(errs)


def _checkpoint_round_trip(sc, model):
    """The scorer as a checkpoint stores it: the shape state's data through JSON and back."""
    det = ShapeDetector(n_clusters=model.n_clusters, segment_len=model.segment_len,
                        slide_len=int(model.slide_len_))
    det.model_, det.period_ns_, det.threshold_ = model, sc.period_ns, np.inf
    old = det.new_state()
    old.scorer = sc
    meta, arrays = old.get_data()
    new = det.new_state()
    new.set_data(json.loads(json.dumps(meta, allow_nan=False)),
                 {k: np.array(a) for k, a in arrays.items()})
    return new.scorer


def _snapshot(sc):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(sc).items()}


SMALL_L = 8
SMALL_P = 1000  # ns


@pytest.fixture(scope="module")
def small_models():
    """One tiny model per slide 1..8 (segment 8): the scorer checks the model's slide."""
    x = np.sin(np.arange(400) / 3.0)
    return {s: KMeansReconstructor(n_clusters=3, segment_len=SMALL_L, slide_len=s).fit(x)
            for s in range(1, SMALL_L + 1)}


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12),
       gap_at=st.integers(100, 5000), gap_len=st.integers(2, 50), restore_at=st.integers(0, 12))
def test_scorer_chunking_equals_batch(model, ekg, cuts, gap_at, gap_len, restore_at):
    t, v = ekg
    t, v = t[:6000], v[:6000]
    t = np.concatenate([t[:gap_at], t[gap_at + gap_len:]])  # a gap
    v = np.concatenate([v[:gap_at], v[gap_at + gap_len:]])
    want = score_segments_batch(model, t, v, PERIOD)
    sc = SegmentScorer(model.segment_len, 16, PERIOD)
    got, pos = [], 0
    for i, c in enumerate([*cuts, len(t)]):
        if i == restore_at:  # a checkpoint round trip mid-stream changes nothing
            sc = _checkpoint_round_trip(sc, model)
        got.append(sc.update(model, t[pos:pos + c], v[pos:pos + c]))
        pos += c
        if pos >= len(t):
            break
    times = np.concatenate([g.times for g in got])
    errs = np.concatenate([g.errors for g in got])
    np.testing.assert_array_equal(times, want.times)
    np.testing.assert_array_equal(errs, want.errors)
    assert sc.n_gaps == 1
    assert len(want) > 100


def test_batch_equals_naive_loop_and_never_spans_a_gap(model, ekg):
    t, v = ekg
    t, v = t[:2000], v[:2000]
    tg = np.concatenate([t[:1000], t[1010:1500], t[1500:1600] + 1_300_000, t[1600:]])
    vg = np.concatenate([v[:1000], v[1010:]])
    out = score_segments_batch(model, tg, vg, PERIOD)
    nt, ne = _naive_batch(model, tg, vg, PERIOD)
    np.testing.assert_array_equal(out.times, nt)
    np.testing.assert_allclose(out.errors, ne, rtol=1e-12, atol=1e-12)
    L = model.segment_len
    for tc in out.times:
        i = np.searchsorted(tg, tc) - L // 2
        span = tg[i:i + L]
        assert span[-1] - span[0] < (L - 0.5) * PERIOD  # contiguous samples only


def test_skipped_samples_are_counted(model, ekg):
    t, v = ekg
    sc = SegmentScorer(model.segment_len, 16, PERIOD)
    # run 1: 40 samples -> 1 segment (0..32), 8 samples can never complete; then a gap
    sc.update(model, t[:40], v[:40])
    out = sc.update(model, t[100:200], v[100:200])
    assert sc.n_gaps == 1 and sc.n_skipped_samples == 8
    assert len(out) == (100 - 32) // 16 + 1


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_chunked_counts_equal_naive_loop(small_models, data):
    """n_gaps, last_gaps and n_skipped_samples do not depend on the chunking, even at a boundary."""
    slide = data.draw(st.integers(1, SMALL_L), label="slide")
    model = small_models[slide]
    n = data.draw(st.integers(2, 120), label="n")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=8), label="cuts")))
    # a break before sample i: anywhere, or exactly at a chunk boundary
    where = st.one_of(st.sampled_from(cuts), st.integers(1, n - 1)) if cuts else st.integers(1, n - 1)
    breaks = data.draw(st.dictionaries(where, st.sampled_from([0.5, 1.3, 1.5, 2.0, 7.0]), max_size=6),
                       label="breaks")
    jitter = data.draw(st.lists(st.sampled_from([1.0, 1.0, 0.95, 1.05]), min_size=n - 1,
                                max_size=n - 1), label="jitter")
    steps = [round(SMALL_P * breaks.get(i, jitter[i - 1])) for i in range(1, n)]
    t = 10**18 + np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
    v = np.sin(np.arange(n) / 3.0)
    restore_at = data.draw(st.integers(0, len(cuts)), label="restore_at")

    sc = SegmentScorer(SMALL_L, slide, SMALL_P)
    got, gaps = [], []
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, n], strict=True)):
        if k == restore_at:  # a checkpoint round trip between chunks changes nothing
            sc = _checkpoint_round_trip(sc, model)
        got.append(sc.update(model, t[a:b], v[a:b]))
        gaps += [(g.before_ns, g.after_ns, g.kind) for g in sc.last_gaps]

    want_t, want_e, want_breaks, want_skipped = naive_segment_scores(
        t, v, SMALL_P, SMALL_L, slide, lambda seg: model.score_segments(seg[None])[0])
    assert gaps == want_breaks
    assert sc.n_gaps == len(want_breaks)
    assert sc.n_skipped_samples == want_skipped
    np.testing.assert_array_equal(np.concatenate([g.times for g in got]), np.array(want_t, np.int64))
    np.testing.assert_allclose(np.concatenate([g.errors for g in got]), want_e, rtol=1e-12, atol=1e-12)


def test_gap_between_calls_is_seen_with_no_carry(small_models):
    # slide == segment_len: after 16 samples (2 whole segments) nothing is carried over
    model = small_models[SMALL_L]
    t = np.arange(40, dtype=np.int64) * SMALL_P
    t[16:] += 5 * SMALL_P  # a gap exactly between the two calls
    v = np.sin(np.arange(40) / 3.0)
    sc = SegmentScorer(SMALL_L, SMALL_L, SMALL_P)
    sc.update(model, t[:16], v[:16])
    assert len(sc.carry_t) == 0
    sc.update(model, t[16:], v[16:])
    assert sc.n_gaps == 1
    assert sc.last_gaps == [Gap(int(t[15]), int(t[16]), "gap")]
    # the same across a checkpoint with nothing carried
    sc = SegmentScorer(SMALL_L, SMALL_L, SMALL_P)
    sc.update(model, t[:16], v[:16])
    sc = _checkpoint_round_trip(sc, model)
    sc.update(model, t[16:], v[16:])
    assert sc.n_gaps == 1 and sc.last_gaps == [Gap(int(t[15]), int(t[16]), "gap")]


@pytest.mark.parametrize("t", [[0, 1000, 1000, 2000], [0, 2000, 1000, 3000], [3000, 2000, 1000, 0]])
def test_non_increasing_times_are_a_clear_error(small_models, t):
    model = small_models[4]
    t = np.array(t, np.int64) + 10**18
    v = np.zeros(len(t))
    with pytest.raises(ValueError, match="timestamps must be strictly increasing"):
        score_segments_batch(model, t, v, SMALL_P)
    sc = SegmentScorer(SMALL_L, 4, SMALL_P)
    with pytest.raises(ValueError, match="timestamps must be strictly increasing"):
        sc.update(model, t, v)  # the very first chunk too
    ok = 10**18 + np.arange(10, dtype=np.int64) * SMALL_P
    sc.update(model, ok, np.zeros(10))
    state = _snapshot(sc)
    with pytest.raises(ValueError, match="strictly increasing"):
        sc.update(model, ok[-1:], np.zeros(1))  # not after the last sample seen
    assert _snapshot(sc) == state  # a refused chunk leaves the state unchanged
    assert not hasattr(sc, "n_segments")  # removed: it was never read


# -- the bug list ---------------------------------------------------------------------
def test_float_millisecond_times_are_refused_not_scored_as_zero_segments(model, ekg):
    """The issue: times in float ms silently gave 0 segments; they must be a clear error."""
    _, v = ekg
    x = v[:20000]
    with pytest.raises(ValueError, match="times must be integer nanoseconds"):
        score_segments_batch(model, np.arange(20000) * 1000 / 90, x, 1e9 / 90)
    # whole milliseconds as integers, or as whole floats: the step gives the unit away
    for t in (np.arange(20000) * 11, (np.arange(20000) * 11).astype(np.float64)):
        with pytest.raises(ValueError, match="the times are not in nanoseconds"):
            score_segments_batch(model, t, x, 1e9 / 90)
    # nanoseconds as whole floats are fine, and the same as int64
    t_ns = np.round(np.arange(20000) * 1e9 / 90).astype(np.int64)
    want = score_segments_batch(model, t_ns, x, 1e9 / 90)
    got = score_segments_batch(model, t_ns.astype(np.float64), x, 1e9 / 90)
    assert len(want) == (20000 - 32) // 16 + 1
    np.testing.assert_array_equal(got.times, want.times)
    np.testing.assert_array_equal(got.errors, want.errors)


def test_segment_centres_are_the_times_the_stream_writes(model, ekg):
    t, v = ekg
    n = 5000
    seg = score_segments_batch(model, t[:n], v[:n], PERIOD)
    idx = model.segment_centres(n)
    np.testing.assert_array_equal(t[idx], seg.times)
    np.testing.assert_array_equal(model.segment_errors(v[:n]), seg.errors)
    assert model.segment_centres(31).tolist() == [] and model.segment_centres(32).tolist() == [16]
