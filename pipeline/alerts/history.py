"""Alert history in InfluxDB, in the schema Kapacitor writes and Chronograf reads.

Chronograf's *Alert History* page runs, against database ``chronograf``::

    SELECT host, value, level, alertName FROM alerts WHERE time >= ... ORDER BY time desc

and Chronograf-generated TICKscripts fill it with ``|alert()`` +
``|influxDBOut()``: the alerting point's tags plus ``alertName`` (the rule
name), ``triggerType`` (``threshold``), ``level`` (``.levelTag``: Kapacitor's
level names ``OK``, ``INFO``, ``WARNING``, ``CRITICAL``) and ``alertID``
(``.idTag``); fields ``value`` (float), ``message`` (``.messageField``) and
``duration`` (``.durationField``: an integer in **nanoseconds**, 0 on the
alert, the time since the episode started on the recovery).

The Python path writes the same, one point per ALERT and per RECOVERY (the
flood guard's suppressed ones too: the history is a record, not a pager),
at the data time of the event.  Tags: the scored point's tags (``series``,
the fan-out tag, ``model``, the source's filter tags) and ``alertName`` =
``"<label> on <series>"``, ``level``, ``alertID``, ``triggerType`` =
``threshold``, ``detector``, ``host`` (only when the point has no ``host``
tag: the fan-out key, else the series, so the page's *Host* column tells
sensors apart).  Fields: ``value`` (the score), ``threshold``, ``message``,
``duration`` (int ns).
"""

from __future__ import annotations

import math

import numpy as np

from ..influx import Influx, InfluxError, InfluxQueryError, check_times, series_prefix
from ..line_protocol import float_texts
from ._http import DeliveryError
from .destinations import Destination
from .messages import SUMMARY, Notification

__all__ = ["ChronografHistory", "history_line", "HISTORY_TAGS"]

_FIELD_KEYS = ("duration", "message", "threshold", "value")
HISTORY_TAGS = ("alertName", "level", "alertID", "triggerType", "detector")
"""Tags every history point gets from the alert itself (they replace a point tag of the same
name, so the stream refuses a series whose filter or fan-out tag has one of these names)."""


def history_line(n: Notification, measurement: str = "alerts") -> str:
    """One line of line protocol for ``n`` in Chronograf's ``alerts`` schema.

    Examples
    --------
    >>> n = Notification("recovery", "t:zscore:s1:recovery:7", "t:zscore:s1", "t", "s1",
    ...                  "zscore", "z-score", 7, "[OK] ...", tags={"series": "t", "sensor": "s1"},
    ...                  value=0.5, threshold=3.0, duration_ns=4)
    >>> print(history_line(n))
    alerts,alertID=t:zscore:s1,alertName=z-score\\ on\\ t,detector=zscore,host=s1,level=OK,sensor=s1,series=t,triggerType=threshold duration=4i,message="[OK] ...",threshold=3.0,value=0.5 7
    """
    if n.kind == SUMMARY:
        raise ValueError("summaries are not alert history")
    tags = dict(n.tags)
    tags.setdefault("host", n.key or n.series)
    tags.update(zip(HISTORY_TAGS, (f"{n.label} on {n.series}", n.level, n.alert_id,
                                   "threshold", n.detector), strict=True))
    check_times(np.array([n.time_ns], dtype=np.int64))
    # one point: the fields by hand (encode_lines' numpy columns cost 40 % more for one point);
    # every name is still checked and escaped by series_prefix, fields in sorted order
    prefix = series_prefix(measurement, tags, _FIELD_KEYS)
    msg = n.text.replace("\\", "\\\\").replace('"', '\\"')
    fields = [f"duration={int(n.duration_ns or 0)}i", f'message="{msg}"']
    for k, v in (("threshold", n.threshold), ("value", n.value)):
        if v is not None and math.isfinite(v):
            fields.append(f"{k}={float_texts([float(v)])[0]}")  # the general encoder's text
    return f"{prefix} {','.join(fields)} {int(n.time_ns)}"


class ChronografHistory(Destination):
    """Write every ALERT and RECOVERY to ``<db>.<rp>.<measurement>`` (default ``chronograf.autogen.alerts``).

    The database is created on first use (like Kapacitor's
    ``influxDBOut().create()``); a user without the right to create it needs
    it created beforehand.
    """

    def __init__(self, influx: Influx, name: str = "chronograf", db: str = "chronograf",
                 rp: str | None = "autogen", measurement: str = "alerts"):
        self.influx = influx
        self.name, self.db, self.rp, self.measurement = name, db, rp, measurement
        self._created = False

    def wants(self, n: Notification) -> bool:
        return n.kind != SUMMARY

    def send(self, n: Notification) -> None:
        self.send_many([n])

    def send_many(self, notes) -> None:
        """Write the points of ``notes`` in one request (the dispatcher batches the history)."""
        try:
            if not self._created:
                try:
                    self.influx.create_database(self.db)
                except InfluxQueryError:
                    pass  # no right to create: the write says whether it exists
                self._created = True
            self.influx.write_lines(self.db, [history_line(n, self.measurement) for n in notes],
                                    rp=self.rp)
        except InfluxError as e:
            self._created = False
            raise DeliveryError(f"{self.name}: {e}") from None
