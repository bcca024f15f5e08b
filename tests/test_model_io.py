"""Model files: a list of detectors as data; round trip, content-hash version, atomic writes,
every broken-file case, and no code run on load."""

from __future__ import annotations

import json
import os
import pickle
import stat

import numpy as np
import pytest

import pipeline.datafile as datafile
import pipeline.model_io as mio
from pipeline.datasets import synthetic_ekg
from pipeline.detectors import DEFAULT_DETECTORS, REGISTRY, Budget, FlatLineDetector, make_detectors
from pipeline.model_io import ModelFileError, load_model, save_model

HINT = "python -m pipeline.train"
PERIOD = 1e9 / 360
META = {"sample_period_ns": PERIOD, "training_range_ns": [0, 20_000_000_000], "series": "ekg"}


@pytest.fixture(scope="module")
def data():
    d, _ = synthetic_ekg(duration_s=40, normal_s=35)
    x = d.value.to_numpy()
    t = np.round(np.arange(len(x)) * PERIOD).astype(np.int64)
    return t, x


@pytest.fixture(scope="module")
def fitted(data):
    """Every registered detector, fitted on 20 s and calibrated on 10 s of normal EKG."""
    t, x = data
    n, m = 20 * 360, 30 * 360
    names = [*DEFAULT_DETECTORS, *sorted(set(REGISTRY) - set(DEFAULT_DETECTORS))]
    assert names[0] == "shape"  # the damage functions below edit detector 0's arrays
    dets = make_detectors(names, shape={"n_clusters": 16, "random_state": 3})
    for d in dets:
        d.fit([(t[:n], x[:n])], PERIOD).calibrate([(t[n:m], x[n:m])], PERIOD, Budget(3600.0))
    return dets


@pytest.fixture
def saved(tmp_path, fitted):
    path = tmp_path / "m.npz"
    version = save_model(path, fitted, META)
    return path, version


def _members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, members):
    with open(path, "wb") as f:
        np.savez(f, **members)


def _meta(members):
    return json.loads(members["__meta__"].tobytes())


def _blob(meta):
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def _rehash(members, meta):
    """Store ``meta`` with a content hash that matches, as a careful forger would."""
    arrays = {k: v for k, v in members.items() if k != "__meta__"}
    meta["version"] = mio._content_hash(arrays, meta)
    members["__meta__"] = _blob(meta)


def _outputs(dets, t, x):
    return [d.new_state().update_many(t, x) for d in dets if d.enabled_]


