"""Plexus: forward a detector's score as a metric, and register a threshold monitor.

Forwarding (in the stream, configured by ``[[alerts.plexus]]``):
:class:`PlexusForwarder` sends, per batch and fan-out key, the magnitude of
one detector's score (``|score|``, the number compared with its threshold)
as a Plexus metric, e.g. ``temperature.zscore``, with ``plexus-python``'s
``Plexus(source_id=...).send(...)``.  ``reduce`` picks what is sent: ``max``
(default: the batch's largest ``|score|`` at its time), ``last``, or ``all``
(every point).  A sender thread does the network work; scoring only appends
to a bounded queue.  Plexus's own client retries and buffers points it could
not deliver; what this module could not hand over is logged, never raised.

Monitor (once, from a shell)::

    python -m pipeline.plexus register-monitor --model models/ekg.npz \\
        --source-id lab-ekg --metric ekg.max_error [--severity critical]

creates the threshold monitor with ``POST {PLEXUS_ENDPOINT}/api/monitors``
(body ``{source_id, metric, threshold: {max, severity, message}}``).  The API
key comes only from ``PLEXUS_API_KEY`` and is never printed.

Note: a Plexus monitor compares each point with ``max``; the stream's own
alarms add the detector's streak guard / hysteresis, so the two can differ
on short blips.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import threading
import time

import numpy as np

from .alerts._http import DeliveryError, SafeURL, post_json

__all__ = ["PlexusForwarder", "threshold_from_model", "register_monitor", "main"]

log = logging.getLogger("pipeline.plexus")

DEFAULT_ENDPOINT = "https://app.plexus.company"


def _api_key(environ=None) -> str:
    env = os.environ if environ is None else environ
    key = env.get("PLEXUS_API_KEY", "").strip()
    if not key:
        raise ValueError("environment variable PLEXUS_API_KEY is not set; export your Plexus "
                         "API key in it (it is never read from a file or printed)")
    return key


class PlexusForwarder:
    """Send one detector's ``|score|`` of one series to Plexus, off the scoring thread.

    Parameters
    ----------
    source_id : str
        Plexus source (a lowercase slug).
    metric : str
        Metric name, e.g. ``"temperature.zscore"``.
    series, detector : str, optional
        Which outputs of the stream this forwarder takes (see ``AlertManager``).
    reduce : {"max", "last", "all"}, default="max"
    persistent_buffer : bool, default=True
        Passed to ``plexus.Plexus``: keep undeliverable points on disk.
    max_queue : int, default=10000
        Batches waiting at most; past that the oldest are dropped (logged).
    environ : mapping, optional
        Where ``PLEXUS_API_KEY`` is read (default ``os.environ``).
    """

    def __init__(self, source_id: str, metric: str, series: str | None = None,
                 detector: str | None = None, reduce: str = "max",
                 persistent_buffer: bool = True, max_queue: int = 10_000, timeout: float = 10.0,
                 environ=None):
        if reduce not in ("max", "last", "all"):
            raise ValueError(f"reduce must be max, last or all, got {reduce!r}")
        self._key = _api_key(environ)
        self.source_id, self.metric = source_id, metric
        self.series, self.detector, self.reduce = series, detector, reduce
        self.persistent_buffer, self.timeout = persistent_buffer, timeout
        self.queue: collections.deque = collections.deque(maxlen=max_queue)
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._client = None
        self.sent = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"PlexusForwarder(source_id={self.source_id!r}, metric={self.metric!r})"

    # -- scoring side (no I/O) -------------------------------------------------
    def points(self, output, key: str = "", tags=None) -> tuple[list, dict]:
        """``([(metric, |score|, t_ms), ...], tags)`` for one detector output.

        >>> import numpy as np
        >>> from types import SimpleNamespace as NS
        >>> f = PlexusForwarder("lab", "temperature.zscore", environ={"PLEXUS_API_KEY": "k"})
        >>> out = NS(times=np.array([1, 2, 3]) * 10**12, score=np.array([1.0, -4.5, np.nan]))
        >>> f.points(out, "s01", {"sensor": "s01"})
        ([('temperature.zscore', 4.5, 2000000)], {'sensor': 's01'})
        """
        t = np.asarray(output.times)
        mag = np.abs(np.asarray(output.score, dtype=np.float64))
        ok = np.isfinite(mag)
        t, mag = t[ok], mag[ok]
        if len(t) == 0:
            return [], dict(tags or {})
        if self.reduce == "max":
            idx = [int(np.argmax(mag))]
        elif self.reduce == "last":
            idx = [len(t) - 1]
        else:
            idx = range(len(t))
        pts = [(self.metric, float(mag[i]), int(t[i]) // 1_000_000) for i in idx]
        return pts, {str(k): str(v) for k, v in (tags or {}).items()}

    def submit(self, item: tuple[list, dict]) -> None:
        """Queue one batch's points (O(1)); the sender thread does the rest."""
        if not item[0]:
            return
        with self.cond:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += len(self.queue[0][0])
                log.warning("plexus %s: queue full, dropped the oldest batch of points",
                            self.metric)
            self.queue.append(item)
            self.cond.notify()

    # -- sender side -----------------------------------------------------------
    def _plexus(self):
        if self._client is None:
            from plexus import Plexus

            self._client = Plexus(api_key=self._key, source_id=self.source_id,
                                  timeout=self.timeout, persistent_buffer=self.persistent_buffer)
        return self._client

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"plexus-{self.metric}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.cond:
                while not self.queue and not self._stop.is_set():
                    self.cond.wait(0.5)
                if self._stop.is_set():
                    return
                pts, tags = self.queue.popleft()
                self._busy = True
            try:
                self._plexus().send_batch(pts, tags=tags or None)
                self.sent += len(pts)
            except Exception as e:  # noqa: BLE001 - never kill the thread; the SDK buffers
                log.warning("plexus %s: send failed (%s); the Plexus client keeps the points "
                            "and retries with the next send", self.metric, type(e).__name__)
            finally:
                with self.cond:
                    self._busy = False

    def drain(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.cond:
                if not self.queue and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
            self._client = None


# -- monitors ------------------------------------------------------------------
def threshold_from_model(path: str, detector_name: str = "shape") -> float:
    """The calibrated threshold of the detector ``detector_name`` in the model file at ``path``."""
    from .model_io import ModelFileError, load_model

    try:
        loaded = load_model(path)
    except (ModelFileError, OSError) as e:
        raise ValueError(str(e)) from None
    det = loaded.get(detector_name)
    if det is None:
        raise ValueError(f"model {path} has no {detector_name!r} detector (it has "
                         f"{[d.name for d in loaded.detectors]}); pass --threshold")
    if not det.enabled_:
        raise ValueError(f"the {det.label} detector of model {path} is off "
                         f"({(det.calibration_ or {}).get('why_off', 'calibration')}); pass "
                         "--threshold")
    return float(det.threshold_)


def register_monitor(source_id: str, metric: str, threshold: float, severity: str = "critical",
                     message: str | None = None, endpoint: str | None = None,
                     environ=None, timeout: float = 10.0) -> dict:
    """Create a Plexus threshold monitor; return the API's JSON answer (``{}`` if none)."""
    env = os.environ if environ is None else environ
    key = _api_key(env)
    base = (endpoint or env.get("PLEXUS_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    body = {"source_id": source_id, "metric": metric,
            "threshold": {"max": float(threshold), "severity": severity,
                          "message": message or f"{metric} above {threshold:.4g}"}}
    try:
        url = SafeURL(base + "/api/monitors")
    except ValueError:
        raise ValueError("PLEXUS_ENDPOINT must be an http:// or https:// URL") from None
    _, text = post_json(url, body, headers={"x-api-key": key}, timeout=timeout, what="Plexus")
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.plexus",
                                description="Plexus helpers (API key from PLEXUS_API_KEY).")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("register-monitor", help="create a threshold monitor on a metric")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model file whose threshold becomes the monitor's max")
    src.add_argument("--threshold", type=float, help="the monitor's max, given directly")
    r.add_argument("--detector", default="shape", help="detector of the model (default shape)")
    r.add_argument("--source-id", required=True)
    r.add_argument("--metric", required=True, help="e.g. ekg.max_error or temperature.zscore")
    r.add_argument("--severity", default="critical", choices=["info", "warning", "critical"])
    r.add_argument("--message", help="default: '<metric> above <threshold>'")
    r.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.model is not None:
            threshold = threshold_from_model(args.model, args.detector)
        else:
            threshold = args.threshold
        if not np.isfinite(threshold):
            raise ValueError(f"the threshold must be a finite number, got {threshold}")
        answer = register_monitor(args.source_id, args.metric, threshold, args.severity,
                                  args.message, timeout=args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DeliveryError as e:
        hint = ""
        if "HTTP 401" in str(e) or "HTTP 403" in str(e):
            hint = "; check that PLEXUS_API_KEY is a valid key of the source's organisation"
        print(f"error: creating the monitor failed: {e}{hint}", file=sys.stderr)
        return 1
    mid = answer.get("id") if isinstance(answer, dict) else None
    print(f"monitor created on {args.source_id}/{args.metric}: max {threshold:.6g}, "
          f"severity {args.severity}" + (f", id {mid}" if mid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
