"""``python -m pipeline.live``: write the demo series into InfluxDB in real time, with faults.

The compose profile ``live`` runs it beside the stream, so that the stack has
new data to score every second instead of only the demo data ``init`` loaded:

* **EKG** at 360 Hz into ``ekg.ekg`` (tag ``source=synthetic``, the series the
  demo model was trained on): by default (``--ekg-source replay``) the normal
  first 180 s of ``datasets/synthetic_ekg.csv``, the data that model was
  trained and calibrated on, looped; with ``generate``, new signal from its
  generator (:func:`pipeline.ekg_faults.synthetic_clean`) in one-hour blocks
  (the 2-minute demo model raises many false shape alarms on that: about 50
  in 80 min in a test).  Either way ``--ekg-faults-per-hour`` faults of
  :mod:`pipeline.ekg_faults` are injected (a flat line at zero, a held
  value, a spike, a burst of noise, a premature wide beat, beats of the
  wrong size: flat-line and shape alarms) and values are rounded to 0.0001 mV
  like the CSV; each block's baseline is eased onto the previous block's
  last value, so the joins are not steps;
* **a temperature fleet** every 2 s into ``sensors.temperature`` (tag
  ``sensor``, ``s00`` .. ``s04``): 21 degC + a daily cycle + 0.1 degC noise,
  ``s02`` 3 degC warmer, as :func:`pipeline.datasets.synthetic_temperature`;
  every ``--fleet-fault-every`` seconds one sensor gets a fault, in turn a
  spike (+4 degC for 3 readings: z-score), a stuck reading (2 min: flat
  line) and a slow drift (+3 degC over 30 min, then back: drift, and a
  z-score on the way back).

Every value is a pure function of its timestamp and ``--seed`` (timestamps
on the sample grid since the epoch), so a restart continues the same
signal and a chunk written twice is the same chunk.  Each fault is logged
when it is written.  An unreachable InfluxDB is retried every tick; nothing
is skipped unless the backlog exceeds ``--max-backlog`` seconds.
SIGINT/SIGTERM: exit 0 after the current write.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .ekg_faults import RATE, inject, plan_faults, synthetic_clean
from .influx import Influx, InfluxError, InfluxSettings, InfluxUnavailableError, encode_lines
from .load import read_csv_series
from .series import format_timestamp

__all__ = ["LiveEKG", "LiveFleet", "ekg_times", "fleet_times", "main"]

log = logging.getLogger("pipeline.live")

ROOT = Path(__file__).resolve().parent.parent
S = 10**9
BLOCK_S = 3600
"""EKG block length (s): one generator call and one fault plan each."""
EKG_FAULT_KINDS = ("zeros", "hold", "spike", "noise", "ectopic", "amplitude")
JOIN_TAU_S = 2.0
"""Time constant (s) over which a block's baseline is eased onto the previous block's end."""
FLEET_CADENCE_S = 2
FLEET_KINDS = ("spike", "stuck", "drift")
STUCK_S, DRIFT_S, DRIFT_DEGC = 120, 1800, 3.0
FLEET_FAULT_READINGS = {"spike": 3, "stuck": STUCK_S // FLEET_CADENCE_S,
                        "drift": DRIFT_S // FLEET_CADENCE_S}
"""How many readings each fleet fault changes."""


def ekg_times(k0: int, k1: int, rate: int = RATE) -> np.ndarray:
    """Timestamps (ns) of EKG samples ``k0 .. k1-1`` counted from the epoch at ``rate`` Hz.

    Exact in integers (``k * 1e9 / rate`` would overflow int64 near today).

    >>> ekg_times(360 * 1767225600, 360 * 1767225600 + 3).tolist()
    [1767225600000000000, 1767225600002777778, 1767225600005555556]
    """
    k = np.arange(k0, k1, dtype=np.int64)
    return (k // rate) * S + (2 * (k % rate) * S + rate) // (2 * rate)


def fleet_times(j0: int, j1: int) -> np.ndarray:
    """Timestamps (ns) of fleet readings ``j0 .. j1-1`` (one every 2 s since the epoch)."""
    return np.arange(j0, j1, dtype=np.int64) * (FLEET_CADENCE_S * S)


class LiveEKG:
    """An endless EKG at 360 Hz with faults; :meth:`values` of any sample range.

    Parameters
    ----------
    seed : int
    faults_per_hour : float
        Faults injected per hour on average, cycling over :data:`EKG_FAULT_KINDS`.
    normal : array, optional
        A normal EKG at 360 Hz to loop (``replay``): the demo uses the normal
        first 180 s of ``datasets/synthetic_ekg.csv``, the data the demo model
        was trained and calibrated on.  Without it, new signal is generated
        in one-hour blocks (:func:`pipeline.ekg_faults.synthetic_clean`).

    Examples
    --------
    >>> g = LiveEKG(seed=1, faults_per_hour=0, normal=np.sin(np.arange(21600) / 9))
    >>> k = 360 * 1767225600 + 21000          # 600 samples before a join
    >>> v = g.values(k, k + 1200)
    >>> bool(np.array_equal(v, np.concatenate([g.values(k, k + 700), g.values(k + 700, k + 1200)])))
    True
    >>> bool(np.max(np.abs(np.diff(v))) < 0.12)   # the loop's join is eased, not a step
    True
    """

    def __init__(self, seed: int = 1, faults_per_hour: float = 6.0, normal=None):
        if not faults_per_hour >= 0:
            raise ValueError(f"faults_per_hour must be >= 0, got {faults_per_hour}")
        if normal is not None and len(normal) < 60 * RATE:
            raise ValueError(f"the normal EKG to loop must be at least 60 s long, got "
                             f"{len(normal) / RATE:.3g} s")
        self.seed, self.faults_per_hour, self.rate = seed, float(faults_per_hour), RATE
        self.normal = None if normal is None else np.asarray(normal, dtype=np.float64)
        self.block_n = len(self.normal) if self.normal is not None else BLOCK_S * RATE
        self._raw = lru_cache(maxsize=3)(self._raw_block)
        self._block = lru_cache(maxsize=3)(self._make_block)

    def _kinds(self, b: int) -> dict:
        """The faults of block ``b``: on average ``faults_per_hour`` per hour."""
        mean = self.faults_per_hour * self.block_n / self.rate / 3600
        rng = np.random.default_rng([self.seed, b, 3])
        n = int(mean) + int(rng.random() < mean - int(mean))
        counts: dict = {}
        for i in range(n):
            kind = EKG_FAULT_KINDS[int(rng.integers(len(EKG_FAULT_KINDS))) if i else
                                   b % len(EKG_FAULT_KINDS)]
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _raw_block(self, b: int):
        if self.normal is not None:
            x = self.normal
        else:
            x = synthetic_clean(BLOCK_S, seed=(self.seed * 1_000_003 + b) % 2**32)
        span = len(x) / self.rate
        counts = self._kinds(b)
        if not counts:
            return x, None
        faults = plan_faults(x, 0.0, span - 10.0, counts, np.random.default_rng([self.seed, b, 1]),
                             lead_in=min(30.0, span / 6))
        return inject(x, self.rate, faults)

    def _make_block(self, b: int):
        y, labels = self._raw(b)
        prev_last = self._raw(b - 1)[0][-1]
        t = np.arange(len(y)) / self.rate
        y = y + (prev_last - y[0]) * np.exp(-t / JOIN_TAU_S)  # ease the join: no step
        return np.round(y, 4), labels

    def values(self, k0: int, k1: int) -> np.ndarray:
        """Values (mV) of samples ``k0 .. k1-1`` (indices from the epoch)."""
        n = self.block_n
        out = np.empty(max(0, k1 - k0))
        k = k0
        while k < k1:
            b, off = divmod(k, n)
            take = min(n - off, k1 - k)
            out[k - k0:k - k0 + take] = self._block(b)[0][off:off + take]
            k += take
        return out

    def faults(self, k0: int, k1: int) -> list[tuple[int, int, str]]:
        """``(first sample, end sample, type)`` of the faults that start in ``[k0, k1)``."""
        n = self.block_n
        out = []
        for b in range(k0 // n, (max(k1, k0 + 1) - 1) // n + 1):
            labels = self._block(b)[1]
            for row in ([] if labels is None else labels.itertuples()):
                k = b * n + int(round(row.start * self.rate))
                if k0 <= k < k1:
                    out.append((k, b * n + int(round(row.end * self.rate)), row.type))
        return out


class LiveFleet:
    """An endless temperature fleet with faults; :meth:`values` of any reading range.

    >>> f = LiveFleet(seed=1)
    >>> j = 1767225600 // 2
    >>> a = f.values(j, j + 10)
    >>> sorted(a), bool(np.array_equal(a["s02"][:4], f.values(j, j + 4)["s02"]))
    (['s00', 's01', 's02', 's03', 's04'], True)
    """

    def __init__(self, seed: int = 1, n_sensors: int = 5, fault_every_s: float = 600.0):
        if n_sensors < 1:
            raise ValueError(f"n_sensors must be >= 1, got {n_sensors}")
        if fault_every_s < 3 * FLEET_CADENCE_S:
            raise ValueError(f"fault_every_s must be >= {3 * FLEET_CADENCE_S}, got {fault_every_s}")
        self.seed, self.n_sensors = seed, n_sensors
        self.period = int(round(fault_every_s / FLEET_CADENCE_S))
        self.sensors = [f"s{i:02d}" for i in range(n_sensors)]

    def _noise(self, i: int, j0: int, j1: int) -> np.ndarray:
        hour = 3600 // FLEET_CADENCE_S
        out = np.empty(j1 - j0)
        j = j0
        while j < j1:
            h, off = divmod(j, hour)
            take = min(hour - off, j1 - j)
            z = np.random.default_rng([self.seed, i, h]).standard_normal(hour)
            out[j - j0:j - j0 + take] = z[off:off + take]
            j += take
        return out

    def fault(self, e: int) -> tuple[int, str, str]:
        """Fault number ``e``: ``(first reading, sensor, type)``; one per period, mid-period."""
        kind = FLEET_KINDS[e % len(FLEET_KINDS)]
        sensor = self.sensors[int(np.random.default_rng([self.seed, e, 2]).integers(self.n_sensors))]
        return e * self.period + self.period // 2, sensor, kind

    def _events(self, j0: int, j1: int, reach: int):
        """Faults whose effect (``reach`` readings long at most) overlaps ``[j0, j1)``."""
        for e in range((j0 - reach) // self.period - 1, j1 // self.period + 1):
            start, sensor, kind = self.fault(e)
            if start < j1 and start + reach > j0:
                yield start, sensor, kind

    def _clean(self, i: int, j0: int, j1: int) -> np.ndarray:
        t = np.arange(j0, j1) * FLEET_CADENCE_S
        base = 21.0 + 0.5 * np.sin(2 * np.pi * (t % 86400) / 86400) + (3.0 if i == 2 else 0.0)
        return base + 0.1 * self._noise(i, j0, j1)

    def values(self, j0: int, j1: int) -> dict[str, np.ndarray]:
        """Readings ``j0 .. j1-1`` (indices from the epoch, every 2 s) of every sensor."""
        out = {name: self._clean(i, j0, j1) for i, name in enumerate(self.sensors)}
        idx = np.arange(j0, j1)
        drift = FLEET_FAULT_READINGS["drift"]
        held = []
        for start, sensor, kind in self._events(j0, j1, drift):
            m = (idx >= start) & (idx < start + FLEET_FAULT_READINGS[kind])
            if kind == "spike":
                out[sensor][m] += 4.0
            elif kind == "drift":
                out[sensor][m] += DRIFT_DEGC * (idx[m] - start) / drift
            else:
                held.append((sensor, m, start))
        for sensor, m, start in held:  # last: a stuck sensor repeats its clean reading before
            out[sensor][m] = self._clean(self.sensors.index(sensor), start - 1, start)[0]
        return {k: np.round(v, 3) for k, v in out.items()}

    def faults(self, j0: int, j1: int) -> list[tuple[int, str, str]]:
        """``(first reading, sensor, type)`` of the faults that start in ``[j0, j1)``
        (each changes :data:`FLEET_FAULT_READINGS` readings)."""
        return [f for f in self._events(j0, j1, 1) if j0 <= f[0] < j1]


def run(ix: Influx, stop: threading.Event, ekg: LiveEKG | None, fleet: LiveFleet | None,
        interval: float = 1.0, max_backlog_s: float = 600.0, duration_s: float | None = None,
        clock=time.time_ns) -> dict:
    """Write what is due every ``interval`` seconds until ``stop`` (or ``duration_s``); return counts."""
    now = clock()
    k_next = -(-now * RATE // S) if ekg else None   # the first sample at or after now
    j_next = -(-now // (FLEET_CADENCE_S * S)) if fleet else None
    counts = {"ekg": 0, "temperature": 0, "faults": 0, "retries": 0}
    for db in (["ekg"] if ekg else []) + (["sensors"] if fleet else []):
        ix.create_database(db)
    t_end = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set():
        now = clock()
        try:
            if ekg:
                k_due = now * RATE // S + 1
                if (k_due - k_next) / RATE > max_backlog_s:
                    log.warning("EKG: %.0f s not written (InfluxDB unreachable); skipping to now",
                                (k_due - k_next) / RATE)
                    k_next = k_due - 1
                if k_due > k_next:
                    ix.write_series("ekg", "ekg", ekg_times(k_next, k_due),
                                    {"value": ekg.values(k_next, k_due)}, {"source": "synthetic"})
                    for k, _, kind in ekg.faults(k_next, k_due):
                        log.info("fault %s on ekg at %s", kind, format_timestamp(ekg_times(k, k + 1)[0]))
                        counts["faults"] += 1
                    counts["ekg"] += int(k_due - k_next)
                    k_next = k_due
            if fleet:
                j_due = now // (FLEET_CADENCE_S * S) + 1
                if (j_due - j_next) * FLEET_CADENCE_S > max_backlog_s:
                    log.warning("fleet: %.0f s not written (InfluxDB unreachable); skipping to now",
                                (j_due - j_next) * FLEET_CADENCE_S)
                    j_next = j_due - 1
                if j_due > j_next:
                    times = fleet_times(j_next, j_due)
                    lines = [line for sensor, v in fleet.values(j_next, j_due).items()
                             for line in encode_lines("temperature", times, {"value": v},
                                                      {"sensor": sensor})]
                    ix.write_lines("sensors", lines)
                    for j, sensor, kind in fleet.faults(j_next, j_due):
                        log.info("fault %s on temperature[%s] at %s", kind, sensor,
                                 format_timestamp(fleet_times(j, j + 1)[0]))
                        counts["faults"] += 1
                    counts["temperature"] += int(j_due - j_next) * fleet.n_sensors
                    j_next = j_due
        except InfluxUnavailableError as e:
            counts["retries"] += 1
            log.warning("%s; retrying in %.3g s (nothing written is lost)", e, interval)
        if t_end is not None and time.monotonic() >= t_end:
            break
        stop.wait(interval)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.live",
                                description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Connection: INFLUXDB_HOST, INFLUXDB_PORT, INFLUXDB_USERNAME, "
                                       "INFLUXDB_PASSWORD, INFLUXDB_SSL (README, Settings).")
    p.add_argument("--no-ekg", action="store_true", help="do not write the EKG")
    p.add_argument("--no-fleet", action="store_true", help="do not write the temperature fleet")
    p.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    p.add_argument("--ekg-source", choices=["replay", "generate"], default="replay",
                   help="replay: loop the normal first --ekg-normal-s of --ekg-csv (the data the "
                        "demo model was trained on); generate: new signal from the same "
                        "generator (default: %(default)s)")
    p.add_argument("--ekg-csv", default=str(ROOT / "datasets" / "synthetic_ekg.csv"),
                   help="default: %(default)s")
    p.add_argument("--ekg-normal-s", type=float, default=180.0,
                   help="seconds of --ekg-csv that are normal (default: %(default)s)")
    p.add_argument("--ekg-faults-per-hour", type=float, default=6.0, help="default: %(default)s")
    p.add_argument("--fleet-fault-every", type=float, default=600.0, metavar="SECONDS",
                   help="one fleet fault every so many seconds (default: %(default)s)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between writes "
                                                               "(default: %(default)s)")
    p.add_argument("--max-backlog", type=float, default=600.0, metavar="SECONDS",
                   help="while InfluxDB is unreachable, keep at most this much to write "
                        "(default: %(default)s)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this long (default: run until stopped)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0.05 <= args.interval <= 60:
        print(f"error: --interval must be in [0.05, 60] seconds, got {args.interval}", file=sys.stderr)
        return 2
    try:
        normal = None
        if not args.no_ekg and args.ekg_source == "replay":
            csv = read_csv_series(args.ekg_csv)
            keep = csv.times_ns < csv.times_ns[0] + int(args.ekg_normal_s * S)
            if abs(np.median(np.diff(csv.times_ns)) * RATE / S - 1) > 0.01:  # as the stream
                raise ValueError(f"{args.ekg_csv} is not sampled at {RATE} Hz")
            normal = csv.values[keep]
        ekg = None if args.no_ekg else LiveEKG(args.seed, args.ekg_faults_per_hour, normal)
        fleet = None if args.no_fleet else LiveFleet(args.seed, fault_every_s=args.fleet_fault_every)
        ix = Influx(InfluxSettings.from_env())
    except ValueError as e:  # LoadError too
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s: exiting after this write", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        ix.ping()
        log.info("writing %s to %s every %.3g s", " and ".join(
            (["ekg.ekg (360 Hz)"] if ekg else []) + (["sensors.temperature (2 s)"] if fleet else [])),
            ix.settings.url, args.interval)
        counts = run(ix, stop, ekg, fleet, args.interval, args.max_backlog, args.duration)
    except InfluxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log.info("wrote %s EKG samples and %s temperature readings, %s faults", f"{counts['ekg']:,}",
             f"{counts['temperature']:,}", counts["faults"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