def _assert_same_outputs(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.detector.name == w.detector.name
        np.testing.assert_array_equal(g.times, w.times)
        np.testing.assert_array_equal(g.score, w.score)  # bit-identical, NaN where NaN
        np.testing.assert_array_equal(g.alarm, w.alarm)
        assert g.threshold == w.threshold
        assert g.extra.keys() == w.extra.keys()
        for k in g.extra:
            np.testing.assert_array_equal(g.extra[k], w.extra[k])


# ---------------------------------------------------------------------------
# round trip and version
# ---------------------------------------------------------------------------
def test_round_trip_scores_bit_identically(saved, fitted, data):
    t, x = data
    path, version = saved
    lm = load_model(path)
    assert lm.version == version and len(version) == 12 and int(version, 16) >= 0
    assert [d.name for d in lm.detectors] == [d.name for d in fitted]
    for a, b in zip(lm.detectors, fitted, strict=True):
        assert type(a) is type(b) and a.get_params() == b.get_params()
        assert (a.enabled_, a.threshold_, a.period_ns_) == (b.enabled_, b.threshold_, b.period_ns_)
        assert a.calibration_ == json.loads(json.dumps(b.calibration_))
    assert len(lm.enabled) >= 3  # the comparison covers most detectors, not only the off ones
    _assert_same_outputs(_outputs(lm.detectors, t, x), _outputs(fitted, t, x))
    shape = lm.get("shape").model_
    np.testing.assert_array_equal(shape.cluster_centers_, fitted[[d.name for d in fitted].index(
        "shape")].model_.cluster_centers_)
    assert lm.get("nope") is None
    assert lm.metadata == META and lm.period_ns == PERIOD
    assert set(lm.libraries) == {"numpy", "sklearn", "pipeline", "python"}
    assert lm.libraries["numpy"] == np.__version__


def test_loaded_model_can_be_saved_again_with_the_same_version(saved, tmp_path):
    path, version = saved
    lm = load_model(path)
    assert save_model(tmp_path / "again.npz", lm.detectors, lm.metadata) == version


def test_version_ignores_library_versions(saved, fitted, tmp_path, monkeypatch):
    monkeypatch.setattr(mio.sklearn, "__version__", "0.0.0")
    assert save_model(tmp_path / "other.npz", fitted, META) == saved[1]
    assert load_model(tmp_path / "other.npz").libraries["sklearn"] == "0.0.0"


def test_version_changes_with_content(saved, fitted, tmp_path):
    _, version = saved
    lm = load_model(saved[0])
    versions = {version}

    def again(name, change):
        dets = load_model(saved[0]).detectors
        change(next(d for d in dets if d.name == name))
        versions.add(save_model(tmp_path / f"{len(versions)}.npz", dets, META))

    def ulp(d):
        c = d.model_.cluster_centers_.copy()
        c[3, 7] = np.nextafter(c[3, 7], np.inf)  # one ulp
        d.model_._set_fitted(c, d.model_.window_)

    again("shape", ulp)
    again("flatline", lambda d: setattr(d, "threshold_", np.nextafter(d.threshold_, 0)))
    again("zscore", lambda d: setattr(d, "enabled_", not d.enabled_))
    again("flatline", lambda d: d.calibration_.update(note="x"))
    versions.add(save_model(tmp_path / "m.npz", lm.detectors, {**META, "series": "other"}))
    versions.add(save_model(tmp_path / "r.npz", lm.detectors[::-1], META))  # order matters
    versions.add(save_model(tmp_path / "s.npz", lm.detectors[:1], META))
    assert len(versions) == 8


def test_no_metadata_and_numpy_scalars(tmp_path, fitted):
    save_model(tmp_path / "m.npz", fitted)
    assert load_model(tmp_path / "m.npz").metadata == {}
    assert load_model(tmp_path / "m.npz").period_ns is None
    save_model(tmp_path / "m.npz", fitted, {"period": np.int64(5), "r": np.array([1.5, 2.0])})
    assert load_model(tmp_path / "m.npz").metadata == {"period": 5, "r": [1.5, 2.0]}


def test_atomic_write_creates_parents_and_leaves_no_temp_file(tmp_path, fitted):
    path = tmp_path / "deep" / "er" / "model.npz"
    v1 = save_model(path, fitted, META)
    v2 = save_model(path, fitted[:2], META)  # replaces the file
    assert v1 != v2 and load_model(path).version == v2
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, fitted, monkeypatch):
    path = tmp_path / "model.npz"
    v1 = save_model(path, fitted, META)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(datafile.os, "fsync", boom)  # fails after the temporary file exists
    with pytest.raises(OSError, match="disk full"):
        save_model(path, fitted[:1], META)
    monkeypatch.undo()
    assert load_model(path).version == v1
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077, 0o277])
def test_model_file_is_private_to_its_owner(tmp_path, fitted, umask):
    old = os.umask(umask)
    try:
        save_model(tmp_path / "m.npz", fitted, META)
        save_model(tmp_path / "m.npz", fitted[:1], META)  # replacing keeps it
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o600 & ~umask


def test_check_writable_refuses_what_save_model_could_not_write(tmp_path):
    mio.check_writable(tmp_path / "new" / "dir" / "m.npz")  # folders would be created
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind
    (tmp_path / "f").write_text("")
    for path, message in [(tmp_path, "it is a directory"), (tmp_path / "f" / "m.npz", "is not a directory"),
                          ("/proc/x/m.npz", "cannot create files in '/proc'")]:
        with pytest.raises(ValueError, match=message):
            mio.check_writable(path)


def test_save_rejects_bad_arguments(tmp_path, fitted, data):
    t, x = data
    unfitted = FlatLineDetector().fit([(t[:2000], x[:2000])], PERIOD)  # fitted, not calibrated
    with pytest.raises(ValueError, match="detector flatline is not calibrated: call calibrate"):
        save_model(tmp_path / "m.npz", [*fitted, unfitted])
    with pytest.raises(ValueError, match="detectors must be Detector objects, got dict"):
        save_model(tmp_path / "m.npz", [{}])
    with pytest.raises(ValueError, match="metadata must be JSON-serializable"):
        save_model(tmp_path / "m.npz", fitted, {"when": object()})
    with pytest.raises(ValueError, match="metadata must be JSON-serializable"):
        save_model(tmp_path / "m.npz", fitted, {"x": float("nan")})
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
    i = data.find(b"d0.centroids.npy") + 200  # inside the stored centroid bytes
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
    m["d0.centroids"] = m["d0.centroids"] + 1e-9
    _rewrite(path, m)


def _edited_threshold(path):
    m = _members(path)
    meta = _meta(m)
    meta["detectors"][1]["threshold"] = 1e9
    m["__meta__"] = _blob(meta)
    _rewrite(path, m)


def _future_format(path):
    m = _members(path)
    meta = _meta(m)
    meta["format_version"] = 99
    _rehash(m, meta)
    _rewrite(path, m)


def _other_format(path):
    m = _members(path)
    meta = _meta(m)
    meta["format"] = "someone.else"
    _rehash(m, meta)
    _rewrite(path, m)


