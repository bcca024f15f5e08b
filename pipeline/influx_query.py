"""InfluxQL text for the reads of :class:`pipeline.influx.Influx`.

Pure: builds query text and its bound parameters, sends nothing.  Identifiers
are quoted with :func:`~pipeline.line_protocol.quote_ident` and values are
bound as ``$name`` parameters (``params``): user input never enters the query
text.
"""

from __future__ import annotations

from collections.abc import Mapping

from .line_protocol import quote_ident


def _tag_conditions(tags: Mapping[str, str] | None) -> tuple[list[str], dict]:
    """``"key"::tag = $tagN`` conditions with bound values: user input never enters the query text.

    ``::tag`` keeps a tag key apart from a field key of the same name (the
    field selected is written ``"name"::field`` for the same reason).

    >>> _tag_conditions({"source": "a'b"})
    (['"source"::tag = $tag0'], {'tag0': "a'b"})
    """
    conds, params = [], {}
    for i, (k, v) in enumerate(sorted((tags or {}).items())):
        conds.append(f"{quote_ident(k)}::tag = $tag{i}")
        params[f"tag{i}"] = str(v)
    return conds, params


def _select_query(
    measurement: str,
    field_name: str,
    start_ns: int | None,
    end_ns: int | None,
    tags: Mapping[str, str] | None,
    group_by: str | None,
    rp: str | None,
    include_start: bool,
    limit: int | None,
) -> tuple[str, dict]:
    """``SELECT "field"::field FROM ...`` over a time range, with tag filters, group and limit.

    Identifiers are quoted, times and tag values bound as parameters;
    ``include_start=False`` makes the range ``(start, end)``.

    >>> q, params = _select_query("ekg", "value", 5, None, {"source": "a"}, None, "rp", False, 1)
    >>> q
    'SELECT "value"::field FROM "rp"."ekg" WHERE time > $t_start AND "source"::tag = $tag0 LIMIT 1'
    >>> params
    {'t_start': 5, 'tag0': 'a'}
    """
    src = quote_ident(measurement)
    if rp:
        src = f"{quote_ident(rp)}.{src}"
    conds, params = [], {}
    if start_ns is not None:
        conds.append("time >= $t_start" if include_start else "time > $t_start")
        params["t_start"] = int(start_ns)
    if end_ns is not None:
        conds.append("time < $t_end")
        params["t_end"] = int(end_ns)
    tag_conds, tag_params = _tag_conditions(tags)
    conds += tag_conds
    params.update(tag_params)
    q = f"SELECT {quote_ident(field_name)}::field FROM {src}"
    if conds:
        q += " WHERE " + " AND ".join(conds)
    if group_by:
        q += f" GROUP BY {quote_ident(group_by)}"
    if limit is not None:
        q += f" LIMIT {int(limit)}"
    return q, params
