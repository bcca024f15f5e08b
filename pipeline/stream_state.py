"""What the stream starts from: each series' model, and each fleet's state from its checkpoint.

:func:`load_models` loads the model file of every configured series and
checks it against the config (a detector switched on, the sample period).
:func:`restore_fleet` gives a new :class:`~pipeline.fleet.Fleet` what its
checkpoint (:mod:`pipeline.checkpoint`) holds: the marks, checks and
detector states of every key.  A checkpoint of another model version keeps
its marks and restarts the rolling state (or, in backfill, is dropped and
the range re-scored); version 2 checkpoints (one file per key) are folded
into the fleet and deleted after its first save.

Log lines go to the logger ``pipeline.stream``, as the stream's own.
"""

from __future__ import annotations

import logging

from .checkpoint import CheckpointStore, SeriesState
from .fleet import Fleet
from .model_io import ModelFile, load_model
from .series import format_timestamp
from .stream_config import ConfigError, SeriesConfig, StreamConfig
from .stream_summary import label

__all__ = ["load_models", "restore_fleet"]

log = logging.getLogger("pipeline.stream")

_fmt = format_timestamp


def _load_model(path: str) -> ModelFile:
    m = load_model(path)
    if not m.enabled:
        raise ConfigError(f"model file {path} has no detector switched on (calibration turned "
                          "them all off); retrain with python -m pipeline.train on more or "
                          "other normal data")
    return m


def load_models(cfg: StreamConfig) -> tuple[dict, dict]:
    """``({series name: ModelFile}, {series name: sample period (ns)})`` of every series.

    Raises :class:`~pipeline.stream_config.ConfigError` for a series without a
    model file, a model with every detector off, a ``sample_rate`` more than
    1 % away from the model's, or no sample period at all.
    """
    missing = [s.name for s in cfg.series if not s.model]
    if missing:
        raise ConfigError(f"series {missing} have no model file: the detectors and their "
                          "thresholds come from one; train it with python -m pipeline.train")
    models = {s.name: _load_model(s.model) for s in cfg.series}
    for s in cfg.series:
        m = models[s.name]
        if s.sample_period_ns and m.period_ns and abs(s.sample_period_ns / m.period_ns - 1) > 0.01:
            raise ConfigError(
                f"series {s.name}: sample_rate gives a period of {s.sample_period_ns / 1e6:.6g} "
                f"ms but the model was trained at {m.period_ns / 1e6:.6g} ms; retrain the "
                "model at this rate (python -m pipeline.train) or fix sample_rate")
        if not (s.sample_period_ns or m.period_ns):
            raise ConfigError(f"series {s.name}: the model file does not record its sample "
                              "period; give sample_rate (Hz) or sample_period (s)")
    periods = {s.name: float(s.sample_period_ns or models[s.name].period_ns) for s in cfg.series}
    return models, periods


def restore_fleet(store: CheckpointStore, s: SeriesConfig, f: Fleet, resume: bool,
                  fresh_on_change: bool) -> list | None:
    """Load into the new fleet ``f`` of series ``s`` what its checkpoint in ``store`` holds.

    Without ``resume``, or without a checkpoint, ``f`` is left as it is.  A
    checkpoint of another model version is dropped with ``fresh_on_change``
    (backfill re-scores its range), else its marks are kept and the rolling
    state restarts.  Returns the version 2 files folded into ``f`` (to delete
    once ``f`` is saved), or None when there were none.
    """
    m = f.model
    data = store.load_fleet(s.name) if resume else None
    legacy = []
    if isinstance(data, SeriesState):
        legacy, data = [(None, data)], None
    elif data is None and resume:
        legacy = store.legacy(s.name)
    p = store.path(s.name)
    if data is not None:
        meta, arrays = data
        states = meta.get("model_version") == m.version
        if not states and fresh_on_change:
            log.warning("series %s: the model changed (%s -> %s); the checkpoint is dropped "
                        "and the range re-scored", s.name, meta.get("model_version"), m.version)
        else:
            try:
                f.set_data(meta, arrays, states=states)
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"checkpoint {p} does not fit the model ({e}); run with "
                                  "--reset to start over") from None
            if not states:
                log.warning("series %s: the model changed (%s -> %s); the rolling state "
                            "restarts at the checkpoint's marks", s.name,
                            meta.get("model_version"), m.version)
            _log_resume(s, f)
    elif legacy:
        return _migrate(store, s, f, legacy, fresh_on_change)
    return None


def _log_resume(s: SeriesConfig, f: Fleet) -> None:
    if not len(f):
        return
    if len(f) == 1:
        log.info("series %s: resuming after %s", label(s.name, f.keys[0]), _fmt(int(f.last[0])))
    else:
        log.info("series %s: resuming %d keys after %s .. %s", s.name, len(f),
                 _fmt(int(f.last.min())), _fmt(int(f.last.max())))


def _migrate(store: CheckpointStore, s: SeriesConfig, f: Fleet, legacy,
             fresh_on_change: bool) -> list:
    """Fold version 2 checkpoints (one file per key) into the fleet; saved at the next
    commit, after which the old files (returned) are deleted."""
    m = f.model
    for _, st in legacy:
        if st.model_version != m.version and fresh_on_change:
            continue
        f.add([st.key], st.origin_ns)
        row = f.index[st.key]
        f.last[row], f.n_samples[row] = st.last_time_ns, st.n_samples
        if st.model_version == m.version:
            try:
                st.restore(m.enabled)
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"checkpoint {store.path(s.name, st.key)} does not "
                                  f"fit the model ({e}); run with --reset to start over") \
                    from None
            for blk, ds in zip(f.blocks, st.detectors, strict=True):
                blk.set_row(row, ds)
            f.checked[row] = st.period_checked
        else:
            log.warning("series %s: the model changed (%s -> %s); the rolling state "
                        "restarts at %s", label(s.name, st.key), st.model_version, m.version,
                        _fmt(st.last_time_ns))
    _log_resume(s, f)
    return [p for p, _ in legacy if p is not None]