def _wrong_shape(path):  # consistent hash, but shapes that do not fit the params
    m = _members(path)
    m["d0.centroids"] = m["d0.centroids"][:5]
    _rehash(m, _meta(m))
    _rewrite(path, m)


def _bad_params(path):
    m = _members(path)
    meta = _meta(m)
    meta["detectors"][0]["params"]["segment_len"] = 31
    _rehash(m, meta)
    _rewrite(path, m)


def _unknown_detector(path):
    m = _members(path)
    meta = _meta(m)
    meta["detectors"][1]["name"] = "crystal-ball"
    _rehash(m, meta)
    _rewrite(path, m)


def _missing_member(path):
    m = _members(path)
    del m["d0.window"]
    _rewrite(path, m)


def _missing_member_rehashed(path):
    m = _members(path)
    del m["d0.window"]
    _rehash(m, _meta(m))
    _rewrite(path, m)


def _garbage_meta(path):
    m = _members(path)
    m["__meta__"] = np.frombuffer(b"\xff\xfe not json", dtype=np.uint8)
    _rewrite(path, m)


def _pickled_meta(path):
    m = _members(path)
    m["__meta__"] = np.array([{"a": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **m)


def _directory(path):
    path.unlink()
    path.mkdir()


def _v1_kmeans(path):
    """A model file of the single-K-Means format (before detector lists), as it was written."""
    m = _members(path)
    meta = {"format": "pipeline.kmeans-reconstructor", "format_version": 1,
            "model": {"class": "KMeansReconstructor", "params": {"n_clusters": 16}},
            "threshold": None, "metadata": META, "version": "0123456789ab"}
    _rewrite(path, {"meta": _blob(meta), "centroids": m["d0.centroids"], "window": m["d0.window"]})


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_missing, "does not exist"),
        (_directory, "is not a regular file"),
        (_truncated, "cannot be read as a model file"),
        (_flipped_byte, r"cannot be read as a model file: .*BadZipFile: Bad CRC-32"),
        (_not_npz, "cannot be read as a model file"),
        (_empty, "cannot be read as a model file"),
        (_npy, "cannot be read as a model file"),
        (_edited_centroids, "is corrupted or was edited: content hash"),
        (_edited_threshold, "is corrupted or was edited: content hash"),
        (_missing_member, "is corrupted or was edited: content hash"),
        (_future_format, "has format version 99; this version reads 2 only"),
        (_other_format, "has format 'someone.else', expected 'pipeline.detectors'"),
        (_wrong_shape, r"is incompatible with this version .*centroids/window missing or not "
                       r"float64 \(16, 32\)"),
        (_missing_member_rehashed, "is incompatible with this version .*centroids/window missing"),
        (_bad_params, "is incompatible with this version .*segment_len"),
        (_unknown_detector, r"is incompatible with this version .*unknown detector 'crystal-ball'"),
        (_garbage_meta, "cannot be read as a model file: damaged metadata"),
        (_pickled_meta, "cannot be read as a model file"),
        (_v1_kmeans, "was written by an older version of this project"),
    ],
)
def test_broken_files_raise_model_file_error(saved, damage, what):
    path, _ = saved
    damage(path)
    with pytest.raises(ModelFileError, match=what) as exc:
        load_model(path)
    msg = str(exc.value)
    assert str(path) in msg and HINT in msg and "retrain" in msg
    assert isinstance(exc.value, ValueError)


def test_v1_kmeans_file_is_named_as_an_older_version(saved):
    path, _ = saved
    _v1_kmeans(path)
    with pytest.raises(ModelFileError, match="older version of this project"):
        load_model(path)


class _Marker:
    """Unpickling this creates a directory: proof that a loader ran code from the data."""

    path = None

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_a_pickle_inside_a_model_file_is_never_run(saved, tmp_path):
    path, _ = saved
    marker = tmp_path / "pwned"
    _Marker.path = marker
    m = _members(path)
    m["d0.centroids"] = np.array([_Marker()], dtype=object)
    meta = _meta(m)
    m["__meta__"] = _blob(meta)
    with open(path, "wb") as f:
        np.savez(f, **m)
    pickle.loads(pickle.dumps(_Marker()))  # the trap works when unpickled ...
    assert marker.exists()
    marker.rmdir()
    with pytest.raises(ModelFileError, match="cannot be read as a model file"):
        load_model(path)
    assert not marker.exists()  # ... and loading the model never unpickled it


def test_a_file_that_is_no_archive_never_suggests_allow_pickle(tmp_path):
    p = tmp_path / "m.npz"
    p.write_text("time_s,value\n0,1\n")
    with pytest.raises(ModelFileError) as exc:
        load_model(p)
    assert "not an .npz archive" in str(exc.value) and "allow_pickle" not in str(exc.value)
