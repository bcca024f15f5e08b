"""A tiny JSON POST over ``http.client`` that never reveals the URL.

Webhook URLs are secrets (a Slack incoming-webhook URL *is* the credential).
``requests``/``urllib3`` put the URL into exception messages and DEBUG logs,
so deliveries use ``http.client`` directly: nothing here logs, and every error
message names only the exception type and the OS reason, never the host, path
or query.
"""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit

__all__ = ["DeliveryError", "SafeURL", "post_json"]


class DeliveryError(RuntimeError):
    """A delivery failed; the message never contains the URL or a header value."""


class SafeURL:
    """A URL kept out of ``repr``/``str`` (and so out of logs and tracebacks).

    >>> u = SafeURL("https://hooks.example/services/T0/B0/secret")
    >>> "secret" in repr(u) or "secret" in str(u)
    False
    """

    __slots__ = ("_url",)

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must start with http:// or https:// and name a host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("the URL has an invalid port") from None
        self._url = url

    def __repr__(self) -> str:
        return "SafeURL(<hidden>)"

    __str__ = __repr__

    def reveal(self) -> str:
        return self._url


def post_json(url: SafeURL, body, headers: dict | None = None, timeout: float = 10.0,
              what: str = "webhook") -> tuple[int, str]:
    """POST ``body`` (JSON-encoded) and return ``(status, first 200 chars of the answer)``.

    Raises :class:`DeliveryError` for a connection failure, a timeout or a
    status >= 300.  ``what`` names the destination in messages.
    """
    parts = urlsplit(url.reveal())
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    data = json.dumps(body, allow_nan=False).encode("utf-8")
    hdrs = {"Content-Type": "application/json", "User-Agent": "influx-anomaly-pipeline"}
    hdrs.update(headers or {})
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read(4096).decode("utf-8", "replace")[:200]
        status = resp.status
    except TimeoutError:
        raise DeliveryError(f"{what}: no answer within {timeout:g} s") from None
    except OSError as e:  # refused, reset, DNS, TLS ...
        reason = e.strerror or type(e).__name__
        raise DeliveryError(f"{what}: cannot connect ({type(e).__name__}: {reason})") from None
    except http.client.HTTPException as e:
        raise DeliveryError(f"{what}: bad HTTP answer ({type(e).__name__})") from None
    finally:
        conn.close()
    if status >= 300:
        raise DeliveryError(f"{what}: answered HTTP {status}")
    return status, text
