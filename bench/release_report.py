"""Pure figures of the release bench: rollout phases from the task records,
what customers saw in a time window, medians and spreads, the markdown table
and the chart of one rollout.

No lab and no Ansible here, so the unit tests can drive every function with
small hand-made inputs.
"""

from __future__ import annotations

import statistics

from ansible_collections.immune.canary.plugins.module_utils._statistics import percentile

# Task names (the end of the recorded name; roles prefix "rollout : ") -> phase.
PHASE_OF_TASK = (
    ('Drain the host from the load balancer', 'drain'),
    ('Deploy the new version as its own site', 'deploy'),
    ('Warm up the new site off-line until it is fast', 'warm'),
    ('Admit the host to the load balancer and wait until healthy', 'admit'),
    ('Bake in production and let Elasticsearch decide', 'bake'),
    ('Take the host out of the load balancer without waiting for the full drain', 'revert'),
    ('Stop the new site and start the fallback site', 'revert'),
    ('Warm up the fallback site off-line', 'revert'),
    ('Admit the host again and wait until healthy', 'revert'),
    # bench/naive_deploy.yml
    ('Stop the running site in place', 'deploy'),
    ('Unpack the release in place', 'deploy'),
    ('Start the new site in place', 'deploy'),
)
PHASES = ('drain', 'deploy', 'warm', 'admit', 'bake', 'revert')
PHASE_COLOURS = {'drain': '#8c564b', 'deploy': '#1f77b4', 'warm': '#ff7f0e', 'admit': '#2ca02c', 'bake': '#9467bd', 'revert': '#d62728'}

# The revert of one host, step by step (revert.yml).
REVERT_STEPS = (
    ('Take the host out of the load balancer without waiting for the full drain', 'deregister'),
    ('Stop the new site and start the fallback site', 'swap'),
    ('Warm up the fallback site off-line', 'warm'),
    ('Admit the host again and wait until healthy', 'admit'),
)


def phase_of(task):
    for suffix, phase in PHASE_OF_TASK:
        if task.endswith(suffix):
            return phase
    return None


def task_spans(records):
    """Each record as (host, task, start, end, module elapsed or None, status).

    The callback stamps a task's start once per task, not per host: with the
    free strategy a later host overwrites it. A host's task cannot start
    before its previous task ended, nor after it ended itself."""
    spans = []
    last_end = {}
    for rec in sorted(records, key=lambda r: r['ended']):
        host = rec['host']
        start = max(rec['started'], last_end.get(host, rec['started']))
        start = min(start, rec['ended'])
        result = rec.get('result') or {}
        elapsed = result.get('elapsed') if isinstance(result.get('elapsed'), (int, float)) else None
        spans.append(dict(host=host, task=rec['task'], start=start, end=rec['ended'], elapsed=elapsed, status=rec['status'],
                          skipped=rec['status'] == 'skipped' or bool(result.get('skipped'))))
        last_end[host] = rec['ended']
    return spans


def phases(records):
    """Per host, consecutive spans of one phase merged: dict(host, phase, start, end)."""
    out = []
    for span in task_spans(records):
        phase = phase_of(span['task'])
        if phase is None or span['skipped']:
            continue
        previous = next((p for p in reversed(out) if p['host'] == span['host']), None)
        if previous is not None and previous['phase'] == phase:
            previous['end'] = span['end']
        else:
            out.append(dict(host=span['host'], phase=phase, start=span['start'], end=span['end']))
    return out


def find(spans, suffix, host=None, after=None):
    """The first span whose task ends with suffix (for host, starting at or after ``after``)."""
    for span in spans:
        if span['task'].endswith(suffix) and (host is None or span['host'] == host) and (after is None or span['start'] >= after):
            return span
    return None


def window_stats(traffic, start, end):
    """What customers saw from start to end (wall seconds): traffic is a list
    of (wall start, ok, latency ms[, HTTP status, 0 = no answer in time]).
    ``no_answer`` counts failures where the client gave up (on an overloaded
    machine, the traffic generator's own timeout); ``http_5xx`` the answers
    of the load balancer or the app."""
    inside = sorted(r[:3] for r in traffic if start <= r[0] < end)
    statuses = [r[3] for r in traffic if start <= r[0] < end and len(r) > 3 and not r[1]]
    latencies = [r[2] for r in inside]
    return dict(requests=len(inside), failed=sum(1 for r in inside if not r[1]),
                no_answer=sum(1 for status in statuses if status == 0), http_5xx=sum(1 for status in statuses if status >= 500),
                p50_ms=_round(percentile(latencies, 50)), p99_ms=_round(percentile(latencies, 99)),
                longest_failure_s=longest_failure(inside), failing_seconds=failing_stretch(inside, start), seconds=round(end - start, 3))


def failing_stretch(records, t0):
    """The longest run of consecutive whole seconds (from t0) in which some
    request failed: with round robin over several hosts, failures of one host
    interleave with successes of the others, so ``longest_failure`` alone
    misses a host that fails every request sent to it for half a minute."""
    failing = sorted({int(r[0] - t0) for r in records if not r[1]})
    longest, run, previous = 0, 0, None
    for second in failing:
        run = run + 1 if previous is not None and second == previous + 1 else 1
        longest = max(longest, run)
        previous = second
    return longest


