"""Alerts that reach a person: episodes, flood guard, messages, delivery, history.

* :mod:`.rules` -- :class:`AlertEngine`, pure: detector outputs in, notifications out.
* :mod:`.messages` -- :class:`Notification` and the exact message texts.
* :mod:`.destinations` -- Slack, generic webhook, log; :mod:`.history` -- Chronograf's
  ``chronograf.autogen.alerts``.
* :mod:`.dispatch` -- the persistent outbox and one sender thread per destination.
* :mod:`.config` -- the ``[alerts]`` table of the stream config.
* :mod:`.manager` -- :class:`AlertManager`, what ``pipeline.stream`` calls.

See ``docs/alerts.md``.
"""

from .config import AlertsConfig, AlertsConfigError, parse_alerts_config
from .destinations import LogDestination, SlackDestination, WebhookDestination
from .dispatch import Dispatcher, Outbox, OutboxError, RetryPolicy
from .history import ChronografHistory, history_line
from .manager import AlertManager, build_destination
from .messages import Notification
from .rules import AlertEngine

__all__ = [
    "AlertEngine",
    "AlertManager",
    "AlertsConfig",
    "AlertsConfigError",
    "ChronografHistory",
    "Dispatcher",
    "LogDestination",
    "Notification",
    "Outbox",
    "OutboxError",
    "RetryPolicy",
    "SlackDestination",
    "WebhookDestination",
    "build_destination",
    "history_line",
    "parse_alerts_config",
]
