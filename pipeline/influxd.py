"""Run a local, throwaway-or-persistent InfluxDB 1.x server without systemd.

Debian's ``influxd`` (apt package ``influxdb``, 1.6.7) is started as a plain
background process with its own config and data directory, bound to the
loopback interface only.  Used by the README's quick start and by the test
fixture.

Command line::

    python -m pipeline.influxd start  [--dir var/influxdb] [--port 8086]
    python -m pipeline.influxd status [--dir var/influxdb]
    python -m pipeline.influxd stop   [--dir var/influxdb]

Config facts learned on this stack (each one cost an afternoon):

* Debian's key is ``reporting-enabled = false``; upstream's
  ``reporting-disabled`` is silently ignored there.
* The top-level ``bind-address`` (RPC, default 8088) must move too, or a
  second instance collides with the first.
* ``[coordinator] max-select-buckets`` bounds ``GROUP BY time()`` queries;
  unbounded, one such query drove influxd to 24 GB and an OOM kill.
* ``[data] cache-snapshot-write-cold-duration = "2s"`` keeps small queries
  at ~2 ms right after bulk writes (50-70 ms otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_DIR = Path("var") / "influxdb"
INSTALL_HINT = (
    "influxd was not found on PATH. Install InfluxDB 1.x from Debian: "
    "`apt-get update && apt-get install -y influxdb` (as root), then retry."
)

CONFIG_TEMPLATE = """\
# Written by pipeline.influxd; loopback only, no reporting.
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  index-version = "inmem"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "2s"

[coordinator]
  max-select-buckets = 100000

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[subscriber]
  enabled = true

[continuous_queries]
  log-enabled = false
"""


class InfluxdError(RuntimeError):
    """The local influxd could not be started, reached or stopped."""


def find_influxd() -> str:
    """Return the path of the ``influxd`` binary or raise with an install hint."""
    path = shutil.which("influxd")
    if path is None:
        raise InfluxdError(INSTALL_HINT)
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when ``/ping`` answers 204 (the server is ready)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=timeout) as r:
            return r.status == 204
    except (urllib.error.URLError, OSError):
        return False


def write_config(root: Path, http_port: int, rpc_port: int, auth: bool = False) -> Path:
    """Write ``influxd.conf`` under ``root`` and return its path.

    ``auth=True`` turns on authentication (the first user must then be
    created as an admin: ``CREATE USER ... WITH ALL PRIVILEGES``).
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "influxd.conf"
    conf.write_text(CONFIG_TEMPLATE.format(root=root, http_port=http_port, rpc_port=rpc_port,
                                           auth=str(bool(auth)).lower()))
    return conf


