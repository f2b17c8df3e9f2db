"""The health gate's statistics: false aborts of good releases, detection of bad ones.

Thousands of simulated bakes and 20-host rollouts go through the gate's own
decision code (``_gate.Judge``, what ``es_health_gate`` runs) on responses
shaped as Elasticsearch answers the gate's query (``build_query``): per look,
the cumulated counts of each group and the latency range buckets. Traffic is
Poisson per host; errors are binomial per request; latency is log-normal,
binned as the range aggregation bins it.

The design as the role ships it: a rollout's budget (``rollout_false_abort_rate``,
0.01) reaches the gate of the k-th host to take the new version through
``_gate.rollout_budget`` (1 / (k (k + 1)) of it: 0.005 for host 1, 1/420 of it
for host 20); the baseline is the hosts still on the old version (19 for host
1, 10 for host 10, none for host 20).

Prints:

1. good canaries, per host: false-fail rate at host 1's and host 20's budget,
   and at a large budget (0.05 per host, where a rate can be measured), over
   traffic from 0.5 to 50 req/s per host and looks every 5 to 60 s, for the
   default catalog and a 4-metric one;
2. good releases, 20-host serial rollouts with the schedule (the baseline
   shrinks as hosts take the release): false-abort rate per rollout with its
   95 % confidence interval, and the hosts that aborted;
3. bad canaries on the first host (the canary) and on host 10: looks after
   ``min_samples`` until the verdict, and the share caught within the bake,
   for the issue's targets and more; the 4 % vs 1 % case by host position;
4. charts under bench/results/ (false aborts vs number of looks; power curves
   at hosts 1 and 10; detection by position).

``BENCH_GATE_SCALE=0.2`` runs a fifth of the bakes (development).
Exits non-zero when a measured false-abort rate is significantly above its
budget, or a detection target on the first host is missed (20 % errors at the
first look after min_samples, 3x latency within 2 looks, 4 % vs 1 % errors in
95 % of 120 s bakes).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, '.build'), os.path.join(ROOT, 'tools')]

import build_collection  # noqa: E402

build_collection.sync()

import numpy as np  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._gate import (  # noqa: E402
    ANYTIME_SHARE,
    BASELINE_SHARE,
    Judge,
    latency_ranges,
    load_catalog,
    rollout_budget,
)

RESULTS = os.path.join(ROOT, 'bench', 'results')
SCALE = float(os.environ.get('BENCH_GATE_SCALE', '1'))
FLEET = 20
ROLLOUT_BUDGET = 0.01
LARGE_BUDGET = 0.05
# The positions whose detection the bench reports: the canary and a host half-way through.
CANARY, LATER = 1, 10
POSITIONS = (1, 2, 3, 5, 10, 15, 20)


def host_budget(position, rate=ROLLOUT_BUDGET):
    """The gate budget of the rollout's ``position``-th host, as the role gives it."""
    return rollout_budget(rate, position)


def baseline_hosts(position):
    """The hosts still on the old version when the ``position``-th host bakes."""
    return FLEET - position