def longest_failure(records):
    """Seconds from the start of the first to the end of the last request of
    the longest unbroken run of failed requests."""
    longest, run_start = 0.0, None
    for start, ok, latency in records:
        if ok:
            run_start = None
            continue
        if run_start is None:
            run_start = start
        longest = max(longest, start + latency / 1000.0 - run_start)
    return round(longest, 3)


def per_second(traffic, t0, t1):
    """Per whole second from t0: ok, failed, p50 and p99 latency."""
    buckets = {}
    for start, ok, latency, *_status in traffic:
        if t0 <= start < t1:
            bucket = buckets.setdefault(int(start - t0), dict(ok=0, failed=0, lat=[]))
            bucket['ok' if ok else 'failed'] += 1
            bucket['lat'].append(latency)
    return [dict(second=s, ok=b['ok'], failed=b['failed'], p50_ms=percentile(b['lat'], 50), p99_ms=percentile(b['lat'], 99))
            for s, b in sorted(buckets.items())]


def spread(values):
    """Median and spread of repeated figures (None values are left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return dict(median=None, min=None, max=None, n=0)
    return dict(median=_round(statistics.median(values), 3), min=_round(min(values), 3), max=_round(max(values), 3), n=len(values))


def fmt(summary, unit='', digits=1):
    """'median (min-max)' of a spread(), or '-'."""
    if not summary or summary.get('median') is None:
        return '-'
    form = '%.' + str(digits) + 'f'
    text = (form % summary['median']) + unit
    if summary['n'] > 1 and summary['min'] != summary['max']:
        text += ' (' + (form % summary['min']) + '-' + (form % summary['max']) + ')'
    return text


def markdown_table(rows):
    """rows: list of (figure, value, target, verdict) -> a markdown table."""
    lines = ['| figure | median (min-max) | target | met |', '|---|---|---|---|']
    for figure, value, target, verdict in rows:
        lines.append('| %s | %s | %s | %s |' % (figure, value, target or '', {True: 'yes', False: '**no**', None: ''}[verdict]))
    return '\n'.join(lines) + '\n'


def _round(value, digits=1):
    return None if value is None else round(value, digits)


def chart(path, title, traffic, phase_spans, t0, t1, marks=()):
    """A PNG of one rollout: requests per second (ok / failed), p50 and p99
    latency per second, and each host's phases, on one time axis (seconds
    from t0). ``marks``: (wall time, label) drawn as vertical lines."""
    import matplotlib  # pylint: disable=import-outside-toplevel  # only the bench draws
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    seconds = per_second(traffic, t0, t1)
    hosts = sorted({p['host'] for p in phase_spans}, key=_host_key)
    fig, (rps, lat, gantt) = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5), gridspec_kw={'height_ratios': [2, 2, max(1.2, 0.35 * len(hosts))]})
    xs = [s['second'] for s in seconds]
    rps.bar(xs, [s['ok'] for s in seconds], width=1.0, align='edge', color='#2ca02c', label='ok')
    rps.bar(xs, [s['failed'] for s in seconds], width=1.0, align='edge', bottom=[s['ok'] for s in seconds], color='#d62728', label='failed')
    rps.set_ylabel('requests / s')
    rps.legend(loc='upper right', fontsize=8)
    rps.set_title(title, fontsize=10)
    lat.plot([x + 0.5 for x in xs], [s['p50_ms'] for s in seconds], color='#1f77b4', label='p50')
    lat.plot([x + 0.5 for x in xs], [s['p99_ms'] for s in seconds], color='#ff7f0e', label='p99')
    lat.set_ylabel('latency (ms)')
    lat.set_yscale('log')
    lat.legend(loc='upper right', fontsize=8)
    for row, host in enumerate(hosts):
        for span in (p for p in phase_spans if p['host'] == host):
            gantt.broken_barh([(span['start'] - t0, max(span['end'] - span['start'], 0.05))], (row - 0.4, 0.8),
                              facecolors=PHASE_COLOURS[span['phase']])
    gantt.set_yticks(range(len(hosts)))
    gantt.set_yticklabels(hosts, fontsize=8)
    gantt.set_ylim(-0.6, len(hosts) - 0.4)
    gantt.invert_yaxis()
    gantt.set_xlabel('seconds')
    used = [p for p in PHASES if any(s['phase'] == p for s in phase_spans)]
    handles = [matplotlib.patches.Patch(color=PHASE_COLOURS[p], label=p) for p in used]
    if handles:
        gantt.legend(handles=handles, loc='upper right', fontsize=7, ncol=len(handles))
    for wall, label in marks:
        for axis in (rps, lat, gantt):
            axis.axvline(wall - t0, color='black', linestyle=':', linewidth=0.8)
        rps.annotate(label, (wall - t0, 1), xycoords=('data', 'axes fraction'), fontsize=7, rotation=90, va='top', ha='right')
    gantt.set_xlim(0, max(t1 - t0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _host_key(name):
    digits = ''.join(c for c in name if c.isdigit())
    return (name.rstrip('0123456789'), int(digits) if digits else 0)
