"""Release impact and speed, measured in the lab under steady customer traffic.

What customers see during a good rollout (and during a naive in-place deploy
of the same fleet, same run), how fast a bad canary is detected and reverted,
the controller's own overhead per host, reconcile of many hosts against one,
and the gate's cost per evaluation. Each figure is repeated (BENCH_RUNS,
default 3; ``--quick``: 1 run, shorter bake, smaller reconcile fleet) and
reported as median and spread with the machine load.

Writes bench/results/release-<UTC time>.json, latest.json, summary.md and a
PNG chart per rollout in bench/results/charts/. Needs matplotlib
(requirements-bench.txt; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / 'bench'), str(ROOT / 'tools'), str(ROOT / 'tests'), str(ROOT / '.build')]

import build_collection  # noqa: E402

build_collection.sync()

import release_report as rr  # noqa: E402

from lab.fleet import APP, Lab  # noqa: E402
from lab.traffic import Traffic  # noqa: E402
from support.ansible_runner import run_playbook  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
PLAYBOOKS = ROOT / 'playbooks'
NAIVE = ROOT / 'bench' / 'naive_deploy.yml'
SITE = APP + '-%s'

# The lab as the bench runs it: slower than the tests' FAST values so that
# the physical waits have a realistic shape (AWS and IIS are slower still).
LAB = dict(hosts=4, drain_seconds=5.0, cold_start_s=5.0, health_interval=5.0)
RPS = 20.0
BAKE = dict(full=20, quick=8)
INTERVAL = 3.0
MIN_SAMPLES = 20
FIXED_BAKE = 120.0
ROLLOUT = {
    'rollout_gate_interval': INTERVAL,
    'rollout_warmup_timeout': 60,
    'rollout_warmup_first_request_timeout': 30,
    'rollout_capacity_delay': 1,
    # The shared 2-core machine answers in 100+ ms under load: a 100 ms
    # warm-up threshold would fail good builds for reasons of the bench.
    'rollout_warmup_latency_threshold_ms': 1000,
    'rollout_metrics': [
        {'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'max_ratio': 2, 'min_samples': MIN_SAMPLES},
        {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 1000, 'max_ratio': 2, 'min_samples': MIN_SAMPLES},
    ],
}
BASE_LATENCY_MS = 5.0  # packages.DEFAULTS: what version 1 and the good builds answer in


def wall_of_iso(text):
    return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()


class Bench:
    """One lab, one rollout after another; every run keeps its raw records."""

    def __init__(self, lab, tmp, quick, label):
        self.lab = lab
        self.tmp = Path(tmp)
        self.quick = quick
        self.label = label
        self.version = 1
        self.bake = BAKE['quick' if quick else 'full']

    def next_version(self):
        self.version += 1
        return str(self.version)

    def release(self, version=None, checksum=None, **behaviour):
        version = version or self.next_version()
        build = self.lab.build(version, **behaviour)
        return {'rollout_version': version, 'rollout_package_url': build['url'],
                'rollout_package_checksum': checksum or build['checksum']}

    def play(self, playbook, variables, steady_s, env=None, tail_s=2.0, rps=RPS):
        """Traffic for steady_s, the playbook, tail_s more traffic; every record kept."""
        stamp = time.monotonic_ns()
        report = self.tmp / ('report-%d.json' % stamp)
        var_file = self.tmp / ('vars-%d.json' % stamp)
        var_file.write_text(json.dumps(dict(variables, rollout_report_path=str(report))), encoding='utf-8')
        log_from = len(self.lab.plane.access_log)
        load_before = os.getloadavg()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        traffic = Traffic(self.lab.plane.url, rps, self.lab.ca.ca_path, 'app.example.com').start()
        wall0 = time.time() - (time.monotonic() - traffic.t0)
        try:
            time.sleep(steady_s)
            play_start = time.time()
            run = run_playbook(playbook, inventory=self.lab.inventory_path, env=env, timeout=1800,
                               args=['-e', '@%s' % self.lab.vars_path, '-e', '@%s' % var_file])
            play_end = time.time()
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            time.sleep(tail_s)
        finally:
            traffic.stop()
        with traffic._lock:  # pylint: disable=protected-access
            customers = [(wall0 + offset, ok, latency, status) for offset, ok, latency, status in traffic.records]
        access = [(wall_of_iso(e['time']), e['target'], e['status']) for e in self.lab.plane.access_log[log_from:]]
        return dict(rc=run.rc, records=run.records, stdout_tail=run.stdout[-4000:], customers=customers, access=access,
                    wall0=wall0, play_start=play_start, play_end=play_end, end=time.time(),
                    report=json.loads(report.read_text()) if report.exists() else None,
                    cpu_s=round(cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime, 2),
                    load=dict(before=[round(v, 2) for v in load_before], after=[round(v, 2) for v in os.getloadavg()]))


# -- figures of one run ---------------------------------------------------------

def impact(run):
    """Customers during the rollout (first phase start to last phase end) vs. the steady state before it."""
    spans = rr.phases(run['records'])
    if spans:
        start, end = min(p['start'] for p in spans), max(p['end'] for p in spans)
    else:
        start, end = run['play_start'], run['play_end']
    steady = rr.window_stats(run['customers'], run['wall0'], run['play_start'])
    during = rr.window_stats(run['customers'], start, end)
    ratio = (during['p99_ms'] / steady['p99_ms']) if during['p99_ms'] and steady['p99_ms'] else None
    return dict(steady=steady, during=during, p99_ratio=None if ratio is None else round(ratio, 2), window=[start, end])


def overhead(run, bake):
    """Per host of a good rollout: wall time from its drain to its promotion
    event, the physical waits inside it, and the rest (the controller's own)."""
    spans = rr.task_spans(run['records'])
    hosts = sorted({s['host'] for s in spans if rr.phase_of(s['task']) == 'drain'})
    out = []
    for host in hosts:
        mine = [s for s in spans if s['host'] == host]
        drain = rr.find(mine, 'Drain the host from the load balancer')
        last = rr.find(mine, 'Record the promotion', after=drain['start']) if drain else None
        if last is None:
            continue
        waits = {}
        for key, suffix in (('drain', 'Drain the host from the load balancer'), ('warm', 'Warm up the new site off-line until it is fast'),
                            ('admit', 'Admit the host to the load balancer and wait until healthy'),
                            ('bake', 'Bake in production and let Elasticsearch decide')):
            span = rr.find(mine, suffix, after=drain['start'])
            waits[key] = (span or {}).get('elapsed') or 0.0
        inside = [s for s in mine if drain['start'] <= s['start'] and s['end'] <= last['end']]
        modules = [s for s in inside if s['elapsed'] is not None]
        wall = last['end'] - drain['start']
        physical = sum(waits.values())
        out.append(dict(host=host, wall=round(wall, 2), physical=round(physical, 2), overhead=round(wall - physical, 2),
                        waits={k: round(v, 2) for k, v in waits.items()}, tasks=len(inside), module_tasks=len(modules),
                        per_task_overhead=[round(s['end'] - s['start'] - s['elapsed'], 3) for s in modules],
                        module_elapsed={s['task'].split(' : ')[-1]: round(s['elapsed'], 3) for s in modules}))
    return out


def detection(run, lab):
    """The canary: admitted -> enough samples -> the gate's verdict; then its revert, step by step."""
    spans = rr.task_spans(run['records'])
    admit = rr.find(spans, 'Admit the host to the load balancer and wait until healthy')
    gate = rr.find(spans, 'Bake in production and let Elasticsearch decide')
    if admit is None or gate is None:
        return dict(error='no admission or gate recorded', rc=run['rc'])
    host = admit['host']
    target = lab.hosts[host]['instance_id']
    mine = sorted(t for t, target_id, _status in run['access'] if target_id == target and t >= admit['end'])
    samples_at = mine[MIN_SAMPLES - 1] - admit['end'] if len(mine) >= MIN_SAMPLES else None
    detect = gate['end'] - admit['end']
    out = dict(host=host, verdict=gate['status'], detect_s=round(detect, 2), samples_s=None if samples_at is None else round(samples_at, 2),
               after_samples_s=None if samples_at is None else round(detect - samples_at, 2),
               intervals_after_samples=None if samples_at is None else round((detect - samples_at) / INTERVAL, 2),
               gate_elapsed=gate['elapsed'])
    out['revert'] = revert_split(spans, host, gate['end'])
    return out


def revert_split(spans, host, failed_at):
    """The rescue revert of one host: its physical parts and the rest."""
    mine = [s for s in spans if s['host'] == host and s['start'] >= failed_at - 0.01]
    steps = {}
    for suffix, key in rr.REVERT_STEPS:
        span = rr.find(mine, suffix)
        if span is None:
            return dict(error='revert step missing: %s' % key)
        steps[key] = span
    back = steps['admit']['end']
    total = back - failed_at
    api = (steps['deregister']['elapsed'] or 0) + (steps['swap']['elapsed'] or 0)
    warm = steps['warm']['elapsed'] or 0
    admission = steps['admit']['elapsed'] or 0
    return dict(total_s=round(total, 2), api_s=round(api, 2), draining_s=0.0, warm_s=round(warm, 2), admission_s=round(admission, 2),
                overhead_s=round(total - api - warm - admission, 2), tasks=sum(1 for s in mine if s['end'] <= back))


def reconcile_span(run):
    """From the first 'read the site' of the reconcile play to the last host admitted again."""
    spans = rr.task_spans(run['records'])
    reads = [s for s in spans if s['task'].endswith('Read which application site runs on the host now')]
    if not reads:
        return dict(error='no reconcile recorded', rc=run['rc'])
    start = min(s['start'] for s in reads)
    admits = [s for s in spans if s['task'].endswith('Admit the host again and wait until healthy') and s['start'] >= start]
    outcomes = {h: e.get('outcome') for h, e in ((run['report'] or {}).get('hosts') or {}).items()}
    reconciled = sorted(h for h, o in outcomes.items() if o == 'reconciled')
    end = max((s['end'] for s in admits), default=start)
    per_host = [round(s['end'] - start, 2) for s in admits]
    return dict(seconds=round(end - start, 2), hosts=len(reconciled), admitted=len(admits), first_back_s=min(per_host, default=None),
                last_back_s=max(per_host, default=None))


# -- scenarios ---------------------------------------------------------------------

def chart(run, name, title, marks=()):
    path = RESULTS / 'charts' / ('%s.png' % name)
    path.parent.mkdir(parents=True, exist_ok=True)
    spans = rr.phases(run['records'])
    rr.chart(str(path), title, run['customers'], spans, run['wall0'], run['end'], marks=marks)
    return path.name


def rollouts(bench, runs, steady_s, out, saved):
    """Good rollout then naive in-place deploy, per run."""
    for index in range(runs):
        good_vars = dict(ROLLOUT, rollout_bake_seconds=bench.bake, **bench.release())
        good = bench.play(PLAYBOOKS / 'deploy.yml', good_vars, steady_s)
        naive = bench.play(NAIVE, bench.release(), steady_s)
        entry = dict(run=index + 1, good=dict(rc=good['rc'], result=(good['report'] or {}).get('result'), impact=impact(good),
                                              overhead=overhead(good, bench.bake), load=good['load'], cpu_s=good['cpu_s'],
                                              chart=chart(good, 'good-%d' % (index + 1), 'Canary rollout, 4 hosts (run %d)' % (index + 1))),
                     naive=dict(rc=naive['rc'], impact=impact(naive), load=naive['load'], cpu_s=naive['cpu_s'],
                                chart=chart(naive, 'naive-%d' % (index + 1), 'Naive in-place deploy, 4 hosts (run %d)' % (index + 1))))
        if good['rc'] != 0 or naive['rc'] != 0:
            entry['stdout_tail'] = {'good': good['stdout_tail'], 'naive': naive['stdout_tail']}
            print(good['stdout_tail'] if good['rc'] else naive['stdout_tail'], flush=True)
        out.append(entry)
        print('  rollout run %d: canary %d failed / p99 %s ms (steady %s); naive %d failed, longest %.1f s' % (
            index + 1, entry['good']['impact']['during']['failed'], entry['good']['impact']['during']['p99_ms'],
            entry['good']['impact']['steady']['p99_ms'], entry['naive']['impact']['during']['failed'],
            entry['naive']['impact']['during']['longest_failure_s']), flush=True)
        saved()


def detections(bench, runs, steady_s, out, saved):
    # Real errors come one request at a time, not evenly spread: time to verdict includes bad luck.
    kinds = (('errors', dict(error_rate=0.2, error_pattern='random')), ('latency', dict(latency_ms=BASE_LATENCY_MS * 3)))
    for index in range(runs):
        for kind, behaviour in kinds:
            variables = dict(ROLLOUT, rollout_bake_seconds=FIXED_BAKE, **bench.release(**behaviour))
            run = bench.play(PLAYBOOKS / 'deploy.yml', variables, steady_s)
            found = detection(run, bench.lab)
            marks = []
            if 'detect_s' in found:
                admit = rr.find(rr.task_spans(run['records']), 'Admit the host to the load balancer and wait until healthy')
                marks = [(admit['end'], 'admitted')]
                if found['samples_s'] is not None:
                    marks.append((admit['end'] + found['samples_s'], '%d samples' % MIN_SAMPLES))
                marks.append((admit['end'] + found['detect_s'], 'verdict'))
            found.update(kind=kind, run=index + 1, rc=run['rc'], result=(run['report'] or {}).get('result'), load=run['load'], cpu_s=run['cpu_s'],
                         impact=impact(run),
                         chart=chart(run, 'bad-%s-%d' % (kind, index + 1), 'Bad canary (%s), reverted (run %d)' % (kind, index + 1), marks))
            out.append(found)
            print('  detection run %d (%s): verdict after %s s (samples at %s s), revert %s' % (
                index + 1, kind, found.get('detect_s'), found.get('samples_s'), (found.get('revert') or {}).get('total_s')), flush=True)
            saved()


def put_on(lab, name, site, build):
    """Make ``site`` (content from ``build``) the running site of host ``name``, directly in the lab."""
    host = lab.hosts[name]
    sim = host['sim']
    path = 'D:\\sites\\%s' % site
    with sim.lock:
        sim.content[path] = dict(files=['manifest.json'], marker=dict(checksum=build['checksum'], size=build['size']))
        if site not in sim.pools:
            sim.add_pool(site, state='Started', start_mode='AlwaysRunning', idle_timeout=0)
        if site not in sim.sites:
            sim.add_site(site, [dict(protocol='https', ip='*', port=443, host_header='')], physical_path=path, app_pool=site,
                         state='Stopped', preload_enabled=True)
        for other in [s['name'] for s in sim.sites.values() if s['state'] == 'Started' and s['name'] != site]:
            sim.apply({'op': 'stop_site', 'name': other})
        sim.apply({'op': 'start_site', 'name': site})
    lab._warm(host['address'])  # pylint: disable=protected-access


def wait_healthy(lab, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(lab.checker.is_healthy(lab.group_arn, h['instance_id']) for h in lab.hosts.values()):
            return
        time.sleep(0.2)
    raise RuntimeError('lab hosts did not become healthy in %d s' % timeout)


def reconciles(lab, tmp, runs, quick, out, saved):
    """N hosts on the new version (put there directly), a canary that fails
    its download: the reconcile play reverts them all. N = 1 and all but one."""
    bench = Bench(lab, tmp, quick, 'reconcile')
    new = lab.build('2', cold_start_s=0.1)
    site = SITE % '2'
    hosts = sorted(lab.hosts, key=rr._host_key)  # pylint: disable=protected-access
    forks = [('20', runs)] if quick else [('20', runs), ('5', 1)]
    plan = [(1, '20', runs)] + [(len(hosts) - 1, f, n) for f, n in forks]
    for count, fork_count, repeat in plan:
        for index in range(repeat):
            threads = [threading.Thread(target=put_on, args=(lab, name, site, new)) for name in hosts[1:1 + count]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wait_healthy(lab)
            variables = dict(ROLLOUT, rollout_bake_seconds=5, rollout_allow_mixed=True, rollout_version='2', rollout_package_url=new['url'],
                             rollout_package_checksum='sha256:' + '0' * 64)
            run = bench.play(PLAYBOOKS / 'deploy.yml', variables, 3.0, env={'ANSIBLE_FORKS': fork_count}, rps=RPS)
            found = reconcile_span(run)
            found.update(on_new=count, forks=int(fork_count), run=index + 1, rc=run['rc'], load=run['load'], cpu_s=run['cpu_s'],
                         chart=chart(run, 'reconcile-%d-forks%s-%d' % (count, fork_count, index + 1),
                                     'Reconcile of %d host(s), forks=%s (run %d)' % (count, fork_count, index + 1)))
            running = {h['running'][0] if h['running'] else '' for h in lab.state()['hosts'].values()}
            found['converged'] = running == {SITE % '1'}
            out.append(found)
            print('  reconcile %d host(s) forks %s run %d: %s s (converged %s)' % (count, fork_count, index + 1, found.get('seconds'),
                                                                                   found['converged']), flush=True)
            saved()
            wait_healthy(lab)


def gate_cost():
    import bench_es_health_gate  # pylint: disable=import-outside-toplevel
    return [dict(size=r['size'], requests=r['requests'], bytes=r['bytes'], ms=round(r['seconds'] * 1000, 1))
            for r in (bench_es_health_gate.measure(size) for size in bench_es_health_gate.SIZES)]


# -- the report ---------------------------------------------------------------------

def summarise(data):
    good = [r['good'] for r in data['rollouts']]
    naive = [r['naive'] for r in data['rollouts']]
    s = {}
    s['good_failed'] = rr.spread([g['impact']['during']['failed'] for g in good])
    s['good_longest'] = rr.spread([g['impact']['during']['longest_failure_s'] for g in good])
    s['good_p99'] = rr.spread([g['impact']['during']['p99_ms'] for g in good])
    s['steady_p99'] = rr.spread([g['impact']['steady']['p99_ms'] for g in good])
    s['p99_ratio'] = rr.spread([g['impact']['p99_ratio'] for g in good])
    s['naive_failed'] = rr.spread([n['impact']['during']['failed'] for n in naive])
    for key, runs_ in (('good', good), ('naive', naive)):
        s[key + '_5xx'] = rr.spread([r['impact']['during'].get('http_5xx') for r in runs_])
        s[key + '_no_answer'] = rr.spread([r['impact']['during'].get('no_answer') for r in runs_])
    s['good_failing'] = rr.spread([g['impact']['during']['failing_seconds'] for g in good])
    s['naive_failing'] = rr.spread([n['impact']['during']['failing_seconds'] for n in naive])
    s['cpu_per_host'] = rr.spread([g['cpu_s'] / LAB['hosts'] for g in good if g['rc'] == 0])
    s['naive_cpu_per_host'] = rr.spread([n['cpu_s'] / LAB['hosts'] for n in naive if n['rc'] == 0])
    s['naive_longest'] = rr.spread([n['impact']['during']['longest_failure_s'] for n in naive])
    s['naive_p99'] = rr.spread([n['impact']['during']['p99_ms'] for n in naive])
    s['naive_p99_ratio'] = rr.spread([n['impact']['p99_ratio'] for n in naive])
    hosts = [h for g in good for h in g['overhead']]
    s['host_wall'] = rr.spread([h['wall'] for h in hosts])
    s['host_overhead'] = rr.spread([h['overhead'] for h in hosts])
    s['host_tasks'] = rr.spread([h['tasks'] for h in hosts])
    s['task_overhead'] = rr.spread([x for h in hosts for x in h['per_task_overhead']])
    for kind in ('errors', 'latency'):
        found = [d for d in data['detections'] if d['kind'] == kind and 'detect_s' in d]
        s['detect_%s' % kind] = rr.spread([d['detect_s'] for d in found])
        s['samples_%s' % kind] = rr.spread([d['samples_s'] for d in found])
        s['intervals_%s' % kind] = rr.spread([d['intervals_after_samples'] for d in found])
        s['caught_%s' % kind] = '%d/%d' % (sum(1 for d in found if d['verdict'] == 'failed' and d['result'] == 'aborted'),
                                           len([d for d in data['detections'] if d['kind'] == kind]))
    reverts = [d['revert'] for d in data['detections'] if 'total_s' in (d.get('revert') or {})]
    for key in ('total_s', 'api_s', 'draining_s', 'warm_s', 'admission_s', 'overhead_s', 'tasks'):
        s['revert_' + key] = rr.spread([r[key] for r in reverts])
    recon = data['reconciles']
    one = [r['seconds'] for r in recon if r.get('on_new') == 1 and 'seconds' in r]
    many = [r for r in recon if r.get('on_new', 1) > 1 and 'seconds' in r]
    s['reconcile_1'] = rr.spread(one)
    for forks in sorted({r['forks'] for r in many}):
        s['reconcile_many_forks%d' % forks] = rr.spread([r['seconds'] for r in many if r['forks'] == forks])
    s['reconcile_many_hosts'] = max((r['on_new'] for r in many), default=0)
    return s


def table(data):
    s = data['summary']
    lab = data['lab']
    rows = []

    def ratio(a, b):
        return None if not a or not b or a.get('median') in (None, 0) or b.get('median') is None else b['median'] / a['median']

    rows.append(('1. canary rollout, 4 hosts: failed requests', rr.fmt(s['good_failed'], digits=0), '0', _met(s['good_failed'], 0)))
    rows.append(('1. naive in-place deploy, 4 hosts: failed requests', rr.fmt(s['naive_failed'], digits=0), '', None))
    rows.append(('1. ... of which HTTP 5xx / no answer in 10 s: canary | naive',
                 '%s / %s | %s / %s' % (rr.fmt(s['good_5xx'], digits=0), rr.fmt(s['good_no_answer'], digits=0),
                                        rr.fmt(s['naive_5xx'], digits=0), rr.fmt(s['naive_no_answer'], digits=0)), '', None))
    rows.append(('1. longest stretch of failures: canary / naive', '%s / %s' % (rr.fmt(s['good_longest'], ' s'), rr.fmt(s['naive_longest'], ' s')),
                 '', None))
    rows.append(('1. longest run of seconds with a failed request: canary / naive',
                 '%s / %s' % (rr.fmt(s['good_failing'], ' s', 0), rr.fmt(s['naive_failing'], ' s', 0)), '', None))
    rows.append(('1. p99 steady / during canary rollout', '%s / %s' % (rr.fmt(s['steady_p99'], ' ms'), rr.fmt(s['good_p99'], ' ms')), '', None))
    rows.append(('1. p99 during rollout / steady: canary', rr.fmt(s['p99_ratio'], 'x', 2), '<= 1.5x', _met(s['p99_ratio'], 1.5)))
    rows.append(('1. p99 during rollout / steady: naive', rr.fmt(s['naive_p99_ratio'], 'x', 2), '', None))
    for kind, what in (('errors', '20 % errors'), ('latency', 'latency x3')):
        rows.append(('2. detect a bad canary (%s): admission -> verdict' % what, rr.fmt(s['detect_' + kind], ' s'),
                     'vs %d s fixed bake' % FIXED_BAKE, None))
        rows.append(('2. ... of which after %d samples (gate intervals of %.0f s)' % (MIN_SAMPLES, INTERVAL),
                     rr.fmt(s['intervals_' + kind], ' intervals', 2), '<= 3 intervals' if kind == 'errors' else '',
                     _met(s['intervals_' + kind], 3) if kind == 'errors' else None))
        rows.append(('2. caught and reverted (%s)' % what, s['caught_' + kind], 'all', s['caught_' + kind].split('/')[0] == s['caught_' + kind].split('/')[1]))
    rows.append(('3. revert one host: verdict -> admitted again', rr.fmt(s['revert_total_s'], ' s'), '', None))
    for key, what in (('api_s', 'API calls (deregister, site swap)'), ('draining_s', 'draining (not waited for)'),
                      ('warm_s', 'warm-up of the fallback'), ('admission_s', 'health-check admission'),
                      ('overhead_s', 'the tool\'s own overhead (%s tasks)' % rr.fmt(s['revert_tasks'], digits=0))):
        rows.append(('3. ... ' + what, rr.fmt(s['revert_' + key], ' s'), '', None))
    rows.append(('4. good rollout, wall time per host', rr.fmt(s['host_wall'], ' s'), '', None))
    rows.append(('4. controller overhead per host (wall - physical waits)', rr.fmt(s['host_overhead'], ' s'), '<= 3 s',
                 _met(s['host_overhead'], 3)))
    rows.append(('4. ... tasks per host / Ansible cost per module task', '%s / %s' % (rr.fmt(s['host_tasks'], digits=0), rr.fmt(s['task_overhead'], ' s', 2)),
                 '', None))
    rows.append(('4. controller CPU per host, whole run / naive deploy (CPU s, load-independent)',
                 '%s / %s' % (rr.fmt(s['cpu_per_host'], ' s'), rr.fmt(s['naive_cpu_per_host'], ' s')), '', None))
    many = s['reconcile_many_hosts']
    rows.append(('5. reconcile 1 host', rr.fmt(s['reconcile_1'], ' s'), '', None))
    for key in sorted(k for k in s if k.startswith('reconcile_many_forks')):
        forks = key[len('reconcile_many_forks'):]
        r = ratio(s['reconcile_1'], s[key])
        rows.append(('5. reconcile %d hosts, forks=%s (ratio to 1 host)' % (many, forks),
                     '%s (%s)' % (rr.fmt(s[key], ' s'), '-' if r is None else '%.2fx' % r), '<= 2x', None if r is None else r <= 2))
    for row in data['gate']:
        rows.append(('6. gate cost at %d canary docs: requests / response bytes' % row['size'], '%.0f / %.0f' % (row['requests'], row['bytes']),
                     'flat', None))
    if data['gate']:
        sizes = [r['bytes'] for r in data['gate']]
        flat = len({r['requests'] for r in data['gate']}) == 1 and max(sizes) <= 1.05 * min(sizes)
        rows[-1] = rows[-1][:3] + (flat,)
    head = ('# Release bench (%s)\n\n%s, %d run(s) per figure, machine load (1/5/15 min) %s at the start and %s at the end.\n'
            'Lab: %d hosts, drain %.0f s, cold start %.0f s, health checks every %.1f s (2 to pass); %d requests/s of customer traffic '
            'through the data plane; bake %d s, gate interval %.0f s, min_samples %d. See bench/results/README.md.\n\n'
            % (data['finished_at'], 'quick mode' if data['quick'] else 'full', data['runs'], data['load_start'], data['load_end'], lab['hosts'],
               lab['drain_seconds'], lab['cold_start_s'], lab['health_interval'], RPS, data['bake'], INTERVAL, MIN_SAMPLES))
    charts = '\nCharts: ' + ', '.join('`%s`' % c for c in data['charts']) + ' (in charts/).\n'
    return head + rr.markdown_table(rows) + charts


def _met(summary, limit):
    if not summary or summary.get('median') is None:
        return None
    return summary['median'] <= limit


def save(data, final=False):
    """Write the JSON, the summary and print it: after every part, so that an
    interrupted run keeps what it measured."""
    data['finished_at'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    data['complete'] = final
    data['load_end'] = [round(v, 2) for v in os.getloadavg()]
    data['summary'] = summarise(data)
    data['charts'] = sorted(p.name for p in (RESULTS / 'charts').glob('*.png'))
    text = table(data)
    (RESULTS / 'latest.json').write_text(json.dumps(data, indent=1, default=str) + '\n', encoding='utf-8')
    (RESULTS / 'summary.md').write_text(text, encoding='utf-8')
    if final:
        (RESULTS / ('release-%s.json' % data['started_at'].replace(':', '').replace('-', '').split('+')[0])).write_text(
            json.dumps(data, indent=1, default=str) + '\n', encoding='utf-8')
        print(text)


def main(argv=None):
    global RESULTS  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='1 run, short bake, 6-host reconcile')
    parser.add_argument('--only', default='rollouts,detections,reconciles,gate', help='comma-separated parts to run')
    parser.add_argument('--results', default=str(RESULTS), help='directory for the JSON, summary and charts (default bench/results)')
    args = parser.parse_args(argv)
    RESULTS = Path(args.results).resolve()
    runs = int(os.environ.get('BENCH_RUNS') or (1 if args.quick else 3))
    parts = set(args.only.split(','))
    steady = 5.0 if args.quick else 12.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(RESULTS / 'charts', ignore_errors=True)
    data = dict(started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'), quick=args.quick, runs=runs,
                lab=dict(LAB), bake=BAKE['quick' if args.quick else 'full'], load_start=[round(v, 2) for v in os.getloadavg()],
                rollouts=[], detections=[], reconciles=[], gate=[])
    with tempfile.TemporaryDirectory(prefix='canary-bench-') as tmp:
        if parts & {'rollouts', 'detections'}:
            print('== lab of %d hosts: rollouts and detections' % LAB['hosts'], flush=True)
            lab = Lab(Path(tmp) / 'lab4', network='127.0.80', region='eu-west-3', **LAB).start()
            try:
                bench = Bench(lab, tmp, args.quick, 'lab4')
                if 'rollouts' in parts:
                    rollouts(bench, runs, steady, data['rollouts'], lambda: save(data))
                if 'detections' in parts:
                    detections(bench, runs, steady, data['detections'], lambda: save(data))
            finally:
                lab.stop()
        if 'reconciles' in parts:
            size = int(os.environ.get('BENCH_RECONCILE_HOSTS') or (6 if args.quick else 20))
            print('== lab of %d hosts: reconcile' % size, flush=True)
            # Seeded with a short cold start (the lab warms its hosts one by
            # one); the fallback then gets the bench's cold start back.
            lab = Lab(Path(tmp) / ('lab%d' % size), hosts=size, drain_seconds=LAB['drain_seconds'], cold_start_s=0.3,
                      health_interval=LAB['health_interval'], network=os.environ.get('BENCH_RECONCILE_NETWORK') or '127.0.81',
                      region='eu-north-1').start()
            try:
                for manifest in lab.packages.values():
                    manifest['cold_start_s'] = LAB['cold_start_s']
                lab.cold_start_s = LAB['cold_start_s']
                reconciles(lab, tmp, runs, args.quick, data['reconciles'], lambda: save(data))
            finally:
                lab.stop()
    if 'gate' in parts:
        print('== gate cost', flush=True)
        data['gate'] = gate_cost()
    save(data, final=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
