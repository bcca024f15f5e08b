"""Chunked segment scoring (the stream's state) equals the batch function, and never spans a gap."""

import pickle

import numpy as np
from conftest import PERIOD
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.scoring import SegmentScorer, score_segments_batch


def _naive_batch(model, t, v, period):
    """The obvious version: walk the series, restart a run at every off-grid step."""
    L, s = model.segment_len, model.slide_len or model.segment_len // 2
    times, errs = [], []
    start = 0
    for i in range(1, len(t) + 1):
        if i == len(t) or not (0.9 * period <= t[i] - t[i - 1] <= 1.1 * period):
            for a in range(start, i - L + 1, s):
                times.append(t[a + L // 2])
                errs.append(model.score_segments(v[None, a:a + L])[0])
            start = i
    return np.array(times, np.int64), np.array(errs)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12),
       gap_at=st.integers(100, 5000), gap_len=st.integers(2, 50), pickle_at=st.integers(0, 12))
def test_scorer_chunking_equals_batch(model, ekg, cuts, gap_at, gap_len, pickle_at):
    t, v = ekg
    t, v = t[:6000], v[:6000]
    t = np.concatenate([t[:gap_at], t[gap_at + gap_len:]])  # a gap
    v = np.concatenate([v[:gap_at], v[gap_at + gap_len:]])
    want = score_segments_batch(model, t, v, PERIOD)
    sc = SegmentScorer(model.segment_len, 16, PERIOD)
    got, pos = [], 0
    for i, c in enumerate([*cuts, len(t)]):
        if i == pickle_at:  # a checkpoint round trip mid-stream changes nothing
            sc = pickle.loads(pickle.dumps(sc))
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
