"""What the stream calls: engine + outbox + dispatcher (+ Plexus forwarders) behind three methods.

In ``pipeline.stream`` (one instance for the whole stream)::

    alerts = AlertManager(cfg, state_path=Path(checkpoint_dir) / "alerts.json", influx=influx)
    ...
    # per batch, per (series, fan-out key), per detector output, after scoring:
    alerts.feed(series, key, tags, model_version, outputs)
    ...
    # after the scores were written, BEFORE the series checkpoints are saved:
    alerts.commit()
    ...
    alerts.close()            # at exit (undelivered notifications wait in the outbox)

Crash safety: :meth:`commit` saves the engine state and the batch's new
notifications together in one atomic file before handing them to the sender
threads.  Killed before that save, the restart redoes the batch from the old
checkpoint and the old engine state: the same notifications come again.
Killed after it (before the checkpoints), the batch is redone but the engine
ignores points it has seen (per key, by time): nothing is sent twice.  A
notification regenerated anyway (e.g. the engine state kept elsewhere) has
the same id and the outbox drops it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..influx import Influx
from .config import AlertsConfig, AlertsConfigError, DestinationConfig
from .destinations import (
    Destination,
    EnvError,
    LogDestination,
    SlackDestination,
    WebhookDestination,
)
from .dispatch import Dispatcher, Outbox, OutboxError, RetryPolicy
from .history import ChronografHistory
from .messages import Notification
from .rules import AlertEngine

__all__ = ["AlertManager", "build_destination"]

log = logging.getLogger("pipeline.alerts")


def build_destination(dc: DestinationConfig, cfg: AlertsConfig, influx: Influx | None,
                      environ: Mapping[str, str]) -> Destination:
    """Make the destination ``dc`` describes (reads the secrets from ``environ`` now)."""
    o = dc.options
    try:
        if dc.type == "slack":
            return SlackDestination(o["url_env"], name=dc.name, channel=o.get("channel"),
                                    username=o.get("username"), icon_emoji=o.get("icon_emoji"),
                                    timeout=o.get("timeout", cfg.timeout), environ=environ)
        if dc.type == "webhook":
            return WebhookDestination(o["url_env"], name=dc.name,
                                      headers_env=o.get("headers_env"),
                                      timeout=o.get("timeout", cfg.timeout), environ=environ)
    except EnvError as e:
        raise AlertsConfigError(f"[alerts] {e}") from None
    if dc.type == "log":
        return LogDestination(name=dc.name, logger=o.get("logger", "pipeline.alerts"))
    if dc.type == "chronograf":
        return ChronografHistory(influx or Influx(), name=dc.name, db=o.get("db", "chronograf"),
                                 rp=o.get("rp", "autogen"),
                                 measurement=o.get("measurement", "alerts"))
    raise AlertsConfigError(f"[alerts] unknown destination type {dc.type!r}")


class AlertManager:
    """The alert path of the stream.

    Parameters
    ----------
    cfg : AlertsConfig
        From :func:`~pipeline.alerts.config.parse_alerts_config`.
    state_path : path-like
        The outbox file (engine state + undelivered notifications); default
        ``cfg.outbox``.  Put it in the checkpoint directory.
    influx : Influx, optional
        Connection for the ``chronograf`` history destination.
    destinations : list of Destination, optional
        Use these instead of building ``cfg.destinations`` (tests, embedding).
    environ : mapping, optional
        Where secrets are read (default ``os.environ``).
    start : bool, default=True
        Start the sender threads (and re-send what the outbox holds) now.
    """

    def __init__(self, cfg: AlertsConfig, state_path=None, influx: Influx | None = None,
                 destinations: list | None = None, environ: Mapping[str, str] | None = None,
                 start: bool = True):
        env = os.environ if environ is None else environ
        self.cfg = cfg
        path = state_path or cfg.outbox
        if path is None:
            raise AlertsConfigError("[alerts] needs an outbox file: set outbox = \"...\" or pass "
                                    "state_path (the stream uses <checkpoint_dir>/alerts.json)")
        if destinations is None:
            destinations = [build_destination(d, cfg, influx, env) for d in cfg.destinations]
        self.destinations = list(destinations)
        self.outbox = Outbox(Path(path), max_entries=cfg.outbox_max)
        state = self.outbox.load()
        try:
            self.engine = (AlertEngine.from_state(state, cfg.max_per_minute) if state
                           else AlertEngine(cfg.max_per_minute))
        except ValueError as e:
            raise OutboxError(f"alert outbox {self.outbox.path}: {e}; move it away to start "
                              "without it (its undelivered alerts are then lost)") from None
        self.dispatcher = Dispatcher(self.destinations, self.outbox,
                                     RetryPolicy(tries=cfg.tries, delay=cfg.retry_delay))
        self.forwarders = []
        if cfg.plexus:
            from ..plexus import PlexusForwarder

            self.forwarders = [PlexusForwarder(p.source_id, p.metric, series=p.series,
                                               detector=p.detector, reduce=p.reduce,
                                               persistent_buffer=p.persistent_buffer,
                                               timeout=cfg.timeout, environ=env)
                               for p in cfg.plexus]
        self._metrics: list = []
        self._fed = False
        self._listeners: list = []
        if start:
            self.start()

    def start(self) -> None:
        """Start the sender threads; the outbox's pending and failed notifications go first."""
        self.dispatcher.start()
        for f in self.forwarders:
            f.start()

    def feed(self, series: str, key: str, tags: Mapping, model: str | None,
             outputs: Iterable) -> None:
        """Take one batch's detector outputs of one (series, fan-out key). No I/O.

        ``outputs`` is an iterable of ``DetectorOutput``-likes (or a single one).
        """
        if hasattr(outputs, "alarm"):
            outputs = [outputs]
        for out in outputs:
            if self.cfg.detectors is None or out.name in self.cfg.detectors:
                self.engine.feed(series, key, tags, model, out)
                self._fed = True
            for f in self.forwarders:
                if f.series == series and f.detector == out.name:
                    self._metrics.append((f, f.points(out, key, tags)))

    def subscribe(self, fn) -> None:
        """Call ``fn(notifications)`` after each :meth:`commit` that raised some (all of them:
        summaries and flood-suppressed ones too), once they are safe in the outbox.

        ``fn`` runs on the stream's thread and must be quick (e.g. ``list.extend``).
        """
        self._listeners.append(fn)

    def route(self, n: Notification) -> list[str]:
        """Names of the destinations that take ``n``."""
        return [d.name for d in self.destinations if d.wants(n)]

    def commit(self, final: bool = False) -> list[Notification]:
        """End of batch: flush the engine, persist state + new notifications, queue them.

        Call after the batch's scores were written and before its checkpoints
        are saved.  ``final=True`` also summarizes minutes not over yet (end
        of a backfill).  Returns the batch's notifications (all of them,
        including those only the history takes).
        """
        notes = self.engine.flush(final=final)
        if notes or self._fed:  # an idle poll changes nothing: no file write
            routed = [(n, self.route(n)) for n in notes]
            new = {n.id for n in self.outbox.add(routed)}
            self.outbox.save(self.engine.state_dict())
            self.dispatcher.submit([(n, d) for n, d in routed if n.id in new])
            self._fed = False
            for fn in self._listeners:
                fn(notes)
        metrics, self._metrics = self._metrics, []
        for f, pts in metrics:
            f.submit(pts)
        return notes

    def state_dict(self) -> dict:
        """The engine state (also saved in the outbox file by :meth:`commit`)."""
        return self.engine.state_dict()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued was delivered or given up (tests, end of backfill)."""
        ok = self.dispatcher.drain(timeout)
        for f in self.forwarders:
            ok = f.drain(timeout) and ok
        return ok

    def close(self, timeout: float = 5.0) -> None:
        """Stop the senders; undelivered notifications wait in the outbox for the next start."""
        self.dispatcher.stop(timeout)
        for f in self.forwarders:
            f.stop(timeout)
        try:
            self.outbox.save()  # fold the journal in (the engine state stays the committed one)
        except OSError as e:
            log.error("could not compact the alert outbox %s (%s); its journal keeps the "
                      "deliveries", self.outbox.path, e.strerror or type(e).__name__)
        self.outbox.close()