# The role's defaults (roles/rollout/defaults/main.yml).
DEFAULT_CATALOG = [
    {'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'max_ratio': 2, 'min_samples': 20, 'weight': 3},
    {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 1000, 'max_ratio': 2, 'min_samples': 20},
]
FOUR_METRICS = DEFAULT_CATALOG + [
    {'name': 'client_errors', 'kind': 'error_rate', 'bad_query': {'range': {'response': {'gte': 400, 'lt': 500}}}, 'max_ratio': 2,
     'min_samples': 20},
    {'name': 'p99', 'kind': 'latency', 'percentile': 99, 'max_ms': 2000, 'max_ratio': 2, 'min_samples': 20},
]
CATALOGS = {'default': DEFAULT_CATALOG, '4 metrics': FOUR_METRICS}
# A group's requests: 5xx share, 4xx share, latency median (ms) and log-normal sigma.
GOOD = dict(e5=0.01, e4=0.02, median=50.0, sigma=0.35)


class Simulator:
    """Bakes of one canary against a baseline of ``baseline_hosts`` hosts, through ``Judge``."""

    def __init__(self, catalog, seed):
        self.specs = catalog
        self.catalog = load_catalog(catalog)
        self.rng = np.random.default_rng(seed)
        edges = sorted({e for m in self.catalog if m.kind == 'latency' for e in m.edges})
        self.edges = np.array(edges)
        self.maps = {}  # metric index -> for each union bin, the metric's bin
        self.templates = {}
        for i, metric in enumerate(self.catalog):
            if metric.kind == 'latency':
                self.maps[i] = np.searchsorted(np.array(metric.edges), np.concatenate([[0.0], self.edges]), side='right')
                self.templates[i] = [_bucket_key(r) for r in latency_ranges(metric.edges)]
        self._probs = {}

    def probs(self, median, sigma):
        key = (median, sigma)
        if key not in self._probs:
            z = (np.log(self.edges) - math.log(median)) / (sigma * math.sqrt(2))
            cdf = 0.5 * (1 + np.array([math.erf(v) for v in z]))
            self._probs[key] = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        return self._probs[key]

    def draw(self, rate, seconds, group):
        n = self.rng.poisson(rate * seconds)
        e5, e4 = group['e5'], group['e4']
        status = self.rng.multinomial(n, [e5, e4, max(0.0, 1 - e5 - e4)])
        bins = self.rng.multinomial(n, self.probs(group['median'], group['sigma']))
        return np.array([n, status[0], status[1]]), bins

    def bucket(self, counts, bins):
        out = {'doc_count': int(counts[0])}
        for i, metric in enumerate(self.catalog):
            key = 'm%d' % i
            if metric.kind == 'error_rate':
                out[key] = {'doc_count': int(counts[2] if metric.bad_query else counts[1])}
            else:
                mine = np.bincount(self.maps[i], weights=bins, minlength=len(metric.edges) + 1).astype(int)
                out[key] = {'buckets': [dict(template, doc_count=int(c)) for template, c in zip(self.templates[i], mine, strict=True)]}
        return out

    def bake(self, canary, baseline, rps, baseline_hosts, interval, bake_time, budget, fail_fast=True):
        """One gate run: (verdict, looks, the looks made once min_samples was reached, results)."""
        judge = Judge(self.catalog, budget, baseline=True)
        times = [0.0]
        while times[-1] + interval < bake_time:
            times.append(times[-1] + interval)
        times.append(float(bake_time))
        cum = {'canary': (np.zeros(3, int), np.zeros(len(self.edges) + 1, int)),
               'baseline': (np.zeros(3, int), np.zeros(len(self.edges) + 1, int))}
        min_samples = max(m.min_samples for m in self.catalog if m.kind in ('error_rate', 'latency'))
        previous, after_min = 0.0, 0
        verdict, results = None, []
        for look, moment in enumerate(times):
            dt = moment - previous
            previous = moment
            if dt > 0:
                for name, group, rate in (('canary', canary, rps), ('baseline', baseline, rps * baseline_hosts)):
                    if rate > 0:
                        counts, bins = self.draw(rate, dt, group)
                        cum[name] = (cum[name][0] + counts, cum[name][1] + bins)
            response = {'aggregations': {'groups': {'buckets': {name: self.bucket(*cum[name]) for name in cum}}}}
            final = look == len(times) - 1
            verdict, results = judge.evaluate(response, moment, final)
            if cum['canary'][0][0] >= min_samples:
                after_min += 1
            if verdict == 'fail' and (final or fail_fast):
                return 'fail', look + 1, after_min, results
        return verdict or 'pass', len(times), after_min, results


def _bucket_key(bounds):
    low, high = bounds.get('from'), bounds.get('to')
    key = '%s-%s' % ('*' if low is None else repr(float(low)), '*' if high is None else repr(float(high)))
    return dict(bounds, key=key)


# -- work items (run in a pool) ----------------------------------------------------------

def run_bakes(job):
    """A batch of identical bakes; returns the figures of each."""
    sim = Simulator(CATALOGS[job['catalog']], job['seed'])
    out = []
    for _bake in range(job['count']):
        verdict, looks, after_min, results = sim.bake(job['canary'], job['baseline'], job['rps'], job['baseline_hosts'], job['interval'],
                                                      job['bake_time'], job['budget'])
        failed = [r['name'] for r in results if r['status'] == 'fail'] if verdict == 'fail' else []
        out.append((verdict, looks, after_min, failed))
    return job['key'], out


def run_rollouts(job):
    """Serial 20-host rollouts of a good release, each host's gate with its share of the rollout's budget; returns, per
    rollout, the position of the host that aborted it (or None)."""
    sim = Simulator(CATALOGS[job['catalog']], job['seed'])
    out = []
    for _rollout in range(job['count']):
        aborted = None
        for position in range(1, FLEET + 1):
            verdict, _looks, _after, _results = sim.bake(GOOD, GOOD, job['rps'], baseline_hosts(position), job['interval'],
                                                         job['bake_time'], host_budget(position, job['rate']))
            if verdict != 'pass':
                aborted = position
                break
        out.append(aborted)
    return job['key'], out


def upper_bound(events, trials, confidence=0.95):
    """One-sided Clopper-Pearson upper bound of a rate."""
    if events >= trials:
        return 1.0
    low, high = events / float(trials), 1.0
    for _step in range(60):
        mid = (low + high) / 2
        # P(X <= events | mid)
        tail = sum(math.exp(math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * math.log(mid)
                            + (trials - k) * math.log1p(-mid)) for k in range(events + 1))
        if tail > 1 - confidence:
            low = mid
        else:
            high = mid
    return high


def n(count):
    return max(20, int(count * SCALE))


def plan():
    jobs = []
    seed = [1000]

    def add(kind, key, count, chunks=4, **spec):
        per = max(1, count // chunks)
        for _chunk in range(chunks):
            seed[0] += 1
            jobs.append((kind, dict(spec, key=key, count=per, seed=seed[0])))

    # 1. good canaries per host: the first host (19 baseline hosts) and the last (none: every other host runs the release)
    issue_cases = [
        ('5 req/s, 1 % errors', dict(GOOD), 5, 120, 15),
        ('20 req/s, 0.5 % errors', dict(GOOD, e5=0.005), 20, 120, 15),
        ('5 req/s, 3 % errors, heavier latency tail', dict(GOOD, e5=0.03, sigma=0.8), 5, 120, 15),
        ('5 req/s, 1 % errors, 300 s bake, a look every 10 s', dict(GOOD), 5, 300, 10),
        ('much better canary: no errors, half the latency', 'better', 5, 120, 15),
    ]
    for catalog in CATALOGS:
        # host 20's budget (2.4e-05) is beyond what a bench can measure: its figures only show it is not far above
        for budget_name, position, budget, count in (('host 1', 1, host_budget(1), 1000 if catalog == 'default' else 500),
                                                     ('host 20', FLEET, host_budget(FLEET), 300), ('large', 1, LARGE_BUDGET, 400)):
            for label, group, rps, bake_time, interval in issue_cases:
                canary = dict(GOOD, e5=0.0, e4=0.0, median=25.0) if group == 'better' else group
                base = GOOD if group == 'better' else group
                add('bakes', ('null', catalog, budget_name, label), n(count), catalog=catalog, canary=canary, baseline=base, rps=rps,
                    baseline_hosts=baseline_hosts(position), interval=interval, bake_time=bake_time, budget=budget)
    # traffic x look interval sweep
    for catalog in CATALOGS:
        for rps in (0.5, 5, 50):
            for interval in (5, 15, 60):
                add('bakes', ('sweep', catalog, rps, interval), n(400), catalog=catalog, canary=GOOD, baseline=GOOD, rps=rps,
                    baseline_hosts=FLEET - 1, interval=interval, bake_time=120, budget=LARGE_BUDGET)
        for bake_time, interval in ((60, 5), (300, 5)):
            add('bakes', ('looks', catalog, bake_time, interval), n(300), catalog=catalog, canary=GOOD, baseline=GOOD, rps=5,
                baseline_hosts=FLEET - 1, interval=interval, bake_time=bake_time, budget=LARGE_BUDGET)
    # 2. rollouts of a good release
    # enough rollouts at the default budget for the confidence interval to end below it
    for catalog, rate, count in (('default', ROLLOUT_BUDGET, 1500), ('4 metrics', ROLLOUT_BUDGET, 100), ('default', 0.2, 200)):
        add('rollouts', ('rollout', catalog, rate), n(count), catalog=catalog, rps=5, interval=15, bake_time=120, rate=rate)
    # 3. bad canaries at 5 req/s, 1 % baseline errors, the role's timing: on the first host and on host 10
    for catalog in CATALOGS:
        for position in (CANARY, LATER):
            for label, canary in BAD_CASES:
                count = 1000 if catalog == 'default' or position == CANARY else 500
                if (label, position, catalog) == (TARGET_CASE, CANARY, 'default'):
                    count = 2000
                add('bakes', ('bad', catalog, position, label), n(count), catalog=catalog, canary=canary, baseline=GOOD, rps=5,
                    baseline_hosts=baseline_hosts(position), interval=15, bake_time=120, budget=host_budget(position))
    # the 4 % vs 1 % case by position (the first and tenth come from above)
    for position in POSITIONS:
        if position not in (CANARY, LATER):
            add('bakes', ('bad', 'default', position, TARGET_CASE), n(400), catalog='default', canary=dict(GOOD, e5=0.04), baseline=GOOD,
                rps=5, baseline_hosts=baseline_hosts(position), interval=15, bake_time=120, budget=host_budget(position))
    # power curves
    for position in (CANARY, LATER):
        for multiple in ERROR_MULTIPLES:
            add('bakes', ('power-errors', position, multiple), n(400), catalog='default', canary=dict(GOOD, e5=0.01 * multiple),
                baseline=GOOD, rps=5, baseline_hosts=baseline_hosts(position), interval=15, bake_time=120, budget=host_budget(position))
        for multiple in LATENCY_MULTIPLES:
            add('bakes', ('power-latency', position, multiple), n(400), catalog='default', canary=dict(GOOD, median=50.0 * multiple),
                baseline=GOOD, rps=5, baseline_hosts=baseline_hosts(position), interval=15, bake_time=120, budget=host_budget(position))
    return jobs


BAD_CASES = [
    ('20 % errors', dict(GOOD, e5=0.2)),
    ('3x latency', dict(GOOD, median=150.0)),
    ('4 % vs 1 % errors', dict(GOOD, e5=0.04)),
    ('2x latency', dict(GOOD, median=100.0)),
    ('p95 above 1000 ms (median 700 ms)', dict(GOOD, median=700.0)),
    ('errors on a zero-error baseline (2 % vs 0 %)', 'kayenta'),
]
TARGET_CASE = '4 % vs 1 % errors'
ERROR_MULTIPLES = (1.5, 2, 3, 4, 5, 6, 8)
LATENCY_MULTIPLES = (1.25, 1.5, 1.75, 2, 2.5, 3)


def _run(item):
    kind, job = item
    return (run_bakes if kind == 'bakes' else run_rollouts)(job)


def main():
    started = time.perf_counter()
    jobs = plan()
    for _kind, job in jobs:
        if job.get('canary') == 'kayenta':
            job['canary'], job['baseline'] = dict(GOOD, e5=0.02), dict(GOOD, e5=0.0)
    # the longest jobs first, so both workers finish together
    jobs.sort(key=lambda item: -item[1]['count'] * (FLEET if item[0] == 'rollouts' else 1) * item[1]['bake_time'] / item[1]['interval'])
    collected = {}
    with multiprocessing.Pool(int(os.environ.get('BENCH_GATE_WORKERS', '2'))) as pool:
        for key, out in pool.imap_unordered(_run, jobs):
            collected.setdefault(key, []).extend(out)
    elapsed = time.perf_counter() - started
    ok = report(collected)
    total_bakes = sum(len(v) for k, v in collected.items() if k[0] != 'rollout')
    total_bakes += sum(len(v) * FLEET for k, v in collected.items() if k[0] == 'rollout')
    print('\n%d gate runs (at most; a rollout stops at its first abort) in %.0f s' % (total_bakes, elapsed))
    charts(collected)
    return 0 if ok else 1


def rate(outcomes):
    events = sum(1 for o in outcomes if o[0] != 'pass')
    return events, len(outcomes)


def _fmt_rate(events, trials):
    return '%6.3f %% (%d/%d; <= %.3f %% at 95 %%)' % (100.0 * events / trials, events, trials, 100 * upper_bound(events, trials))


def _fmt_interval(events, trials):
    low, high = interval(events, trials)
    return '%.2f %% (%d/%d; 95 %% CI %.2f-%.2f %%)' % (100.0 * events / trials, events, trials, 100 * low, 100 * high)


def interval(events, trials, confidence=0.95):
    """Two-sided Clopper-Pearson interval of a rate."""
    tail = (1 - confidence) / 2
    low = 0.0 if events == 0 else 1 - upper_bound(trials - events, trials, 1 - tail)
    return low, upper_bound(events, trials, 1 - tail)


def _looks(outcomes):
    """Share caught, and the looks after min_samples until the verdict of the caught ones (median, 90th percentile)."""
    caught = [o for o in outcomes if o[0] == 'fail']
    looks = sorted(o[2] for o in caught)
    median = looks[len(looks) // 2] if looks else None
    p90 = looks[int(len(looks) * 0.9)] if looks else None
    return len(caught) / float(len(outcomes)), median, p90


def report(data):
    ok = True
    print('1. Good canaries (same as the baseline), per host: false-fail rate')
    print('   budget per host: host 1 %.4g (1/2 of a rollout budget of %.2g; 19 baseline hosts), host %d %.3g (1/%d of it; no baseline'
          ' host left), large %.2g' % (host_budget(1), ROLLOUT_BUDGET, FLEET, host_budget(FLEET), FLEET * (FLEET + 1), LARGE_BUDGET))
    budgets = {'host 1': host_budget(1), 'host 20': host_budget(FLEET), 'large': LARGE_BUDGET}
    for catalog in CATALOGS:
        print('   catalog: %s' % catalog)
        for key in sorted(k for k in data if k[0] == 'null' and k[1] == catalog):
            events, trials = rate(data[key])
            flag = ''
            if _significant(events, trials, budgets[key[2]]):
                flag = '  ABOVE BUDGET'
                ok = False
            print('   %-8s %-52s %s%s' % (key[2], key[3], _fmt_rate(events, trials), flag))
    print('\n   traffic x look interval (bake 120 s), budget %.2g per host:' % LARGE_BUDGET)
    for catalog in CATALOGS:
        for key in sorted(k for k in data if k[0] == 'sweep' and k[1] == catalog):
            events, trials = rate(data[key])
            if _significant(events, trials, LARGE_BUDGET):
                ok = False
            print('   %-10s %5.1f req/s, a look every %2d s: %s' % (catalog, key[2], key[3], _fmt_rate(events, trials)))
        for key in sorted(k for k in data if k[0] == 'looks' and k[1] == catalog):
            events, trials = rate(data[key])
            if _significant(events, trials, LARGE_BUDGET):
                ok = False
            looks = key[2] // key[3] + 1
            print('   %-10s 5 req/s, bake %3d s, a look every %d s (%d looks): %s' % (catalog, key[2], key[3], looks, _fmt_rate(events, trials)))
    print('\n2. Good releases, %d-host serial rollouts (baseline: the hosts still on the old version; host k\'s gate gets'
          ' 1 / (k (k + 1)) of the rollout budget): false-abort rate per rollout' % FLEET)
    for key in sorted(k for k in data if k[0] == 'rollout'):
        aborted = data[key]
        events = sum(1 for a in aborted if a is not None)
        budget = key[2]
        spent = sum(host_budget(k, budget) for k in range(1, FLEET + 1))
        flag = ''
        if _significant(events, len(aborted), budget):
            flag = '  ABOVE BUDGET'
            ok = False
        hosts = sorted(a for a in aborted if a is not None)
        print('   %-10s rollout budget %.2g (the %d gates spend %.3g): %s; aborted at host %s%s'
              % (key[1], budget, FLEET, spent, _fmt_interval(events, len(aborted)), ', '.join(map(str, hosts)) or '-', flag))
    print('\n3. Bad canaries, 5 req/s per host, 1 %% baseline errors, bake 120 s, a look every 15 s, min_samples 20, rollout budget %.2g:'
          ' on host 1 (the canary; budget %.3g, 19 baseline hosts) and host %d (budget %.3g, %d baseline hosts)'
          % (ROLLOUT_BUDGET, host_budget(CANARY), LATER, host_budget(LATER), baseline_hosts(LATER)))
    print('   %-10s %-46s %-20s %-20s' % ('', '', 'host 1: caught,', 'host %d: caught,' % LATER))
    print('   %-10s %-46s %-20s %-20s' % ('catalog', 'case', 'looks (median, p90)', 'looks (median, p90)'))
    for catalog in CATALOGS:
        for label, _canary in BAD_CASES:
            cells = []
            for position in (CANARY, LATER):
                caught, median, p90 = _looks(data[('bad', catalog, position, label)])
                cells.append('%5.1f %%, %s, %s' % (100 * caught, median, p90))
            print('   %-10s %-46s %-20s %-20s' % (catalog, label, cells[0], cells[1]))
            if catalog == 'default':
                caught, median, _p90 = _looks(data[('bad', catalog, CANARY, label)])
                target = TARGETS.get(label)
                if target and not target(caught, median):
                    print('   %-10s %-46s TARGET MISSED on host 1: %s' % ('', '', TARGET_TEXT[label]))
                    ok = False
    by_position = ['host %d (budget %.2g, %d baseline hosts) %.1f %%' % (k, host_budget(k), baseline_hosts(k),
                                                                         100 * _caught(data[('bad', 'default', k, TARGET_CASE)]))
                   for k in POSITIONS]
    print('   %s caught, by position (default catalog):' % TARGET_CASE)
    for i in range(0, len(by_position), 3):
        print('     ' + '; '.join(by_position[i:i + 3]))
    canary = host_budget(CANARY)
    spent = canary * 0.75 * BASELINE_SHARE * (1 - ANYTIME_SHARE)
    print('   4 % vs 1 % errors in 600 requests, baseline known exactly, the most powerful test (one exact test at the end):')
    print('     at host 1\'s whole budget %.3g: %.1f %% caught; the gate gives its final errors-vs-baseline test %.3g (errors weigh 3 of'
          ' 4, the rest is early stopping, the absolute limit and latency): at most %.1f %%'
          % (canary, 100 * best_power(600, 0.01, 0.04, canary), spent, 100 * best_power(600, 0.01, 0.04, spent)))
    later = host_budget(LATER) * 0.75 * BASELINE_SHARE * (1 - ANYTIME_SHARE)
    print('     on host %d that test gets %.2g: at most %.1f %%' % (LATER, later, 100 * best_power(600, 0.01, 0.04, later)))
    for position in (CANARY, LATER):
        print('\n   power on host %d (default catalog): share caught within the bake' % position)
        errors = ['%gx %5.1f %%' % (m, 100 * _caught(data[('power-errors', position, m)])) for m in ERROR_MULTIPLES]
        print('   canary errors / 1 %:  ' + '  '.join(errors))
        latency = ['%gx %5.1f %%' % (m, 100 * _caught(data[('power-latency', position, m)])) for m in LATENCY_MULTIPLES]
        print('   canary latency / baseline: ' + '  '.join(latency))
    return ok


# The issue's detection targets, on the first host of a rollout (the canary).
TARGETS = {
    '20 % errors': lambda caught, median: caught >= 0.95 and median is not None and median <= 1,
    '3x latency': lambda caught, median: caught >= 0.95 and median is not None and median <= 2,
    TARGET_CASE: lambda caught, median: caught >= 0.95,
}
TARGET_TEXT = {
    '20 % errors': 'verdict at the first look after min_samples (median)',
    '3x latency': 'verdict within 2 looks',
    TARGET_CASE: 'caught in 95 % of 120 s bakes',
}


def _tail(x, n, rate):
    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(rate) + (n - k) * math.log1p(-rate))
               for k in range(x, n + 1))


def best_power(n, null_rate, rate, level):
    """Power of the most powerful test (Neyman-Pearson: the binomial tail, not randomised) of null_rate against rate at level."""
    cut = next(c for c in range(n + 1) if _tail(c, n, null_rate) <= level)
    return _tail(cut, n, rate)


def level_for(n, null_rate, rate, power):
    """The smallest level at which that test reaches ``power``."""
    cut = max(c for c in range(n + 1) if _tail(c, n, rate) >= power)
    return _tail(cut, n, null_rate)


def _caught(outcomes):
    return sum(1 for o in outcomes if o[0] == 'fail') / float(len(outcomes))


def _significant(events, trials, budget):
    """Whether a measured rate is above its budget beyond chance (binomial, one-sided 0.1 %)."""
    if events <= trials * budget:
        return False
    tail = sum(math.exp(math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * math.log(budget)
                        + (trials - k) * math.log1p(-budget)) for k in range(events, trials + 1))
    return tail < 0.001


def charts(data):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        import matplotlib.ticker  # noqa: F401  (used as matplotlib.ticker)
    except ImportError:
        print('matplotlib is not installed: no charts (pip install -r requirements-bench.txt)')
        return
    os.makedirs(RESULTS, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    for catalog, marker in (('default', 'o'), ('4 metrics', 's')):
        points = []
        for key, outcomes in data.items():
            if key[0] in ('sweep', 'looks') and key[1] == catalog:
                bake_time, interval = (120, key[3]) if key[0] == 'sweep' else (key[2], key[3])
                looks = int(math.ceil(bake_time / float(interval))) + 1
                events, trials = rate(outcomes)
                points.append((looks, events / float(trials), key))
        points.sort()
        axes[0].scatter([p[0] for p in points], [100 * p[1] for p in points], marker=marker, label='gate, %s catalog' % catalog)
    axes[0].axhline(100 * LARGE_BUDGET, color='red', linestyle='--', label='budget per host (%.0f %%)' % (100 * LARGE_BUDGET))
    axes[0].set_xscale('log')
    axes[0].set_xticks([3, 5, 9, 13, 25, 61])
    axes[0].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set_xlabel('looks per bake')
    axes[0].set_ylabel('good canaries failed (%)')
    axes[0].set_title('False aborts vs number of looks (0.5-50 req/s)')
    axes[0].legend(fontsize=8)
    for position, style in ((CANARY, '-'), (LATER, '--')):
        axes[1].plot(ERROR_MULTIPLES, [100 * _caught(data[('power-errors', position, m)]) for m in ERROR_MULTIPLES], 'o' + style,
                     color='C0', label='error rate (x 1 %%), host %d' % position)
        axes[1].plot(LATENCY_MULTIPLES, [100 * _caught(data[('power-latency', position, m)]) for m in LATENCY_MULTIPLES], 's' + style,
                     color='C1', label='latency (x baseline), host %d' % position)
    axes[1].axhline(95, color='grey', linestyle=':')
    axes[1].set_xlabel('canary / baseline')
    axes[1].set_ylabel('bad canaries caught within 120 s (%)')
    axes[1].set_title('Power, 5 req/s, default catalog, rollout budget %.2g' % ROLLOUT_BUDGET)
    axes[1].legend(fontsize=8)
    axes[2].plot(POSITIONS, [100 * _caught(data[('bad', 'default', k, TARGET_CASE)]) for k in POSITIONS], 'o-', label=TARGET_CASE)
    axes[2].axhline(95, color='grey', linestyle=':')
    axes[2].set_xticks(POSITIONS)
    axes[2].set_xlabel('host position in the rollout (budget 1 / (k (k + 1)) of %.2g; %d - k baseline hosts)' % (ROLLOUT_BUDGET, FLEET))
    axes[2].set_ylabel('caught within 120 s (%)')
    axes[2].set_title('Detection by position, 5 req/s, default catalog')
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(RESULTS, 'gate-stats.png')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print('chart: %s' % os.path.relpath(path, ROOT))


if __name__ == '__main__':
    sys.exit(main())
