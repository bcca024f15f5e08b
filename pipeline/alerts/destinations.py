"""Where notifications go: Slack, a generic JSON webhook, the log.

(The alert history in InfluxDB, Chronograf's schema, is in :mod:`.history`.)

Every destination has a ``name`` (unique in the config, used in the outbox),
``send(notification)`` that returns when the receiver accepted it or raises
:class:`~._http.DeliveryError`, and ``wants(notification)``: people-facing
destinations take ALERTs and RECOVERYs that the flood guard let through plus
its summaries; the history takes every ALERT and RECOVERY, suppressed or not.

Secrets: webhook URLs and header values are read from environment variables
named in the config, held in :class:`~._http.SafeURL` / private attributes,
and never logged, printed or put into an exception.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from ._http import DeliveryError, SafeURL, post_json
from .messages import ALERT, RECOVERY, SUMMARY, Notification, format_number, format_time

__all__ = ["Destination", "SlackDestination", "WebhookDestination", "LogDestination",
           "DeliveryError", "EnvError", "resolve_env", "slack_payload", "slack_escape",
           "ALERT_LOGGER"]

ALERT_LOGGER = "pipeline.alerts"


class EnvError(ValueError):
    """A required environment variable is missing or unusable (message names it, not its value)."""


def resolve_env(var: str, what: str, environ: Mapping[str, str]) -> str:
    """The value of ``environ[var]``; a clear error naming the variable when unset or empty."""
    value = environ.get(var, "")
    if not value.strip():
        raise EnvError(f"{what}: environment variable {var} is not set; export it before "
                       "starting (the value is never written to the config or the logs)")
    return value.strip()


class Destination:
    """Base class: a people-facing destination."""

    name: str = "destination"

    def wants(self, n: Notification) -> bool:
        return not n.suppressed

    def send(self, n: Notification) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (nothing by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_SLACK_COLORS = {ALERT: "danger", RECOVERY: "good", SUMMARY: "warning"}


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's text format reserves.

    >>> slack_escape("a < b & c > d")
    'a &lt; b &amp; c &gt; d'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(n: Notification, channel: str | None = None, username: str | None = None,
                  icon_emoji: str | None = None) -> dict:
    """Slack incoming-webhook JSON: ``text`` is the message, one coloured attachment the facts.

    Examples
    --------
    >>> n = Notification("alert", "ekg:shape:alert:5", "ekg:shape", "ekg", "", "shape",
    ...                  "shape", 5, "[CRITICAL] shape on ekg ...", score_field="max_error",
    ...                  value=9.5, threshold=8.8)
    >>> p = slack_payload(n)
    >>> p["text"], p["attachments"][0]["color"], p["attachments"][0]["footer"]
    ('[CRITICAL] shape on ekg ...', 'danger', 'alert ekg:shape, id ekg:shape:alert:5')
    """
    fields = [{"title": "Series", "value": slack_escape(n.series + (f" {n.key}" if n.key else "")),
               "short": True},
              {"title": "Detector", "value": slack_escape(n.label), "short": True}]
    if n.kind != SUMMARY:
        fields += [{"title": n.score_field or "score", "value": format_number(n.value),
                    "short": True},
                   {"title": "Threshold", "value": format_number(n.threshold), "short": True}]
    if n.model:
        fields.append({"title": "Model", "value": slack_escape(n.model), "short": True})
    fields.append({"title": "Time (UTC)", "value": format_time(n.time_ns), "short": True})
    payload = {
        "text": slack_escape(n.text),
        "attachments": [{
            "color": _SLACK_COLORS[n.kind],
            "fallback": slack_escape(n.text),
            "fields": fields,
            "footer": slack_escape(f"alert {n.alert_id}, id {n.id}"),
            "ts": n.time_ns // 1_000_000_000,
        }],
    }
    for k, v in (("channel", channel), ("username", username), ("icon_emoji", icon_emoji)):
        if v:
            payload[k] = v
    return payload


class SlackDestination(Destination):
    """A Slack incoming webhook, URL from the environment variable ``url_env``.

    Parameters
    ----------
    url_env : str
        Name of the environment variable holding the webhook URL.
    name : str, default="slack"
    channel, username, icon_emoji : str, optional
        Overrides sent in the payload (legacy webhooks honour them).
    timeout : float, default=10
        Seconds to wait for Slack.
    environ : mapping, optional
        Default ``os.environ``.
    """

    def __init__(self, url_env: str, name: str = "slack", channel: str | None = None,
                 username: str | None = None, icon_emoji: str | None = None,
                 timeout: float = 10.0, environ: Mapping[str, str] | None = None):
        self.name = name
        self.url_env = url_env
        try:
            self._url = SafeURL(resolve_env(url_env, f"destination {name!r}",
                                            os.environ if environ is None else environ))
        except ValueError as e:
            if isinstance(e, EnvError):
                raise
            raise EnvError(f"destination {name!r}: environment variable {url_env} does not "
                           f"hold a usable URL ({e})") from None
        self.channel, self.username, self.icon_emoji = channel, username, icon_emoji
        self.timeout = timeout

    def send(self, n: Notification) -> None:
        post_json(self._url, slack_payload(n, self.channel, self.username, self.icon_emoji),
                  timeout=self.timeout, what=self.name)


class WebhookDestination(Destination):
    """A generic JSON webhook: POSTs :meth:`Notification.payload` to the URL in ``url_env``.

    ``headers_env`` maps header names to environment variables holding their
    values (e.g. ``{"Authorization": "ALERT_WEBHOOK_AUTH"}``).  The body carries
    ``dedup_key`` (stable per notification) so a receiver can drop a repeat.
    """

    def __init__(self, url_env: str, name: str = "webhook",
                 headers_env: Mapping[str, str] | None = None, timeout: float = 10.0,
                 environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.name = name
        self.url_env = url_env
        try:
            self._url = SafeURL(resolve_env(url_env, f"destination {name!r}", env))
        except ValueError as e:
            if isinstance(e, EnvError):
                raise
            raise EnvError(f"destination {name!r}: environment variable {url_env} does not "
                           f"hold a usable URL ({e})") from None
        self._headers = {h: resolve_env(v, f"destination {name!r} header {h}", env)
                         for h, v in (headers_env or {}).items()}
        self.timeout = timeout

    def send(self, n: Notification) -> None:
        post_json(self._url, n.payload(), headers=self._headers, timeout=self.timeout,
                  what=self.name)


class LogDestination(Destination):
    """One log line per notification on logger ``pipeline.alerts`` (never fails).

    ALERTs and summaries log at WARNING, RECOVERYs at INFO; the line is the
    message text followed by ``(id <dedup key>)``.
    """

    def __init__(self, name: str = "log", logger: str = ALERT_LOGGER):
        self.name = name
        self.log = logging.getLogger(logger)

    def send(self, n: Notification) -> None:
        level = logging.INFO if n.kind == RECOVERY else logging.WARNING
        self.log.log(level, "%s (id %s)", n.text, n.id)

    def send_many(self, notes) -> None:
        for n in notes:
            self.send(n)

