"""No traceback on any finite number: every registered detector, streaming, batch and block.

The rule (``docs/extremes.md``): a sample with ``|x| > config.Z_MAX_ABS`` (1e100) is treated
exactly like NaN by every detector (not part of any state, no score, never an alarm); every
sample within the bound is scored, and every score is finite or NaN.  For any series mixing
ordinary values, any finite float, the float extremes (+-1.7e308, subnormals, +-0) and
NaN/inf, with numpy's warnings turned into errors:

(a) no exception, and every field the stream would write is finite or NaN (line protocol cannot
    carry inf; ``encode_lines`` would drop it silently);
(b) the output equals the output for the same series with the out-of-range samples set to NaN;
(c) any chunking equals one chunk (segments and the flat line to the bit, the z-scores to the
    rolling sums' 1e-9, as ``tests/test_detectors.py`` and ``tests/test_zscore.py``);
(d) the calibration statistic (the batch twin) equals the stream's;
(e) a checkpoint round trip (JSON + .npz) of the state goes on exactly as the uninterrupted one;
(f) the block twins (``block.py``) give the per-key states' numbers to the bit, through their
    vectorized path too, and survive their own round trip.

Plus what the rule means for a user (a value within the bound alarms, one beyond it is a
missing reading), fitting on data holding extremes, and the parameter bounds.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.datafile import encode_data, read_data
from pipeline.detectors import REGISTRY, Budget, make_detectors
from pipeline.detectors.block import make_block
from pipeline.detectors.zscores import streak_min
from pipeline.line_protocol import encode_lines

P = 10**9  # 1 Hz
T0 = 1_767_225_600_000_000_000
BOUND = config.Z_MAX_ABS
EXTREMES = [1.7e308, -1.7e308, np.finfo(float).max, 1e300, -1e300, 1e200, BOUND, -BOUND,
            np.nextafter(BOUND, np.inf), 9.9e37, 1e50, -1e50, 5e-324, -5e-324,
            2.2250738585072014e-308, 1e-300, 0.0, -0.0]
NORMAL = st.floats(20.5, 21.5).map(lambda v: round(v, 2))
VALUES = st.one_of(NORMAL, NORMAL, NORMAL, st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from(EXTREMES), st.sampled_from([np.nan, np.inf, -np.inf]))

# small, quick detectors; every registered one needs an entry (checked below)
PARAMS = {"shape": {"n_clusters": 4, "segment_len": 8},
          "flatline": {},
          "step": {"window_s": 5.0, "slow": "on"},
          "noise": {"window_s": 5.0, "slow": "on"},
          "zscore": {"window": 6, "min_periods": 3},
          "drift": {"halflife_s": 4.0}}


def _normal(n, seed):
    rng = np.random.default_rng(seed)
    return np.round(21 + 0.1 * rng.standard_normal(n) + 0.2 * np.sin(np.arange(n) / 7.0), 2)


def _fit(name, **params):
    (det,) = make_detectors([name], **{name: {**PARAMS[name], **params}})
    t = T0 + np.arange(3000) * P
    x = _normal(3000, 1)
    det.fit([(t[:2000], x[:2000])], P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short held-out data: CalibrationWarning
        det.calibrate([(t[2000:], x[2000:])], P, Budget(20.0))
    return det


PER_KEY = sorted(n for n, kind in REGISTRY.items() if not kind.cross_key)
"""The cross-key (fleet) detector takes the same rule; tests/test_fleet_detector.py checks it."""


@pytest.fixture(scope="module", params=PER_KEY)
def det(request):
    return _fit(request.param)


def test_every_registered_detector_is_covered():
    assert set(PARAMS) == set(PER_KEY)


def _series(values, gaps):
    """A warm-up of normal data, then the drawn values; times with a few gaps."""
    x = np.concatenate([_normal(30, 2), np.array(values, float)])
    steps = np.ones(len(x), np.int64)
    for i in gaps:
        if 0 < i < len(x):
            steps[i] = 3
    return T0 + np.cumsum(steps) * P, x


def _unusable(x):
    return ~(np.abs(np.nan_to_num(x, nan=np.inf)) <= BOUND)


def _chunked(state, t, x, cuts):
    bounds = [0, *sorted(c for c in cuts if c <= len(t)), len(t)]
    return [state.update_many(t[a:b], x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _cat(outs):
    return {"times": np.concatenate([o.times for o in outs]),
            "score": np.concatenate([o.score for o in outs]),
            "alarm": np.concatenate([o.alarm for o in outs]),
            "extra": {k: np.concatenate([o.extra[k] for o in outs]) for k in outs[0].extra}}


def _close(got, want, tol=1e-9):
    """Equal NaN positions; elsewhere |got - want| <= tol * max(1, |want|) (test_zscore's)."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    err = np.abs(got[ok] - want[ok]) / np.maximum(1.0, np.abs(want[ok]))
    assert err.size == 0 or err.max() <= tol, f"max scaled error {err.max():.3g}"


def _same(got, want, det, exact=False):
    np.testing.assert_array_equal(got["times"], want["times"])
    if exact or det.name in ("shape", "flatline"):
        np.testing.assert_array_equal(got["score"], want["score"])
    else:  # chunk boundaries move the anchors of the rolling sums
        _close(got["score"], want["score"])
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    assert got["extra"].keys() == want["extra"].keys()
    for k in got["extra"]:
        if exact or got["extra"][k].dtype.kind != "f":
            np.testing.assert_array_equal(got["extra"][k], want["extra"][k], err_msg=k)
        else:
            _close(got["extra"][k], want["extra"][k])


def _through_files(meta, arrays):
    """What a checkpoint does to a state: the data file's own bytes (JSON, no NaN; .npz, no
    pickle), read back."""
    return read_data(io.BytesIO(encode_data(meta, arrays)))


def _writable(out, det):
    """Every float field the stream writes is finite or NaN (``encode_lines`` leaves NaN and inf
    out of a line, so an inf would be lost without a word), and the line protocol takes them."""
    fields = out.fields()
    for k, v in fields.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            assert not np.isinf(v).any(), f"{det.name}: field {k} holds inf"
    if len(out.times):
        encode_lines("err", out.times, fields)


SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(values=st.lists(VALUES, max_size=60), gaps=st.lists(st.integers(0, 90), max_size=2),
       data=st.data())
def test_any_number_streams_equal_to_batch(det, values, gaps, data):
    t, x = _series(values, gaps)
    n = len(t)
    cuts = data.draw(st.lists(st.integers(0, n), max_size=5), label="cuts")
    stop = data.draw(st.integers(0, n), label="checkpoint at")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow or invalid-value warning fails too
        one = det.new_state().update_many(t, x)
        chunked = _cat(_chunked(det.new_state(), t, x, cuts))
        as_nan = det.new_state().update_many(t, np.where(_unusable(x), np.nan, x))
        stat_t, stat = det.calibration_scores(t, x)
        a = det.new_state()
        a.update_many(t[:stop], x[:stop])
        b = det.new_state()
        b.set_data(*_through_files(*a.get_data()))
        rest_a = a.update_many(t[stop:], x[stop:])
        rest_b = b.update_many(t[stop:], x[stop:])
    whole = _cat([one])
    # (a) finite or NaN, writable
    assert not np.isinf(one.score).any()
    _writable(one, det)
    # (b) out of range is NaN, exactly
    _same(_cat([as_nan]), whole, det, exact=True)
    # (c) chunks
    _same(chunked, whole, det)
    # (d) the batch twin: the calibration statistic
    np.testing.assert_array_equal(stat_t, one.times)
    if det.name in ("zscore", "drift"):  # the alarm statistic: min |z| over the streak
        _close(stat, streak_min(one.score, det.streak_))
    elif det.name in ("step", "noise"):  # a windowed score; the statistic is its size
        np.testing.assert_array_equal(stat, np.abs(one.score))
    else:
        np.testing.assert_array_equal(stat, one.score)
    # (e) checkpoint
    _same(_cat([rest_b]), _cat([rest_a]), det, exact=True)
    # per-sample: what is missing scores NaN
    if det.per_sample:
        assert np.isnan(one.score[_unusable(x)]).all()
    elif det.name in ("step", "noise"):  # a point whose window holds a missing sample: NaN
        w = min(det._offset(det.w_), det._span(det.w_) - 1 - det._offset(det.w_))
        for i in np.flatnonzero(_unusable(x)).tolist():
            near = np.abs(one.times - t[i]) <= w * P
            assert np.isnan(one.score[near]).all()
    else:  # no segment spans a missing sample
        half = det.model_.segment_len // 2
        for i in np.flatnonzero(_unusable(x)).tolist():
            assert not (np.abs(one.times - t[i]) < half * P).any()


@SETTINGS
@given(data=st.data(), vectorized=st.booleans())
def test_any_number_in_the_block_twins_equals_per_key_states(det, data, vectorized):
    n_keys = 3
    series = [_series(data.draw(st.lists(VALUES, max_size=40), label=f"key {k}"), [])
              for k in range(n_keys)]
    block = make_block(det, n_keys)
    if vectorized:  # every key through the vectorized path, however long its chunk
        block._column_cost = 0.0
    per_key = [det.new_state() for _ in range(n_keys)]
    pos = [0] * n_keys
    roundtrip = data.draw(st.integers(0, 6), label="round trip at poll")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for poll in range(8):
            if poll == roundtrip:
                meta, arrays = _through_files(*block.get_data())
                cost = block._column_cost
                block = make_block(det, 0)
                block.set_data(meta, arrays, n_keys)
                block._column_cost = cost
            counts = data.draw(st.lists(st.sampled_from([0, 1, 1, 2, 5, 20]), min_size=n_keys,
                                        max_size=n_keys), label=f"poll {poll}")
            if poll == 7:  # the rest
                counts = [len(series[k][0]) - pos[k] for k in range(n_keys)]
            rows = [k for k in range(n_keys) if counts[k] > 0 and pos[k] < len(series[k][0])]
            if not rows:
                continue
            parts = [(series[k][0][pos[k]:pos[k] + counts[k]], series[k][1][pos[k]:pos[k] + counts[k]])
                     for k in rows]
            for k in rows:
                pos[k] += counts[k]
            starts = np.concatenate(([0], np.cumsum([len(a) for a, _ in parts])))
            out = block.update(np.array(rows), starts, np.concatenate([a for a, _ in parts]),
                               np.concatenate([b for _, b in parts]))
            _writable(out, det)
            for j, k in enumerate(rows):
                want = per_key[k].update_many(*parts[j])
                _same(_cat([out.key_output(j)]), _cat([want]), det, exact=True)


# -- what the rule means for a user ------------------------------------------------------------
@pytest.mark.parametrize("value", [1e100, -1e100, 9.9e37, 1e6])
def test_a_huge_value_within_the_bound_alarms(det, value):
    """A reading within +-Z_MAX_ABS is scored: a spike alarms (shape, z-score, drift); held for
    a while, the flat line and the baseline step see it too; alternating, the noise level."""
    t = T0 + np.arange(200) * P
    x = _normal(200, 3)
    y = x.copy()
    if det.name in ("flatline", "step"):  # a median moves with a level, not with one sample
        y[100:140] = value
    elif det.name == "noise":  # nor with one jump: noise is many
        y[100:110] = value * (-1.0) ** np.arange(10)
    else:
        y[100] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = det.new_state().update_many(t, y)
        clean = det.new_state().update_many(t, x)
    assert np.isfinite(out.score[np.isfinite(out.score)]).all()
    near = (out.times >= t[95]) & (out.times <= t[145])
    assert (out.alarm & ~clean.alarm)[near].any(), det.name


@pytest.mark.parametrize("value", [1.7e308, -1e300, np.nextafter(1e100, np.inf)])
def test_a_value_beyond_the_bound_is_a_missing_reading(det, value):
    """Beyond +-Z_MAX_ABS a reading is a sentinel or a decoding error: like NaN, it never alarms
    and leaves no trace in the state (the scores after it are those of a NaN)."""
    t = T0 + np.arange(200) * P
    x = _normal(200, 3)
    y, z = x.copy(), x.copy()
    y[100:103] = value
    z[100:103] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = det.new_state().update_many(t, y)
        nan = det.new_state().update_many(t, z)
    _same(_cat([out]), _cat([nan]), det, exact=True)
    assert not np.isinf(out.score).any()


def test_fit_on_data_holding_extremes_equals_fit_with_nan(det):
    """Training data with out-of-range samples: those samples are left out, as NaN would be
    (the shape detector cuts its runs there, so no training segment spans one)."""
    t = T0 + np.arange(2000) * P
    x = _normal(2000, 5)
    bad = np.zeros(len(x), bool)
    bad[[10, 11, 500, 1300, 1999]] = True
    y = x.copy()
    y[bad] = [1.7e308, -1.7e308, 1e300, -1e101, 1e200]
    (a,) = make_detectors([det.name], **{det.name: PARAMS[det.name]})
    (b,) = make_detectors([det.name], **{det.name: PARAMS[det.name]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a.fit([(t, y)], P)
        b.fit([(t, np.where(bad, np.nan, x))], P)
    ma, aa = a.to_data()
    mb, ab = b.to_data()
    assert ma == mb
    for k in aa:
        np.testing.assert_array_equal(aa[k], ab[k])


def test_shape_fit_on_nothing_usable_says_so():
    t = T0 + np.arange(300) * P
    (det,) = make_detectors(["shape"], shape=PARAMS["shape"])
    with pytest.raises(ValueError, match=r"no usable training sample: all are NaN, inf or beyond "
                                         r"\+-1e\+100"):
        det.fit([(t, np.full(300, 1.7e308))], P)


# -- parameter bounds ------------------------------------------------------------------------
@pytest.mark.parametrize("name, params, message", [
    ("shape", {"n_clusters": 0}, "n_clusters must be an integer in [1, 10000], got 0"),
    ("shape", {"n_clusters": 10**6}, "n_clusters must be an integer in [1, 10000], got 1000000"),
    ("shape", {"segment_len": 10**9}, "segment_len must be an integer in [2, 8192], got 1000000000"),
    ("shape", {"segment_len": 9}, "segment_len must be even"),
    ("shape", {"train_slide": 0}, "train_slide must be an integer in [1, 8]"),
    ("shape", {"slide_len": 100}, "slide_len must be an integer in [1, 8], got 100"),
    ("shape", {"random_state": "x"}, "random_state must be an integer in [0, 4294967295] or None"),
    ("shape", {"center": "yes"}, "center must be 'auto', True or False"),
    ("flatline", {"tol": -1.0}, "tol must be a finite number in [0, 1e+100] or None, got -1.0"),
    ("flatline", {"tol": float("inf")}, "tol must be a finite number in [0, 1e+100] or None"),
    ("flatline", {"tol": float("nan")}, "tol must be a finite number in [0, 1e+100] or None"),
    ("flatline", {"min_samples": 1}, "min_samples must be an integer in [2, 1000000], got 1"),
    ("zscore", {"window": 10**10}, "window must be in [2, 1000000], got 10000000000"),
    ("zscore", {"min_periods": 1}, "min_periods must be in [2,"),
    ("zscore", {"streak": 0}, "streak must be an integer in [1, 1000] or None, got 0"),
    ("zscore", {"std_floor": -1.0}, "std_floor must be a finite number in [0, 1e+100] or None"),
    ("zscore", {"max_useful": float("inf")}, "max_useful must be a finite number in (0, 1e+100]"),
    ("drift", {"halflife_s": 0.0}, "halflife_s must be in (0, 31536000] seconds, got 0.0"),
    ("drift", {"halflife_s": float("nan")}, "halflife_s must be in (0, 31536000] seconds"),
    ("drift", {"streak": 10**6}, "streak must be an integer in [1, 1000] or None"),
    ("drift", {"std_floor": float("inf")}, "std_floor must be a finite number in [0, 1e+100]"),
    ("drift", {"max_useful": 0}, "max_useful must be a finite number in (0, 1e+100], got 0"),
])
def test_detector_parameters_are_bounded_with_clear_errors(name, params, message):
    (det,) = make_detectors([name], **{name: {**PARAMS[name], **params}})
    t = T0 + np.arange(500) * P
    with pytest.raises(ValueError) as e:
        det.fit([(t, _normal(500, 0))], P)
    assert message in str(e.value)


@pytest.mark.parametrize("flag, value, message", [
    ("--segment-len", "1000000000", "segment_len must be an integer in [2, 8192]"),
    ("--clusters", "0", "n_clusters must be an integer in [1, 10000], got 0"),
    ("--slide", "-3", "slide_len must be an integer in [1, 32], got -3"),
])
def test_train_cli_names_an_out_of_range_parameter_in_one_line(tmp_path, flag, value, message):
    csv = tmp_path / "s.csv"
    x = _normal(4000, 7)
    csv.write_text("time_s,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(x)))
    r = subprocess.run([sys.executable, "-m", "pipeline.train", "--csv", str(csv), "--out",
                        str(tmp_path / "m.npz"), "--detectors", "shape", flag, value],
                       capture_output=True, text=True, timeout=120)
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(err) == 1 and message in err[0], r.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("line, message", [
    ("poll_interval = inf", "poll_interval must be a number in [0.001, 3600], got inf"),
    ("poll_interval = nan", "poll_interval must be a number in [0.001, 3600], got nan"),
    ("poll_interval = 0", "poll_interval must be a number in [0.001, 3600], got 0"),
    ("batch_samples = 1e12", "batch_samples must be a number in [1000, 10000000], got 1000000000000.0"),
    ("batch_samples = 5000.5", "batch_samples must be a number in [1000, 10000000], got 5000.5"),
    ("batch_samples = true", "batch_samples must be a number in [1000, 10000000], got True"),
])
def test_stream_settings_are_bounded(tmp_path, line, message):
    from pipeline.stream_config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text(f"[stream]\n{line}\n[[series]]\ndb = 'a'\nmeasurement = 'x'\nmodel = 'm.npz'\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert message in str(e.value)
    path.write_text("[stream]\nbatch_samples = 1e7\npoll_interval = 0.001\n[[series]]\n"
                    "db = 'a'\nmeasurement = 'x'\nmodel = 'm.npz'\n")
    cfg = load_config(str(path))
    assert (cfg.batch_samples, cfg.poll_interval) == (10_000_000, 0.001)
