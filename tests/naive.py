"""Slow, obviously correct reference implementations (stumpy's ``tests/naive.py`` style).

Written the way the original tutorials wrote them: plain Python loops, one
segment or one sample at a time.  Every fast kernel in ``pipeline`` is
compared with its reference here.  Nothing in ``pipeline`` imports this file.
"""

from __future__ import annotations


# ---------------------------------------------------------------------------
# line protocol
# ---------------------------------------------------------------------------
def line_protocol(measurement, times, fields, tags=None, float_text=repr):
    """One point at a time, straight from the line-protocol reference.

    ``float_text`` writes a finite float (any text that reads back as the same
    float64 is right; ``tests/test_influx.py`` checks the encoder's own).

    Names: a backslash goes before each special character (``,`` and space in
    a measurement; ``,``, ``=`` and space in tag keys, tag values and field
    keys) and nowhere else: InfluxDB 1.6 keeps a backslash that is not before
    a special character, so ``C:\\temp`` is written as it is.
    """
    import math

    def esc(text, chars):
        return "".join("\\" + c if c in chars else c for c in str(text))

    head = esc(measurement, ", ")
    for k in sorted(tags or {}):
        if tags[k] not in (None, ""):
            head += "," + esc(k, ",= ") + "=" + esc(tags[k], ",= ")
    lines = []
    for i, t in enumerate(times):
        parts = []
        for k in sorted(fields):
            v = fields[k][i]
            if type(v).__name__ in ("bool", "bool_"):
                parts.append(f"{esc(k, ',= ')}={'true' if v else 'false'}")
            elif isinstance(v, float) or type(v).__name__.startswith("float"):
                if math.isfinite(v):
                    parts.append(f"{esc(k, ',= ')}={float_text(float(v))}")
            elif type(v).__name__.startswith("int"):
                parts.append(f"{esc(k, ',= ')}={int(v)}i")
            else:
                parts.append(f'{esc(k, ",= ")}="' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
        if parts:
            lines.append(f"{head} {','.join(parts)} {int(t)}")
    return lines


# ---------------------------------------------------------------------------
# regular series
# ---------------------------------------------------------------------------


def runs_and_gaps(times, period, jitter_tol=0.1):
    """Split sorted timestamps into runs the obvious way; classify every break."""
    runs, gaps, irregular = [], [], []
    start = 0
    for i in range(1, len(times)):
        step = times[i] - times[i - 1]
        if (1 - jitter_tol) * period <= step <= (1 + jitter_tol) * period:
            continue
        runs.append((start, i))
        if step >= 1.5 * period:
            gaps.append((int(times[i - 1]), int(times[i])))
        else:
            irregular.append(i)
        start = i
    runs.append((start, len(times)))
    return runs, gaps, irregular


def naive_segment_scores(times, values, period, segment_len, slide_len, score, jitter_tol=0.1):
    """Walk the series, restart a run at every off-grid step, score every whole segment of a run.

    ``score(segment)`` scores one segment.  Returns ``(times, errors, breaks,
    n_skipped)``: the centre time and score of every segment, every break as
    ``(time before, time after, "gap" or "irregular")``, and the number of
    samples of runs closed by a break that no segment covers (the last run
    is still open: its tail is not counted).
    """
    seg_times, errors, breaks = [], [], []
    n_skipped = 0
    start = 0
    for i in range(1, len(times) + 1):
        if i < len(times):
            step = times[i] - times[i - 1]
            if (1 - jitter_tol) * period <= step <= (1 + jitter_tol) * period:
                continue
            breaks.append((int(times[i - 1]), int(times[i]), "gap" if step >= 1.5 * period else "irregular"))
        covered = [False] * (i - start)
        for a in range(start, i - segment_len + 1, slide_len):
            seg_times.append(int(times[a + segment_len // 2]))
            errors.append(float(score(values[a:a + segment_len])))
            for j in range(a, a + segment_len):
                covered[j - start] = True
        if i < len(times):
            n_skipped += covered.count(False)
        start = i
    return seg_times, errors, breaks, n_skipped


def naive_by_group(times, values, groups):
    """``ReadResult.by_group`` the obvious way: one mask per key, keys in order of appearance."""
    out = {}
    for g in dict.fromkeys(groups.tolist()):
        m = groups == g
        out[str(g)] = (times[m], values[m])
    return out


# ---------------------------------------------------------------------------
# segmentation, windowing, K-Means reconstruction, thresholds
# ---------------------------------------------------------------------------


def naive_sliding_segments(x, segment_len, slide_len):
    """The tutorial's chunker: a loop over start positions; a short last chunk is dropped."""
    segments = []
    for start in range(0, len(x), slide_len):
        segment = [float(v) for v in x[start : start + segment_len]]
        if len(segment) != segment_len:
            continue
        segments.append(segment)
    return segments


def naive_sin2_window(segment_len):
    """``sin(pi * n / L) ** 2`` one sample at a time."""
    import math

    return [math.sin(math.pi * n / segment_len) ** 2 for n in range(segment_len)]


def naive_overlap_add(segments, slide_len, n_samples):
    """Add each segment at its start position, one sample at a time."""
    out = [0.0] * n_samples
    for i, segment in enumerate(segments):
        for j, v in enumerate(segment):
            out[i * slide_len + j] += float(v)
    return out


def naive_nearest(windowed, centers):
    """Nearest centroid by explicit sums of squared differences (no expanded formula)."""
    distances = []
    for c in centers:
        distances.append(sum((float(a) - float(b)) ** 2 for a, b in zip(windowed, c, strict=True)))
    best = min(range(len(distances)), key=lambda j: distances[j])
    return best, distances


def naive_score_segments(segments, window, centers):
    """Per-segment loop: window, nearest centroid, max |windowed - centroid|.

    Returns ``(scores, nearest_index, distances_per_segment)``.
    """
    scores, nearest, distances = [], [], []
    for segment in segments:
        windowed = [float(w) * float(v) for w, v in zip(window, segment, strict=True)]
        j, d = naive_nearest(windowed, centers)
        scores.append(max(abs(a - float(b)) for a, b in zip(windowed, centers[j], strict=True)))
        nearest.append(j)
        distances.append(d)
    return scores, nearest, distances


def naive_reconstruct(x, window, centers):
    """The tutorial's reconstruction loop at slide L/2; samples covered by < 2 windows are NaN."""
    segment_len = len(window)
    half = segment_len // 2
    out = [0.0] * len(x)
    coverage = [0] * len(x)
    for start in range(0, len(x), half):
        segment = x[start : start + segment_len]
        if len(segment) != segment_len:
            continue
        windowed = [float(w) * float(v) for w, v in zip(window, segment, strict=True)]
        j, _ = naive_nearest(windowed, centers)
        for i in range(segment_len):
            out[start + i] += float(centers[j][i])
            coverage[start + i] += 1
    return [v if c >= 2 else float("nan") for v, c in zip(out, coverage, strict=True)]


def naive_tutorial_threshold(runs, window, centers):
    """Max |reconstruction - x| over every reconstructed sample of every run (runs never joined)."""
    best = None
    for run in runs:
        rec = naive_reconstruct(run, window, centers)
        for r, v in zip(rec, run, strict=True):
            if r == r:  # not NaN
                err = abs(r - float(v))
                best = err if best is None else max(best, err)
    return best


def naive_quantile(scores, q):
    """Linear-interpolation quantile (numpy's default) of a list, by sorting."""
    s = sorted(float(v) for v in scores)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])

# ---------------------------------------------------------------------------
# rolling z-score, streak guard, long and fleet baselines
# ---------------------------------------------------------------------------


def tutorial_zscore(x, window=15):
    """The Plexus tutorial's z: the newest sample INSIDE its own window.

    Mean and ``statistics.stdev`` (ddof=1) of the last ``window`` samples
    including the current one; NaN until the window is full; 0 when the std
    is 0 (silently, as the tutorial did).  ``|z| <= (n-1)/sqrt(n)`` always.
    """
    import statistics

    out, win = [], []
    for v in x:
        win.append(float(v))
        if len(win) > window:
            win.pop(0)
        if len(win) < window:
            out.append(float("nan"))
            continue
        sd = statistics.stdev(win)
        out.append(0.0 if sd == 0 else (win[-1] - statistics.mean(win)) / sd)
    return out


def naive_streak_guard(zs, threshold=3.0, streak=3, resolve=2.0, run=0, on=False, tie=1e-9):
    """Explicit state machine: streak of ``|z| > threshold``; alert on at
    ``streak``, held while ``|z| > resolve``; NaN resets both.  "Above v" means
    beyond ``v + tie * max(1, v)``, as in ``pipeline.zscore`` (exact ties then
    decide the same way whatever the last-bit rounding)."""
    import math

    streaks, alerts, emitted = [], [], []
    for z in zs:
        if math.isnan(z):
            run, on = 0, False
        else:
            a = abs(z)
            run = run + 1 if a > threshold + tie * max(1.0, threshold) else 0
            if run >= streak:
                on = True
            elif a <= resolve + tie * max(1.0, resolve):
                on = False
        streaks.append(run)
        alerts.append(on)
        emitted.append(abs(z) if on else 0.0)
    return streaks, alerts, emitted


def naive_rolling_zscore(x, window=15, min_periods=5, threshold=3.0, streak=3, resolve=2.0,
                         std_floor=0.0, lag=None, eps_std=1e-9):
    """The fixed detector, one sample at a time, in the tutorial's way.

    ``lag=None`` means ``streak - 1``, as in ``pipeline.zscore``.

    ``prev`` is a plain list of the up to ``window`` previous finite samples,
    skipping the ``lag`` newest (the current one is NOT in it);
    ``statistics.mean`` / ``statistics.stdev``; std floored at
    ``std_floor + eps_std * max(1, |mean|)``; a non-finite sample scores NaN
    and is not kept.  Returns lists ``(z, streak, alert, emitted)``.
    """
    import math
    import statistics

    lag = streak - 1 if lag is None else lag
    zs, seen = [], []
    for v in x:
        v = float(v)
        if not math.isfinite(v):
            zs.append(float("nan"))
            continue
        end = max(0, len(seen) - lag)
        prev = seen[max(0, end - window):end]
        if len(prev) >= min_periods:
            mu = statistics.mean(prev)
            sd = statistics.stdev(prev)
            zs.append((v - mu) / max(sd, std_floor + eps_std * max(1.0, abs(mu))))
        else:
            zs.append(float("nan"))
        seen.append(v)
    return (zs, *naive_streak_guard(zs, threshold, streak, resolve))


def naive_sumsq_zscore(x, window=15, min_periods=5, eps_std=1e-9):
    """What NOT to do: the same z with a one-pass sum-of-squares variance
    ``(sum(x^2) - sum(x)^2 / n) / (n - 1)``, which cancels catastrophically
    at a large offset.  Kept to show that the offset tests have teeth."""
    import math

    zs, prev = [], []
    for v in x:
        v = float(v)
        if len(prev) >= min_periods:
            n = len(prev)
            s1 = sum(prev)
            s2 = sum(p * p for p in prev)
            var = max((s2 - s1 * s1 / n) / (n - 1), 0.0)
            mu = s1 / n
            zs.append((v - mu) / max(math.sqrt(var), eps_std * max(1.0, abs(mu))))
        else:
            zs.append(float("nan"))
        prev.append(v)
        if len(prev) > window:
            prev.pop(0)
    return zs


def naive_ewma_zscore(x, halflife, min_periods=None, threshold=3.0, streak=3, resolve=2.0,
                      std_floor=0.0, scale="noise", eps_std=1e-9):
    """EWMA z in a loop: ``mean += alpha * (x - mean)`` after scoring ``x``
    against the mean before it; the scale is the bias-corrected EW RMS of
    ``(x - x_prev) / sqrt(2)`` (``"noise"``) or of ``x - mean`` (``"ewm"``)."""
    import math

    a = 1.0 - 2.0 ** (-1.0 / halflife)
    c = 1.0 - a
    if min_periods is None:
        min_periods = max(2, math.ceil(halflife))
    zs = []
    count, mean, prev, ms, k = 0, 0.0, 0.0, 0.0, 0
    for v in x:
        v = float(v)
        if not math.isfinite(v):
            zs.append(float("nan"))
            continue
        if count >= min_periods:
            sd = math.sqrt(ms / (1.0 - c**k))
            zs.append((v - mean) / max(sd, std_floor + eps_std * max(1.0, abs(mean))))
        else:
            zs.append(float("nan"))
        if count == 0:
            mean = prev = v
        else:
            e = (v - prev) / math.sqrt(2.0) if scale == "noise" else v - mean
            ms = c * ms + a * e * e
            k += 1
            mean = mean + a * (v - mean)
            prev = v
        count += 1
    return (zs, *naive_streak_guard(zs, threshold, streak, resolve))


def naive_fleet_zscore(values, std_floor=0.0, min_sensors=3, eps_std=1e-9):
    """Robust z per cell, one time (row) at a time: ``statistics.median`` of
    the finite values and of their absolute deviations (MAD * 1.4826)."""
    import math
    import statistics

    out = []
    for row in values:
        vals = [float(v) for v in row if math.isfinite(v)]
        if len(vals) < min_sensors:
            out.append([float("nan")] * len(row))
            continue
        med = statistics.median(vals)
        mad = statistics.median([abs(v - med) for v in vals])
        den = max(1.4826 * mad, std_floor + eps_std * max(1.0, abs(med)))
        out.append([(float(v) - med) / den if math.isfinite(v) else float("nan") for v in row])
    return out


# ---------------------------------------------------------------------------
# event-level scoring (pipeline.events), one nanosecond tick at a time
# ---------------------------------------------------------------------------


def naive_event_scores(runs, labels, start, end, merge_gap, tol_before, tol_after):
    """Walk every integer tick of ``[start, end)``; keep small numbers (hundreds of ticks).

    ``runs``: list of ``(times, alarm, period)``; the union of their coverage
    is scored (one run: a single detector).  ``labels``: list of ``(start,
    end)``.  A tick is *covered* when some flag ``t`` inside the span has
    ``t <= tick < t + period``.  Covered runs separated by at most
    ``merge_gap`` uncovered ticks form one event; an event is false when
    none of its covered ticks lies in a widened label.  Returns ``found``,
    ``delay`` (None when missed), ``events`` as ``(first tick, last covered
    tick + 1, false)``, ``normal`` ticks and ``alarm_normal`` ticks (event
    hull ticks that are normal).
    """
    ticks = list(range(start, end))
    covered = {t: False for t in ticks}
    for times, alarm, period in runs:
        for t, a in zip(times, alarm, strict=True):
            if a and start <= t < end:
                for u in range(t, t + period):
                    if u < end:
                        covered[u] = True

    def widened(j, t):
        s, e = labels[j]
        e = max(e, s + 1)
        return s - tol_before <= t < e + tol_after

    def in_label(t):
        return any(widened(j, t) for j in range(len(labels)))

    found, delay = [], []
    for j, (s, _) in enumerate(labels):
        hits = [t for t in ticks if covered[t] and widened(j, t)]
        found.append(bool(hits))
        delay.append(max(0, hits[0] - s) if hits else None)

    # events: covered runs, joined across silences of <= merge_gap ticks
    events = []  # [first, last covered + 1, list of covered ticks]
    for t in ticks:
        if not covered[t]:
            continue
        if events and t - events[-1][1] <= merge_gap:
            events[-1][1] = t + 1
            events[-1][2].append(t)
        else:
            events.append([t, t + 1, [t]])
    out_events = [(a, b, not any(in_label(t) for t in cov)) for a, b, cov in events]
    normal = sum(1 for t in ticks if not in_label(t))
    alarm_normal = sum(1 for t in ticks if not in_label(t) and any(a <= t < b for a, b, _ in events))
    return {"found": found, "delay": delay, "events": out_events, "normal": normal,
            "alarm_normal": alarm_normal}


def naive_plexus_tutorial(x, window=15, threshold=3.0, streak=3):
    """The Plexus tutorial's alarm flags: ``tutorial_zscore`` then |z| > threshold ``streak`` times in a row."""
    import math

    flags, run = [], 0
    for z in tutorial_zscore(x, window):
        run = run + 1 if (not math.isnan(z) and abs(z) > threshold) else 0
        flags.append(run >= streak)
    return flags
# alert episodes
# ---------------------------------------------------------------------------
def naive_episodes(times, alarm, score):
    """Episodes of one key, one point at a time: [(kind, time, value, start, peak)].

    kind is "alert" at the first alarm point of a run, "recovery" at the first
    non-alarm point after it; peak is the run's score of largest magnitude.
    """
    import math

    out, start, peak = [], None, None
    for t, a, s in zip(times, alarm, score, strict=True):
        t, s = int(t), float(s)
        if a and start is None:
            start, peak = t, None
            out.append(("alert", t, s, t, s))
        if a and not math.isnan(s) and (peak is None or abs(s) > abs(peak)):
            peak = s
        if not a and start is not None:
            out.append(("recovery", t, s, start, peak))
            start = None
    return out


# ---------------------------------------------------------------------------
# detectors: flat runs, held alarms, alarm events
# ---------------------------------------------------------------------------
def naive_flat_runs(times, values, tol, period, carry=None, gap_factor=1.5):
    """Seconds on one value, one sample at a time; returns ``(flat_s, carry)`` like ``flat_runs``.

    A run goes on while the step from the previous sample is at most ``tol``, the time step is
    below ``gap_factor`` periods and the value is finite; a non-finite value scores NaN and
    ends the run.  A value beyond ``config.Z_MAX_ABS`` (1e100) is taken as NaN
    (``docs/extremes.md``).
    """
    import math

    run_start, last_t, last_v = carry if carry is not None else (None, None, math.nan)
    flat = []
    for t, v in zip(times, values, strict=True):
        t, v = int(t), float(v)
        if not abs(v) <= 1e100:
            v = math.nan
        goes_on = (last_t is not None and run_start is not None and math.isfinite(v)
                   and abs(v - last_v) <= tol and t - last_t < gap_factor * period)
        if not goes_on:
            run_start = t
        flat.append((t - run_start) / 1e9 if math.isfinite(v) else math.nan)
        if not math.isfinite(v):
            run_start = None
        last_t, last_v = t, v
    return flat, (run_start, last_t, last_v)


def naive_hold_alarm(times, raw, hold_ns, last_hit=None):
    """An alarm is on while the last raw hit lies at most ``hold_ns`` back; ``(alarm, last_hit)``."""
    alarm = []
    for t, r in zip(times, raw, strict=True):
        if r:
            last_hit = int(t)
        alarm.append(last_hit is not None and int(t) - last_hit <= hold_ns)
    return alarm, last_hit


def naive_alarm_events(times, stat, threshold, gap_ns):
    """Peaks of the clusters of ``stat > threshold``: a hit more than ``gap_ns`` after the
    previous hit starts a new event (NaN never hits)."""
    peaks, last = [], None
    for t, s in zip(times, stat, strict=True):
        if s > threshold:  # False for NaN
            if last is None or int(t) - last > gap_ns:
                peaks.append(float(s))
            else:
                peaks[-1] = max(peaks[-1], float(s))
            last = int(t)
    return peaks


def naive_runs_of_true(flags):
    """Maximal runs of True: the alarm events a person sees."""
    n, prev = 0, False
    for f in flags:
        if f and not prev:
            n += 1
        prev = bool(f)
    return n


# ---------------------------------------------------------------------------
# quality: centred segments, the drift detector's EWMA residual, tail fits
# ---------------------------------------------------------------------------
def naive_centered_scores(segments, window, centers):
    """Each segment minus its window-weighted mean, then ``naive_score_segments``."""
    out = []
    for segment in segments:
        base = sum(float(w) * float(v) for w, v in zip(window, segment, strict=True)) / sum(
            float(w) for w in window)
        out.append([float(v) - base for v in segment])
    return naive_score_segments(out, window, centers)[0]


def naive_drift_z(values, halflife, scale, warm, carry=None):
    """``(x - EWMA of the finite samples before x) / scale``, one sample at a time.

    The first finite sample only starts the mean; a sample scores NaN while fewer than ``warm``
    finite samples were absorbed before it; a non-finite one scores NaN and is skipped.
    ``carry`` is ``(count, mean)``; returns ``(z, carry)``.
    """
    import math

    a = 1.0 - 2.0 ** (-1.0 / halflife)
    count, mean = carry if carry is not None else (0, math.nan)
    z = []
    for x in values:
        x = float(x)
        if not math.isfinite(x):
            z.append(math.nan)
            continue
        if count == 0:
            z.append(math.nan)
            count, mean = 1, x
            continue
        z.append((x - mean) / scale if count >= warm else math.nan)
        mean = a * x + (1 - a) * mean
        count += 1
    return z, (count, mean)


def naive_streak_min(z, streak):
    """``min |z|`` over the last ``streak`` samples, NaN counting as 0 (0 before ``streak``)."""
    import math

    a = [0.0 if not math.isfinite(v) else abs(v) for v in z]
    return [min(a[i - streak + 1:i + 1]) if i >= streak - 1 else 0.0 for i in range(len(a))]


def naive_exponential_threshold(peaks, level, per_hour, hours):
    """Peaks over ``level`` with exponential excesses: the ``t`` where
    ``len(peaks) / hours * exp(-(t - level) / mean excess) == per_hour``."""
    import math

    n = len(peaks)
    scale = sum(p - level for p in peaks) / n
    return level + scale * math.log(n / (per_hour * hours))


def naive_held_alarm_peaks(times, stat, level, hold_ns):
    """Peaks of the episodes of the held alarm: a hit joins the previous episode when the alarm
    (on while the last hit lies at most ``hold_ns`` back) was on at the sample before it."""
    peaks, last, on = [], None, False
    for t, s in zip(times, stat, strict=True):
        if s > level:  # False for NaN
            if on:
                peaks[-1] = max(peaks[-1], float(s))
            else:
                peaks.append(float(s))
            last = int(t)
        on = last is not None and int(t) - last <= hold_ns
    return peaks


def naive_fleet(series, period, phase, alpha, warm, min_keys, floor, streak, threshold, hold_ns,
                relation=None, unknown_scale=1.0):
    """The fleet detector over whole series, one reading, one bin, one key at a time.

    ``series`` is ``{key: (times, values)}``.  Each key's readings are smoothed in order
    (``m = x`` first, then ``m = m + alpha * (x - m)``; a non-finite value is skipped; the
    first ``warm`` finite readings stand for NaN); a key's last reading in a bin (``(t - phase
    + period // 2) // period``) stands for it there; a bin with at least ``min_keys`` finite
    values gives each of them ``(m - off - median) / max(scale, 1.4826 * MAD, floor + 1e-9 *
    max(1, |median|))``, ``median`` and ``MAD`` those of the bin's ``m - off``, ``(off, scale)`` the key's in
    ``relation`` (``{key: (offset, scale)}``), else ``(0, unknown_scale)``.  The alarm statistic is the smallest ``|z|`` over the key's last ``streak``
    bins, a bin without its reading (or NaN) counting as 0; an alarm point is one at most
    ``hold_ns`` after a point whose statistic is above ``threshold``.  Returns ``{key:
    (times, z, stat, alarm)}`` at each key's last reading per bin.
    """
    import math
    import statistics

    entries = _naive_smoothed(series, period, phase, alpha, warm)
    rel = relation or {}
    bins = sorted({b for _, b in entries})
    z = {}
    for b in bins:
        vals = {k: v - rel.get(k, (0.0, 0.0))[0] for (k, bb), (_, v) in entries.items()
                if bb == b and math.isfinite(v)}
        if len(vals) < min_keys:
            continue
        med = statistics.median(vals.values())
        spread = 1.4826 * statistics.median(abs(v - med) for v in vals.values())
        for k, v in vals.items():
            den = max(rel[k][1] if k in rel else unknown_scale, spread,
                      floor + 1e-9 * max(1.0, abs(med)))
            z[(k, b)] = (v - med) / den
    out = {}
    first = bins[0] if bins else 0
    for key in series:
        ts, zs, ss, al = [], [], [], []
        last_hit = None
        for b in bins:
            if (key, b) not in entries:
                continue
            window = [abs(z.get((key, c), 0.0)) if c >= first else 0.0
                      for c in range(b - streak + 1, b + 1)]
            s = min(window)
            t = entries[(key, b)][0]
            if s > threshold:
                last_hit = t
            ts.append(t)
            zs.append(z.get((key, b), math.nan))
            ss.append(s)
            al.append(last_hit is not None and t - last_hit <= hold_ns)
        out[key] = (ts, zs, ss, al)
    return out


def _naive_smoothed(series, period, phase, alpha, warm):
    """``{(key, bin): (time, smoothed or nan)}``: each key's EWMA at its last reading per bin."""
    import math

    entries = {}
    for key, (times, values) in series.items():
        m, count = None, 0
        for t, x in zip(times, values, strict=True):
            x = float(x)
            if not math.isfinite(x):
                continue
            m = x if count == 0 else m + alpha * (x - m)
            entries[(key, (int(t) - phase + period // 2) // period)] = \
                (int(t), m if count >= warm else math.nan)
            count += 1
    return entries


def naive_fleet_relation(series, period, phase, alpha, warm, min_keys, floor, min_bins):
    """Each key's ``(offset, scale)`` against its fleet, one bin and one key at a time.

    The bins with at least ``min_keys`` finite smoothed values (as :func:`naive_fleet`) are
    kept; keys with fewer than ``min_bins`` of them are dropped, then the bins with fewer than
    ``min_keys`` of the keys left.  Three times: ``median`` of each bin's ``s - offset``, then
    each offset moves by the median over its bins of ``s - offset - median`` (from 0).  Scale:
    1.4826 x the median of ``|s - offset - median|``, at least the median scale and
    ``floor + 1e-9``.  Returns ``({key: (offset, scale)}, unknown_scale)``: an unknown key's
    scale is ``hypot(median scale, 1.4826 x MAD of the offsets)``.
    """
    import math
    import statistics

    entries = _naive_smoothed(series, period, phase, alpha, warm)
    per_bin = {}
    for (k, b), (_, v) in entries.items():
        if math.isfinite(v):
            per_bin.setdefault(b, {})[k] = v
    per_bin = {b: d for b, d in per_bin.items() if len(d) >= min_keys}
    n = {}
    for d in per_bin.values():
        for k in d:
            n[k] = n.get(k, 0) + 1
    keys = [k for k in series if n.get(k, 0) >= min_bins]
    if len(keys) < min_keys:
        return {}, None
    per_bin = {b: {k: d[k] for k in keys if k in d} for b, d in per_bin.items()}
    per_bin = {b: d for b, d in per_bin.items() if len(d) >= min_keys}
    off = dict.fromkeys(keys, 0.0)

    def medians():
        return {b: statistics.median(v - off[k] for k, v in d.items()) for b, d in per_bin.items()}

    for _ in range(3):
        med = medians()
        off = {k: off[k] + statistics.median(d[k] - off[k] - med[b] for b, d in per_bin.items()
                                             if k in d) for k in keys}
    med = medians()
    scale = {k: 1.4826 * statistics.median(abs(d[k] - off[k] - med[b])
                                           for b, d in per_bin.items() if k in d) for k in keys}
    typical = statistics.median(scale.values())
    scale = {k: max(s, typical, floor + 1e-9) for k, s in scale.items()}
    typical = statistics.median(scale.values())
    mo = statistics.median(off.values())
    spread = 1.4826 * statistics.median(abs(o - mo) for o in off.values())
    return {k: (off[k], scale[k]) for k in keys}, math.hypot(typical, spread)


def naive_windows(times, values, before, after, stride, period, score, gap_factor=1.5):
    """A windowed detector, one sample at a time: ``(stamps, scores)``.

    Runs break at a time step of ``gap_factor`` periods or more.  At each sample ``s`` of a run
    with ``before`` samples before it and ``after`` from it on (``s`` itself included), stamped
    where ``s`` is the first sample of its time bin of ``round(stride * period)`` ns (the sample
    before it lies in another bin), the score is ``score(window)``; NaN when the window holds a
    NaN or a value beyond 1e100.
    """
    import math

    bin_ns = max(1, round(stride * period))
    vals = [float(v) if abs(float(v)) <= 1e100 else math.nan for v in values]
    runs, cur = [], []
    for i, t in enumerate(times):
        if cur and int(t) - int(times[cur[-1]]) >= gap_factor * period:
            runs.append(cur)
            cur = []
        cur.append(i)
    if cur:
        runs.append(cur)
    stamps, scores = [], []
    for run in runs:
        for j in range(before, len(run) - after + 1):
            s = run[j]
            if int(times[s]) // bin_ns == int(times[run[j - 1]]) // bin_ns:
                continue
            win = [vals[i] for i in run[j - before:j + after]]
            scores.append(math.nan if any(math.isnan(v) for v in win) else score(win))
            stamps.append(int(times[s]))
    return stamps, scores


def naive_level_steps(times, values, w, stride, period, gap_factor=1.5):
    """The baseline step: ``median(w samples from s) - median(w samples before s)``."""
    import statistics

    return naive_windows(times, values, w, w, stride, period,
                         lambda win: statistics.median(win[w:]) - statistics.median(win[:w]),
                         gap_factor)


def naive_noise_levels(times, values, w, stride, period, gap_factor=1.5):
    """The noise level: the median of the ``w`` absolute differences of consecutive samples of
    the ``w + 1`` samples around ``s`` (``1 + w // 2`` before it)."""
    import statistics

    return naive_windows(
        times, values, 1 + w // 2, w - w // 2, stride, period,
        lambda win: statistics.median(abs(win[k + 1] - win[k]) for k in range(len(win) - 1)),
        gap_factor)


def naive_as_stored(values):
    """What InfluxDB keeps of a float column the stream writes at ``[output] precision =
    "float32"``: each value's shortest float32 text (numpy's ``str`` of a ``float32``) read
    back as a Python float, one value at a time.  A column with a finite value beyond
    float32's largest or a non-zero one below its smallest normal is written whole at
    float64 (``repr``): it comes back as it is.  Non-float columns are returned as they are.
    """
    import math

    import numpy as np

    arr = np.asarray(values)
    if arr.dtype != np.float64:
        return arr
    f32 = np.finfo(np.float32)
    xs = arr.tolist()
    if any(math.isfinite(x) and (abs(x) > float(f32.max) or 0 < abs(x) < float(f32.tiny))
           for x in xs):
        return arr
    return np.array([float(str(np.float32(x))) if math.isfinite(x) else x for x in xs])
