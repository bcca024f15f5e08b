"""Segmentation, sin^2 window and overlap-add against the naive loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.segment import n_segments, overlap_add, sin2_window, sliding_segments, tail_start

from naive import naive_overlap_add, naive_sin2_window, naive_sliding_segments

lengths = st.integers(1, 12).flatmap(lambda L: st.tuples(st.just(L), st.integers(1, L)))


# ---------------------------------------------------------------------------
# n_segments / tail_start: small hand-computed table
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "L", "s", "count", "tail"),
    [
        (0, 4, 2, 0, 0),
        (3, 4, 2, 0, 0),
        (4, 4, 2, 1, 2),
        (5, 4, 2, 1, 2),
        (6, 4, 2, 2, 4),
        (11, 4, 2, 4, 8),
        (8, 4, 4, 2, 8),
        (9, 4, 4, 2, 8),
        (10, 4, 1, 7, 7),
    ],
)
def test_n_segments_and_tail_table(n, L, s, count, tail):
    assert n_segments(n, L, s) == count
    assert tail_start(n, L, s) == tail


@given(n=st.integers(0, 200), ls=lengths)
def test_tail_start_continues_the_grid(n, ls):
    """Keeping x[tail_start:] and appending new data yields exactly the remaining segments."""
    L, s = ls
    x = np.arange(n + 50, dtype=float)
    first = naive_sliding_segments(x[:n], L, s)
    assert n_segments(n, L, s) == len(first)
    t = tail_start(n, L, s)
    assert t == len(first) * s
    if first:
        assert (len(first) - 1) * s + L <= n < len(first) * s + L  # no further segment fits
    rest = naive_sliding_segments(x[t:], L, s)
    assert first + rest == naive_sliding_segments(x, L, s)


# ---------------------------------------------------------------------------
# sliding_segments
# ---------------------------------------------------------------------------
@given(n=st.integers(1, 120), ls=lengths)
def test_sliding_segments_matches_naive_and_is_a_view(n, ls):
    L, s = ls
    x = np.random.default_rng(n).standard_normal(n)
    if n < L:
        with pytest.raises(ValueError, match="too short"):
            sliding_segments(x, L, s)
        return
    segs = sliding_segments(x, L, s)
    assert segs.shape == (n_segments(n, L, s), L)
    assert segs.tolist() == naive_sliding_segments(x, L, s)
    assert np.shares_memory(segs, x)
    assert not segs.flags.writeable


def test_sliding_segments_drops_the_tail_and_sees_later_writes():
    x = np.arange(11.0)
    segs = sliding_segments(x, 4, 3)  # starts 0, 3, 6; 9, 10 are the tail
    assert segs.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    x[6] = -1.0  # a view, not a copy
    assert segs[1, 3] == -1.0 and segs[2, 0] == -1.0


@pytest.mark.parametrize(
    ("x", "L", "s", "match"),
    [
        ([0.0, np.nan, 1.0, 2.0], 2, 1, r"1 non-finite value\(s\).*index 1"),
        ([0.0, 1.0, np.inf, -np.inf], 2, 1, r"2 non-finite value\(s\).*index 2"),
        (np.zeros((4, 4)), 2, 1, r"must be 1-D.*\(4, 4\)"),
        (np.zeros(3), 4, 2, r"segment_len=4 needs at least 4 samples, got 3"),
        (np.zeros(8), 4, 5, r"slide_len must be in \[1, segment_len=4\].*got 5"),
        (np.zeros(8), 0, 1, r"segment_len must be an integer >= 1, got 0"),
        (np.zeros(8), 4, 0, r"slide_len must be an integer >= 1, got 0"),
        (np.zeros(8), 4.0, 2, r"segment_len must be an integer >= 1, got 4.0"),
        (np.zeros(8), True, 1, r"segment_len must be an integer >= 1, got True"),
        (["a", "b", "c"], 2, 1, r"x must be a 1-D array of numbers"),
    ],
)
def test_sliding_segments_rejects_bad_input(x, L, s, match):
    with pytest.raises(ValueError, match=match):
        sliding_segments(x, L, s)


# ---------------------------------------------------------------------------
# sin^2 window
# ---------------------------------------------------------------------------
@given(half=st.integers(1, 512))
def test_sin2_is_a_partition_of_unity_at_half_overlap(half):
    w = sin2_window(2 * half)
    np.testing.assert_allclose(w[:half] + w[half:], 1.0, rtol=0, atol=1e-15)
    assert w[0] == 0.0 and w.min() >= 0.0 and w.max() <= 1.0


@pytest.mark.parametrize("L", [2, 3, 4, 7, 32, 33])
def test_sin2_matches_naive(L):
    np.testing.assert_allclose(sin2_window(L), naive_sin2_window(L), rtol=0, atol=1e-15)


def test_sin2_odd_length_is_not_a_partition():
    w = sin2_window(5)
    assert not np.allclose(w[:3] + np.r_[w[3:], 0.0], 1.0)


@pytest.mark.parametrize("L", [0, 1, -2, 2.0])
def test_sin2_rejects_bad_length(L):
    with pytest.raises(ValueError, match=r"segment_len must be an integer >= 2"):
        sin2_window(L)


# ---------------------------------------------------------------------------
# overlap-add
# ---------------------------------------------------------------------------
@given(m=st.integers(0, 20), ls=lengths, extra=st.integers(0, 5), seed=st.integers(0, 2**32 - 1))
def test_overlap_add_matches_naive(m, ls, extra, seed):
    L, s = ls
    segs = np.random.default_rng(seed).standard_normal((m, L))
    n = ((m - 1) * s + L if m else 0) + extra
    np.testing.assert_allclose(overlap_add(segs, s, n), naive_overlap_add(segs, s, n), rtol=1e-12, atol=1e-12)


@settings(max_examples=200)
@given(
    half=st.integers(1, 40),
    x=arrays(np.float64, st.integers(2, 400), elements=st.floats(-1e6, 1e6, allow_nan=False)),
)
def test_overlap_add_of_windowed_segments_reconstructs_the_interior(half, x):
    L = 2 * half
    if x.size < L:
        return
    segs = sliding_segments(x, L, half)
    rec = overlap_add(segs * sin2_window(L), half, x.size)
    m = len(segs)
    interior = slice(half, m * half)  # samples covered by two windows
    scale = max(1.0, float(np.abs(x).max()))
    np.testing.assert_allclose(rec[interior], x[interior], rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize(
    ("segs", "s", "n", "match"),
    [
        (np.ones((3, 4)), 2, 7, r"n_samples must be >= .* = 8 for 3 segments of 4 at slide 2, got 7"),
        (np.ones(4), 2, 8, r"segments must be 2-D"),
        (np.ones((3, 4)), 5, 20, r"slide_len must be in \[1, segment_len=4\]"),
        (np.ones((3, 4)), 2, -1, r"n_samples must be an integer >= 0, got -1"),
    ],
)
def test_overlap_add_rejects_bad_input(segs, s, n, match):
    with pytest.raises(ValueError, match=match):
        overlap_add(segs, s, n)
