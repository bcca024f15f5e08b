"""Stand-ins for outside HTTP services (Slack, webhooks, Plexus) on 127.0.0.1.

A :class:`Receiver` records every request (path, headers with lower-case names, JSON body) and
answers with the status its ``status`` attribute holds at that moment
(a callable of the request count may decide instead).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A loopback port that nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A threaded HTTP server on 127.0.0.1 recording POSTs.

    Parameters
    ----------
    port : int, optional
        Listen here (default: a free port).
    status : int or callable(n_requests) -> int, default=200
    answer : dict or callable(path, body) -> (status, dict), optional
        JSON answer per path (for API stand-ins).
    """

    def __init__(self, port: int | None = None, status=200, answer=None):
        self.requests: list[dict] = []
        self.status = status
        self.answer = answer
        self.lock = threading.Lock()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with recv.lock:
                    recv.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body})
                    n = len(recv.requests)
                status, payload = recv._answer(self.path, body, n)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - a WebSocket upgrade attempt lands here
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _answer(self, path, body, n):
        if self.answer is not None:
            return self.answer(path, body)
        status = self.status(n) if callable(self.status) else self.status
        return status, {"ok": status < 300}

    def bodies(self, path: str | None = None) -> list:
        with self.lock:
            return [r["body"] for r in self.requests if path is None or r["path"] == path]

    def wait_for(self, n: int, timeout: float = 10.0) -> list:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
