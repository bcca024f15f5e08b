"""Blocks (many keys' detector states as arrays) give the per-key states' numbers, to the bit.

Each test feeds the same chunks to one block and to one per-key state per key, and compares
every output array with ``assert_array_equal`` (NaN where NaN): no tolerance.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pipeline.detectors import DriftDetector, FlatLineDetector, ShapeDetector, ZScoreDetector
from pipeline.detectors.block import GenericBlock, make_block
from pipeline.detectors.block_flatline import FlatLineBlock
from pipeline.detectors.block_zscores import DriftBlock, ZScoreBlock

P = 10**9  # 1 Hz
T0 = 1_767_225_600_000_000_000


def _signal(rng, n, kind):
    x = 21 + 0.1 * rng.standard_normal(n)
    if kind % 3 == 0:
        x = np.round(x, 1)  # quantized: exact ties and flat stretches
    for _ in range(max(1, n // 300)):
        i = int(rng.integers(0, n))
        what = rng.integers(0, 4)
        if what == 0:
            x[i:i + 3] += 2.0  # a spike
        elif what == 1:
            x[i:] += 1.0  # a step
        elif what == 2:
            x[i:i + 20] = x[i]  # stuck
        else:
            x[i:i + 60] += np.linspace(0, 3, len(x[i:i + 60]))  # a ramp
    return x


def _fitted(kind, **params):
    rng = np.random.default_rng(1)
    t = T0 + np.arange(3000) * P
    x = np.round(21 + 0.1 * rng.standard_normal(3000), 2)
    det = kind(**params).fit([(t, x)], P)
    det.threshold_ = {"zscore": 2.2, "drift": 2.0, "flatline": 4.0}[det.name]
    return det


DETECTORS = {
    "zscore": lambda: _fitted(ZScoreDetector),
    "zscore-streak3": lambda: _fitted(ZScoreDetector, streak=3),
    "zscore-w5": lambda: _fitted(ZScoreDetector, window=5, min_periods=2, streak=2),
    "zscore-w200": lambda: _fitted(ZScoreDetector, window=200, min_periods=50, streak=3),
    "drift": lambda: _fitted(DriftDetector, halflife_s=30.0),
    "drift-streak10": lambda: _fitted(DriftDetector, halflife_s=600.0, streak=10),
    # warm-up (4 samples) shorter than the streak: the streak tail's length shows in the alarms
    "drift-short": lambda: _fitted(DriftDetector, halflife_s=4.0, streak=10),
    "flatline": lambda: _fitted(FlatLineDetector),
}


def _chunks(rng, n_keys, n_polls, mode):
    """Per poll, how many new samples each key brings."""
    if mode == "live":  # mostly 1 a poll, some keys silent, a catch-up now and then
        m = rng.choice([0, 1, 1, 1, 1, 2, 3], size=(n_polls, n_keys))
        m[rng.random((n_polls, n_keys)) < 0.01] = 40
        return m
    if mode == "mixed":
        return rng.choice([0, 1, 5, 17, 18, 40, 130, 300], size=(n_polls, n_keys))
    return np.full((n_polls, n_keys), 200)  # backfill slices


def _run(det, n_keys, n_polls, mode, seed, nan=False, roundtrip_at=None, vectorized=False):
    rng = np.random.default_rng(seed)
    counts = _chunks(rng, n_keys, n_polls, mode)
    total = counts.sum(axis=0)
    data = []
    for k in range(n_keys):
        t = T0 + np.arange(int(total[k])) * P
        if k % 4 == 3:  # gaps: a key that misses samples
            t = T0 + np.cumsum(rng.choice([1, 1, 1, 1, 3], size=int(total[k]))) * P
        x = _signal(rng, int(total[k]), k)
        if nan:
            x[rng.random(len(x)) < 0.02] = np.nan
        data.append((t, x))
    block = make_block(det, n_keys)
    if vectorized:  # every key through the vectorized path, however long its chunk
        block._column_cost = 0.0
    per_key = [det.new_state() for _ in range(n_keys)]
    pos = np.zeros(n_keys, int)
    n_compared = 0
    for p in range(n_polls):
        if roundtrip_at == p:  # a checkpoint round trip of the block and of every row
            meta, arrays = block.get_data()
            cost = block._column_cost
            block = make_block(det, 0)
            block.set_data(meta, arrays, n_keys)
            block._column_cost = cost
            for k in range(n_keys):
                st = block.row_state(k)
                block.set_row(k, st)
        keys = [k for k in rng.permutation(n_keys) if counts[p, k] > 0]
        if not keys:
            continue
        rows = np.array(sorted(keys))
        parts = [(data[k][0][pos[k]:pos[k] + counts[p, k]], data[k][1][pos[k]:pos[k] + counts[p, k]])
                 for k in rows]
        starts = np.concatenate(([0], np.cumsum([len(a) for a, _ in parts])))
        out = block.update(rows, starts, np.concatenate([a for a, _ in parts]),
                           np.concatenate([b for _, b in parts]))
        for j, k in enumerate(rows):
            want = per_key[k].update_many(*parts[j])
            got = out.key_output(j)
            np.testing.assert_array_equal(got.times, want.times)
            np.testing.assert_array_equal(got.score, want.score, err_msg=f"poll {p} key {k}")
            np.testing.assert_array_equal(got.alarm, want.alarm, err_msg=f"poll {p} key {k}")
            assert set(got.extra) == set(want.extra)
            for name in want.extra:
                np.testing.assert_array_equal(got.extra[name], want.extra[name], err_msg=name)
                assert got.extra[name].dtype == np.asarray(want.extra[name]).dtype
            n_compared += len(want.times)
            pos[k] += counts[p, k]
    # the final states are the per-key states
    for k in range(n_keys):
        a, b = block.row_state(k).get_data(), per_key[k].get_data()
        assert a[0] == b[0] and a[1].keys() == b[1].keys()
        for name in a[1]:
            np.testing.assert_array_equal(a[1][name], b[1][name])
    return n_compared


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("mode", ["live", "mixed", "backfill"])
@pytest.mark.parametrize("vectorized", [False, True], ids=["auto", "vectorized"])
def test_block_equals_per_key_states_to_the_bit(name, mode, vectorized):
    det = DETECTORS[name]()
    n = _run(det, n_keys=9, n_polls={"live": 120, "mixed": 25, "backfill": 4}[mode], mode=mode,
             seed=zlib.crc32(f"{name}{mode}".encode()) % 1000, roundtrip_at=7,
             vectorized=vectorized)
    assert n > 500


@pytest.mark.parametrize("name", ["zscore", "drift", "flatline"])
def test_block_with_nan_values_equals_per_key_states(name):
    assert _run(DETECTORS[name](), n_keys=6, n_polls=60, mode="live", seed=3, nan=True) > 100


def test_blocks_cover_alarms_not_only_quiet_data():
    """The comparison is not vacuous: the data raises every detector's alarm many times."""
    rng = np.random.default_rng(0)
    for name in ("zscore", "drift", "flatline"):
        det = DETECTORS[name]()
        x = _signal(rng, 3000, 0)
        out = det.new_state().update_many(T0 + np.arange(3000) * P, x)
        assert out.alarm.sum() > 20, name


