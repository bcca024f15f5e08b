"""The stream's output: which fields each detector writes where, and the lines of a scored batch.

Every detector the model keeps on writes its score, threshold and alarm
fields (its diagnostics too with ``[output] diagnostics``), under its own
field names; the stream names none of them:

* a detector that **stamps its own times** (:func:`stamps_own_times`: a
  segment's centre, a window, a fleet's time bin) writes its own points: to
  ``[output] measurement`` (``ERROR``) when it is not per-sample, else to the
  per-sample measurement (``zscore``);
* the other per-sample detectors' fields are merged into **one point per
  source sample**, in ``[output] zscore_measurement``.

Points carry the prefixes of :class:`~pipeline.fanout.Prefixes` (the
source's tags, ``series`` and ``model``: :func:`output_tags`); a key whose names InfluxDB cannot
store has no prefix (:func:`batch_prefixes` reports it, the stream
quarantines it) and its points are left out.  :func:`encode_outputs` gives the
line protocol of one batch: the points of the detectors that stamp their own
times, detector by detector, then the merged per-sample points.
"""

from __future__ import annotations

import numpy as np

from .fanout import Prefixes, encode_rows

__all__ = ["output_tags", "measurement_of", "output_fields", "stamps_own_times", "output_rows",
           "batch_prefixes", "encode_outputs"]


def output_tags(s, f):
    """``tags(row)``: the tags of the output points of row ``row`` of fleet ``f`` of series
    ``s``: the source's filter tags, the fan-out tag, ``series`` and ``model``."""
    def tags(row: int) -> dict:
        t = dict(s.tags)
        if s.fan_out:
            t[s.fan_out] = f.keys[row]
        t["series"] = s.name
        t["model"] = f.version
        return t
    return tags


def measurement_of(det, out_cfg) -> str:
    """The measurement a detector's points go to.

    >>> from pipeline.detectors import ShapeDetector, ZScoreDetector
    >>> from pipeline.stream_config import OutputConfig
    >>> measurement_of(ShapeDetector(), OutputConfig()), measurement_of(ZScoreDetector(),
    ...                                                                 OutputConfig())
    ('ERROR', 'zscore')
    """
    return out_cfg.zscore_measurement if det.per_sample else out_cfg.measurement


def output_fields(detectors, out_cfg) -> dict[str, list[str]]:
    """``{measurement: field names}`` the ``detectors`` write (per-sample measurement first).

    >>> from pipeline.detectors import FlatLineDetector, ShapeDetector, ZScoreDetector
    >>> from pipeline.stream_config import OutputConfig
    >>> output_fields([ShapeDetector(), ZScoreDetector()], OutputConfig(diagnostics=True))
    {'zscore': ['z', 'z_threshold', 'alert', 'streak', 'zscore'], 'ERROR': ['max_error', 'threshold', 'anomaly']}
    >>> output_fields([FlatLineDetector()], OutputConfig())
    {'zscore': ['flat_s', 'flat_threshold', 'flat_alert'], 'ERROR': []}
    """
    diag = out_cfg.diagnostics
    fields = {out_cfg.zscore_measurement: [], out_cfg.measurement: []}
    for d in detectors:
        fields[measurement_of(d, out_cfg)] += [d.score_field, d.threshold_field, d.alarm_field,
                                               *(d.extra_fields if diag else ())]
    return fields


def stamps_own_times(det) -> bool:
    """A detector whose points lie where it puts them (not one on each source sample): a
    segment or window detector, or a cross-key one (a key's reading per time bin).

    >>> from pipeline.detectors import FleetDetector, ShapeDetector, ZScoreDetector
    >>> [stamps_own_times(d()) for d in (ShapeDetector, ZScoreDetector, FleetDetector)]
    [True, False, True]
    """
    return not det.per_sample or bool(det.cross_key)


def output_rows(det, out, point_rows: np.ndarray) -> np.ndarray:
    """The fleet row (key) of each of a detector's output points in a batch whose samples
    have rows ``point_rows``."""
    return np.repeat(out.rows, np.diff(out.starts)) if stamps_own_times(det) else point_rows


def batch_prefixes(pre: Prefixes, fields: dict, rows) -> tuple[dict, list]:
    """The line-protocol prefixes of ``rows`` per measurement that has fields.

    Returns ``({measurement: prefixes by row}, [(row, error), ...])``: the rows whose
    names InfluxDB cannot store, measurement by measurement.
    """
    prefix, errors = {}, []
    for meas, names in fields.items():
        if names:
            prefix[meas], bad = pre.get(meas, rows, names)
            errors += bad.items()
    return prefix, errors


def encode_outputs(dets, outs, rows, times, point_rows, pre: Prefixes, prefix: dict,
                   fields: dict, out_cfg) -> list[str]:
    """The line protocol of one scored batch.

    ``outs`` are the outputs of ``dets`` (their ``measurement`` set), ``rows`` the output
    points' rows (:func:`output_rows`), ``times`` and ``point_rows`` the batch's samples;
    ``prefix`` is :func:`batch_prefixes`' for the batch's rows.  A cross-key detector's
    points may be of keys the batch did not hold: their prefixes come from ``pre``.
    """
    diag = out_cfg.diagnostics
    single = out_cfg.precision == "float32"
    lines: list = []
    per_sample = {}
    for det, out, orows in zip(dets, outs, rows, strict=True):
        if not stamps_own_times(det):
            per_sample.update(out.fields(diag))
        elif len(out):
            pfx = prefix[out.measurement]
            if det.cross_key:  # its points may be of keys this batch did not hold
                pfx = pre.get(out.measurement, out.rows, fields[out.measurement])[0]
            ok = pfx[orows] != None  # noqa: E711 (a key whose names InfluxDB refused)
            lines += encode_rows(pfx, orows[ok], out.times[ok],
                                 {k: v[ok] for k, v in out.fields(diag).items()}, single)
    if per_sample:
        lines += encode_rows(prefix[out_cfg.zscore_measurement], point_rows, times, per_sample,
                             single)
    return lines
