"""Model files: round trip, content-hash version, atomic writes, every broken-file case."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import pipeline.model_io as mio
from pipeline.datasets import synthetic_ekg
from pipeline.kmeans import KMeansReconstructor
from pipeline.model_io import ModelFileError, load_model, save_model
from pipeline.segment import sliding_segments
from pipeline.threshold import ScoreThreshold

HINT = "python -m pipeline.train"


@pytest.fixture(scope="module")
def fitted():
    data, _ = synthetic_ekg(duration_s=40, normal_s=35)
    x = data.value.to_numpy()
    model = KMeansReconstructor(n_clusters=16, random_state=3).fit(x[: 20 * 360])
    thr = ScoreThreshold(false_alarm_rate=0.01, margin=1.1).fit(model.segment_errors(x[20 * 360 : 30 * 360]))
    return x, model, thr


META = {"sample_period_ns": 2_777_778, "training_range_ns": [0, 20_000_000_000], "series": "ekg"}


@pytest.fixture
def saved(tmp_path, fitted):
    _, model, thr = fitted
    path = tmp_path / "m.npz"
    version = save_model(path, model, thr, META)
    return path, version


def _members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, members):
    with open(path, "wb") as f:
        np.savez(f, **members)


def _meta(members):
    return json.loads(members["meta"].tobytes())


def _blob(meta):
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


# ---------------------------------------------------------------------------
# round trip and version
# ---------------------------------------------------------------------------
def test_round_trip_scores_bit_identically(saved, fitted):
    x, model, thr = fitted
    path, version = saved
    lm = load_model(path)
    assert lm.version == version and len(version) == 12 and int(version, 16) >= 0
    segs = sliding_segments(x, 32, 16)
    assert np.array_equal(lm.model.score_segments(segs), model.score_segments(segs))
    assert np.array_equal(lm.model.nearest(segs), model.nearest(segs))
    assert np.array_equal(lm.model.reconstruct(x[:2000]), model.reconstruct(x[:2000]), equal_nan=True)
    assert lm.model.get_params() == model.get_params()
    for a in ("slide_len_", "n_train_segments_", "n_runs_", "algorithm_", "inertia_", "n_iter_"):
        assert getattr(lm.model, a) == getattr(model, a), a
    assert lm.threshold.get_params() == thr.get_params()
    for a in ("threshold_", "method_", "n_scores_", "base_", "score_max_", "few_scores_",
              "calibration_alarm_rate_"):
        assert getattr(lm.threshold, a) == getattr(thr, a), a
    assert np.array_equal(lm.threshold.predict(model.segment_errors(x)), thr.predict(model.segment_errors(x)))
    assert lm.metadata == META
    assert set(lm.libraries) == {"numpy", "sklearn", "pipeline", "python"}
    assert lm.libraries["numpy"] == np.__version__


def test_loaded_model_can_be_saved_again_with_the_same_version(saved, tmp_path):
    path, version = saved
    lm = load_model(path)
    assert save_model(tmp_path / "again.npz", lm.model, lm.threshold, lm.metadata) == version


def test_version_ignores_library_versions(saved, fitted, tmp_path, monkeypatch):
    _, model, thr = saved[1], fitted[1], fitted[2]
    monkeypatch.setattr(mio.sklearn, "__version__", "0.0.0")
    assert save_model(tmp_path / "other.npz", model, thr, META) == saved[1]
    assert load_model(tmp_path / "other.npz").libraries["sklearn"] == "0.0.0"


def test_version_changes_with_content(saved, fitted, tmp_path):
    _, model, thr = fitted
    _, version = saved
    bumped = clone(model)
    centers = model.cluster_centers_.copy()
    centers[3, 7] = np.nextafter(centers[3, 7], np.inf)  # one ulp
    bumped._set_fitted(centers, model.window_)
    for a in ("slide_len_", "n_train_segments_", "n_runs_", "algorithm_", "inertia_", "n_iter_"):
        setattr(bumped, a, getattr(model, a))
    versions = {
        version,
        save_model(tmp_path / "a.npz", bumped, thr, META),
        save_model(tmp_path / "b.npz", model, None, META),
        save_model(tmp_path / "c.npz", model, thr, {**META, "series": "other"}),
        save_model(tmp_path / "d.npz", model, clone(thr).set_params(margin=1.2).fit(np.arange(100.0)), META),
    }
    assert len(versions) == 5


def test_threshold_none_and_no_metadata(tmp_path, fitted):
    _, model, _ = fitted
    save_model(tmp_path / "m.npz", model)
    lm = load_model(tmp_path / "m.npz")
    assert lm.threshold is None and lm.metadata == {}


def test_numpy_scalars_in_metadata_are_stored_as_plain_values(tmp_path, fitted):
    _, model, thr = fitted
    save_model(tmp_path / "m.npz", model, thr, {"period": np.int64(5), "r": np.array([1.5, 2.0])})
    assert load_model(tmp_path / "m.npz").metadata == {"period": 5, "r": [1.5, 2.0]}


def test_atomic_write_creates_parents_and_leaves_no_temp_file(tmp_path, fitted):
    _, model, thr = fitted
    path = tmp_path / "deep" / "er" / "model.npz"
    v1 = save_model(path, model, thr, META)
    v2 = save_model(path, model, None, META)  # replaces the file
    assert v1 != v2 and load_model(path).version == v2
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, fitted, monkeypatch):
    _, model, thr = fitted
    path = tmp_path / "model.npz"
    v1 = save_model(path, model, thr, META)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(mio.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, model, None, META)
    monkeypatch.undo()
    assert load_model(path).version == v1
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_model_file_has_the_mode_of_a_normal_file(tmp_path, fitted, umask):
    _, model, thr = fitted
    old = os.umask(umask)
    try:
        save_model(tmp_path / "m.npz", model, thr, META)
        save_model(tmp_path / "m.npz", model, None, META)  # replacing keeps it
        (tmp_path / "plain").write_bytes(b"")  # what any new file gets
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.npz").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_check_writable_refuses_what_save_model_could_not_write(tmp_path):
    mio.check_writable(tmp_path / "new" / "dir" / "m.npz")  # folders would be created
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind
    (tmp_path / "f").write_text("")
    for path, message in [(tmp_path, "it is a directory"), (tmp_path / "f" / "m.npz", "is not a directory"),
                          ("/proc/x/m.npz", "cannot create files in '/proc'")]:
        with pytest.raises(ValueError, match=message):
            mio.check_writable(path)


def test_save_rejects_bad_arguments(tmp_path, fitted):
    _, model, thr = fitted
    with pytest.raises(NotFittedError):
        save_model(tmp_path / "m.npz", KMeansReconstructor(), thr)
    with pytest.raises(NotFittedError):
        save_model(tmp_path / "m.npz", model, ScoreThreshold())
    with pytest.raises(ValueError, match="threshold must be a fitted ScoreThreshold or None, got float"):
        save_model(tmp_path / "m.npz", model, 8.8)
    with pytest.raises(ValueError, match="model must be a fitted KMeansReconstructor, got dict"):
        save_model(tmp_path / "m.npz", {}, thr)
    with pytest.raises(ValueError, match="metadata must be JSON-serializable"):
        save_model(tmp_path / "m.npz", model, thr, {"when": object()})
    with pytest.raises(ValueError, match="metadata must be JSON-serializable"):
        save_model(tmp_path / "m.npz", model, thr, {"x": float("nan")})
    assert not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------------------
# broken files: every case is a ModelFileError naming the file and the fix
# ---------------------------------------------------------------------------
def _missing(path):
    path.unlink()


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flipped_byte(path):
    data = bytearray(path.read_bytes())
    i = data.find(b"centroids.npy") + 200  # inside the stored centroid bytes
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_npz(path):
    path.write_text("time,value\n0,1.0\n")


def _empty(path):
    path.write_bytes(b"")


def _npy(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def _edited_centroids(path):  # a well-formed archive whose content no longer matches its hash
    m = _members(path)
    m["centroids"] = m["centroids"] + 1e-9
    _rewrite(path, m)


def _edited_threshold(path):
    m = _members(path)
    meta = _meta(m)
    meta["threshold"]["fitted"]["threshold"] = 0.0
    m["meta"] = _blob(meta)
    _rewrite(path, m)


def _future_format(path):
    m = _members(path)
    meta = _meta(m)
    meta["format_version"] = 99
    m["meta"] = _blob(meta)
    _rewrite(path, m)


def _wrong_shape(path):  # consistent hash, but shapes that do not fit the params
    m = _members(path)
    meta = _meta(m)
    m["centroids"] = m["centroids"][:5]
    meta["version"] = mio._content_hash({"centroids": m["centroids"], "window": m["window"]}, meta)
    m["meta"] = _blob(meta)
    _rewrite(path, m)


def _bad_params(path):
    m = _members(path)
    meta = _meta(m)
    meta["model"]["params"]["segment_len"] = 31
    meta["version"] = mio._content_hash(m, meta)
    m["meta"] = _blob(meta)
    _rewrite(path, m)


def _missing_member(path):
    m = _members(path)
    del m["window"]
    _rewrite(path, m)


def _garbage_meta(path):
    m = _members(path)
    m["meta"] = np.frombuffer(b"\xff\xfe not json", dtype=np.uint8)
    _rewrite(path, m)


def _pickled_meta(path):
    m = _members(path)
    m["meta"] = np.array([{"a": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **m)


def _directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_missing, "does not exist"),
        (_directory, "is not a regular file"),
        (_truncated, "cannot be read as a model .npz archive"),
        (_flipped_byte, "cannot be read as a model .npz archive"),
        (_not_npz, "cannot be read as a model .npz archive"),
        (_empty, "cannot be read as a model .npz archive"),
        (_npy, "is a single .npy array"),
        (_edited_centroids, "is corrupted or was edited: content hash"),
        (_edited_threshold, "is corrupted or was edited: content hash"),
        (_future_format, "has format version 99; this pipeline .* reads format version 1 only"),
        (_wrong_shape, r"centroids have dtype float64 and shape \(5, 32\), expected float64 \(16, 32\)"),
        (_bad_params, "segment_len must be even"),
        (_missing_member, r"missing member\(s\) \['window'\]"),
        (_garbage_meta, "has unreadable metadata"),
        (_pickled_meta, "cannot be read as a model .npz archive"),
    ],
)
def test_broken_files_raise_model_file_error(saved, damage, what):
    path, _ = saved
    damage(path)
    with pytest.raises(ModelFileError, match=what) as exc:
        load_model(path)
    msg = str(exc.value)
    assert str(path) in msg and HINT in msg
    assert isinstance(exc.value, ValueError)


def test_flipped_byte_is_caught_by_the_zip_crc(saved):
    path, _ = saved
    _flipped_byte(path)
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    assert isinstance(exc.value.__cause__, zipfile.BadZipFile)
