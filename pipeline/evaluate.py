"""Accounting of what a detector found against labelled anomalies (re-exports).

The scoring lives in :mod:`pipeline.events`: event-level recall, precision,
false alarms per hour of normal time, delays (``score_alarms``,
``score_keyed``, ``compare``), and the point-level helpers the demo and the
notebook use (``flag_events``, ``match_events``), re-exported here so that
``from pipeline.evaluate import flag_events, match_events`` keeps working.
"""

from __future__ import annotations

from .events import Events, Match, flag_events, match_events

__all__ = ["Events", "flag_events", "Match", "match_events"]