class LocalInfluxd:
    """An ``influxd`` child process with its own config and data directory.

    Parameters
    ----------
    root : path
        Directory for config, data, WAL, log and pid file.
    http_port : int, optional
        HTTP API port on 127.0.0.1 (a free one if omitted).
    rpc_port : int, optional
        RPC (backup/restore) port on 127.0.0.1 (a free one if omitted).
    detach : bool, default=False
        Start in a new session so the server outlives this Python process
        (the command line's ``start``).
    auth : bool, default=False
        Turn on authentication (tests of credentials errors).
    """

    def __init__(self, root, http_port=None, rpc_port=None, detach=False, auth=False):
        self.root = Path(root).resolve()
        self.http_port = http_port
        self.rpc_port = rpc_port
        self.detach = detach
        self.auth = auth
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pidfile(self) -> Path:
        return self.root / "influxd.pid"

    @property
    def logfile(self) -> Path:
        return self.root / "influxd.log"

    def start(self, timeout: float = 30.0) -> LocalInfluxd:
        binary = find_influxd()
        if self.http_port is None:
            self.http_port = free_port()
        if self.rpc_port is None:
            self.rpc_port = free_port()
        for name, port in (("http", self.http_port), ("rpc", self.rpc_port)):
            if port_in_use(port):
                raise InfluxdError(
                    f"port {port} ({name}) on 127.0.0.1 is already in use; "
                    f"stop whatever listens there or pass another --port"
                )
        try:
            conf = write_config(self.root, self.http_port, self.rpc_port, self.auth)
            log = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child
        except OSError as e:
            raise InfluxdError(f"cannot use {self.root} for the server's config and data: "
                               f"{e.strerror or e}; pass a writable --dir") from None
        try:
            self.proc = subprocess.Popen(
                [binary, "run", "-config", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detach,
            )
        finally:
            log.close()
        self.pidfile.write_text(f"{self.proc.pid} {self.http_port} {self.rpc_port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.logfile.read_text(errors="replace")[-2000:]
                raise InfluxdError(f"influxd exited with code {self.proc.returncode}:\n{tail}")
            if ping(self.http_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise InfluxdError(f"influxd did not answer /ping within {timeout} s; see {self.logfile}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server and wait for it (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the server (fault-injection in tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _read_pidfile(root: Path):
    pidfile = Path(root) / "influxd.pid"
    if not pidfile.exists():
        return None
    try:
        pid, http_port, _rpc = (int(v) for v in pidfile.read_text().split())
    except ValueError:
        return None
    return pid, http_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid`` from ``/proc`` ([] for a zombie, None if it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(a) for a in raw.split(b"\0") if a]


def is_our_influxd(pid: int, root) -> bool:
    """True when ``pid`` runs ``influxd run -config <root>/influxd.conf``, as :class:`LocalInfluxd`
    starts it: a pid file's PID may have been reused by any program after a reboot or crash."""
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name != "influxd":
        return False
    conf = str(Path(root).resolve() / "influxd.conf")
    return any(a == "-config" and b == conf for a, b in zip(argv, argv[1:], strict=False))


def _describe(pid: int) -> str:
    argv = _cmdline(pid)
    if argv is None:
        return "a process whose command line cannot be read"
    if not argv:
        return "a process without a command line (exiting)"
    text = " ".join(argv)
    return repr(text if len(text) <= 120 else text[:117] + "...")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.influxd",
        description="Start, stop or check a local InfluxDB 1.x server (loopback only).",
    )
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="data/config directory (default: %(default)s)")
    p.add_argument("--port", type=int, default=8086, help="HTTP port (default: %(default)s)")
    p.add_argument("--rpc-port", type=int, default=None, help="RPC port (default: a free one)")
    args = p.parse_args(argv)
    root = Path(args.dir)
    running = _read_pidfile(root)

    ours = bool(running) and _alive(running[0]) and is_our_influxd(running[0], root)

    if args.action == "status":
        if ours and ping(running[1]):
            print(f"influxd running, pid {running[0]}, http://127.0.0.1:{running[1]}")
            return 0
        print("influxd not running" + (f" (stale pid file in {root})" if running else ""))
        return 3

    pidfile = root / "influxd.pid"
    if args.action == "stop":
        if not running:
            print("influxd not running" + (f" (unreadable pid file {pidfile} removed)"
                                           if pidfile.exists() else ""))
            pidfile.unlink(missing_ok=True)
            return 0
        if not _alive(running[0]):
            print(f"influxd not running (pid {running[0]} is gone; stale pid file removed)")
            pidfile.unlink(missing_ok=True)
            return 0
        if not ours:
            print(f"influxd not running: pid {running[0]} in {pidfile} is not the influxd started "
                  f"in {root.resolve()} but {_describe(running[0])}; it was left alone and the "
                  "stale pid file removed. If that directory's server still runs under another "
                  "pid, stop it with `kill <pid>`.")
            pidfile.unlink(missing_ok=True)
            return 0
        os.kill(running[0], signal.SIGTERM)
        for _ in range(300):
            if not _alive(running[0]):
                break
            time.sleep(0.05)
        else:
            print(f"influxd pid {running[0]} did not stop within 15 s", file=sys.stderr)
            return 1
        (root / "influxd.pid").unlink(missing_ok=True)
        print("influxd stopped")
        return 0

    # start
    if ours and ping(running[1]):
        print(f"influxd already running, pid {running[0]}, http://127.0.0.1:{running[1]}")
        return 0
    try:
        srv = LocalInfluxd(root, http_port=args.port, rpc_port=args.rpc_port, detach=True).start()
    except InfluxdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"influxd started, pid {srv.proc.pid}, {srv.url}, data in {srv.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
