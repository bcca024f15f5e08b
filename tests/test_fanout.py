"""One encode for many keys gives the bytes of encode_lines per key; the follow plan."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.fanout import Prefixes, encode_rows, plan_follow
from pipeline.line_protocol import encode_lines


@pytest.mark.parametrize("seed", range(6))
def test_encode_rows_equals_encode_lines_per_key(seed):
    rng = np.random.default_rng(seed)
    keys = ["a", "b c", "C:\\temp", "k=1,x", "é"]
    n = 400
    rows = rng.integers(0, len(keys), n)
    times = 1_767_225_600_000_000_000 + np.arange(n) * 10**9
    alarm = rng.random(n) < 0.1
    thr = np.full(n, 3.25)
    if seed % 2:
        thr[~alarm] = np.nan  # thresholds on alarm points only
    fields = {"z": rng.standard_normal(n), "z_threshold": thr, "alert": alarm,
              "streak": rng.integers(0, 4, n), "zscore": np.where(alarm, 4.5, 0.0)}
    if seed >= 3:
        fields["z"][rng.random(n) < 0.2] = np.nan
        fields["only_nan"] = np.full(n, np.nan)

    def tags(r):
        return {"sensor": keys[r], "series": "temp", "model": "abc"}

    pre, errors = Prefixes(tags).get("zscore", rows, list(fields))
    assert not errors
    got = encode_rows(pre, rows, times, fields)
    for r in range(len(keys)):
        m = rows == r
        want = encode_lines("zscore", times[m], {k: v[m] for k, v in fields.items()}, tags(r))
        mine = [line for line in got if line.startswith(want[0].split(" ")[0] + " ")]
        assert mine == want
    assert len(got) == n


def test_prefixes_report_a_name_influxdb_cannot_store():
    keys = ["ok", "bad\\"]  # a trailing backslash escapes the separator after it

    pre, errors = Prefixes(lambda r: {"sensor": keys[r]}).get("m", np.array([0, 1]), ["x"])
    assert list(errors) == [1] and "backslash" in str(errors[1])
    assert pre[0] == "m,sensor=ok"


def test_plan_follow_reads_far_keys_alone_and_skips_quiet_ones():
    last = np.array([100, 101, 102, 5, 10**9, 103])
    active = np.array([True, True, True, True, True, False])
    quiet = np.array([0, 0, 0, 50.0, 0, 0])
    g, a = plan_follow(last, active, 50, {1}, quiet, now=10.0)
    assert g.tolist() == [0, 2] and a.tolist() == [1, 4]  # 3 is quiet until 50 s, 5 is off
    g, a = plan_follow(last, active, 50, set(), quiet, now=60.0)
    assert g.tolist() == [0, 1, 2] and a.tolist() == [3, 4]