def test_make_block_picks_the_vectorized_blocks_and_falls_back_for_others():
    assert isinstance(make_block(DETECTORS["zscore"]()), ZScoreBlock)
    assert isinstance(make_block(DETECTORS["drift"]()), DriftBlock)
    assert isinstance(make_block(DETECTORS["flatline"]()), FlatLineBlock)
    assert isinstance(make_block(ShapeDetector(n_clusters=4)), GenericBlock)


def test_generic_block_gives_segments_per_key(model_file, ekg):
    shape = model_file.get("shape")
    t, v = ekg
    block = make_block(shape, 2)
    per_key = [shape.new_state(), shape.new_state()]
    for a in range(0, 6000, 1000):
        parts = [(t[a:a + 1000], v[a:a + 1000]), (t[a:a + 700], v[a:a + 700] * 1.1)]
        starts = np.array([0, 1000, 1700])
        out = block.update(np.array([0, 1]), starts, np.concatenate([p[0] for p in parts]),
                           np.concatenate([p[1] for p in parts]))
        for j in range(2):
            want = per_key[j].update_many(*parts[j])
            got = out.key_output(j)
            np.testing.assert_array_equal(got.times, want.times)
            np.testing.assert_array_equal(got.score, want.score)
            np.testing.assert_array_equal(got.alarm, want.alarm)


def test_block_state_data_is_checked_on_load():
    det = DETECTORS["zscore"]()
    meta, arrays = make_block(det, 3).get_data()
    arrays["ring"] = arrays["ring"][:, :2]
    with pytest.raises(ValueError, match="ring"):
        make_block(det).set_data(meta, arrays, 3)
