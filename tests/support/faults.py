"""The fault matrix: one fault, injected at the start of one phase of one
host, during a real deploy.yml run against the lab with customers' traffic;
then the invariants (support.invariants) and the expected outcome.

Used by tests/e2e/test_faults.py (CI subset and ``make faults``) and
tests/e2e/test_soak.py. ``python tests/support/faults.py DIR`` prints the
table of the rows the tests wrote to DIR.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / '.build'))

from lab.fleet import LAB_ASG  # noqa: E402  pylint: disable=wrong-import-position
from lab.traffic import Traffic  # noqa: E402  pylint: disable=wrong-import-position
from support.e2e import CUSTOMER_RPS, FAST, PLAYBOOKS  # noqa: E402  pylint: disable=wrong-import-position
from support.invariants import CapacitySampler, LivePlaybook, check_capacity, check_fleet, run_events  # noqa: E402  pylint: disable=wrong-import-position

APP = 'app.example.com'
LOCK_INDEX = 'canary-locks'  # the role's rollout_lock_index
HOSTS = ('web1', 'web2')
FAULTS = ('es-down', 'winrm-down', 'site-crash', 'health-fail', 'aws-throttle', 'sigkill')
PHASES = ('drain', 'deploy', 'warm', 'admit', 'bake', 'revert')
# The task whose start on the host marks the start of each phase.
PHASE_TASKS = {
    'drain': 'Drain the host from the load balancer',
    'deploy': 'Deploy the new version as its own site',
    'warm': 'Warm up the new site off-line until it is fast',
    'admit': 'Admit the host to the load balancer and wait until healthy',
    'bake': 'Bake in production and let Elasticsearch decide',
    'revert': 'Take the host out of the load balancer without waiting for the full drain',
}
MIN_HEALTHY = 1
THROTTLE_SECONDS = 4.0
HEALTH_FAIL_REVERT_SECONDS = 3.0
WINRM_DROPS = 3  # one step's whole connection retry budget (_winrm.CONNECT_ATTEMPTS)
# The warm-up threshold leaves room for a loaded CI machine; bad builds are far above it.
WARMUP_THRESHOLD_MS = 400
# The bake is FAST's 6 s: at 15 requests/s over 2 hosts a canary gets about
# 45 requests in it, enough for the gate to be sure of a 20 % error rate (the
# soak's bad build). With a 4 s bake it promoted one now and then, once the
# modules ran in process and the gate started right after the admission.
VARS = dict(FAST, rollout_min_healthy=MIN_HEALTHY, rollout_warmup_latency_threshold_ms=WARMUP_THRESHOLD_MS)

Case = collections.namedtuple('Case', 'fault host phase')
Expected = collections.namedtuple('Expected', 'result outcomes failed_host step reason final events')


def case_id(case):
    return '%s@%s:%s' % case


def all_cases():
    # Phase-major: a run cut short has still seen every fault.
    return [Case(f, h, p) for p in PHASES for h in HOSTS for f in FAULTS]


def bad_build(host):
    """A release that fails on ``host``: web1 fails its bake (30 % errors),
    web2 its warm-up (3 x the threshold on web2 only) after web1 was promoted."""
    return {'error_rate': 0.3} if host == 'web1' else {'host_latency_ms': {host: 3 * WARMUP_THRESHOLD_MS}}


# -- expectations ----------------------------------------------------------------

STEP = dict(PHASE_TASKS)


def _promoted():
    return Expected('promoted', {'web1': 'promoted', 'web2': 'promoted'}, None, None, None, 'new',
                    [('promoted', 'web1'), ('promoted', 'web2'), ('started', ''), ('succeeded', '')])


def _aborted(host, step, reason):
    if host == 'web1':
        outcomes = {'web1': 'reverted', 'web2': 'untouched'}
        events = [('aborted', ''), ('reverted', 'web1'), ('started', '')]
    else:
        outcomes = {'web1': 'reconciled', 'web2': 'reverted'}
        events = [('aborted', ''), ('promoted', 'web1'), ('reverted', 'web1'), ('reverted', 'web2'), ('started', '')]
    return Expected('aborted', outcomes, host, step, reason, 'old', events)


def _bad(host):
    """What a bad build does without any fault."""
    if host == 'web1':
        return _aborted('web1', STEP['bake'], 'errors')
    return _aborted('web2', STEP['warm'], 'ms >')


def _before(host):
    """The events written before a fault at ``host``'s phases took Elasticsearch away."""
    return [('started', '')] if host == 'web1' else [('promoted', 'web1'), ('started', '')]


def expect(case):
    fault, host, phase = case
    if fault == 'sigkill':
        return Expected('killed', None, None, None, None, 'old', _before(host))
    if phase == 'revert':
        base = _bad(host)
        if fault == 'es-down':
            return base._replace(events=_before(host))
        return base
    if fault == 'es-down':
        return _aborted(host, STEP['bake'], 'could not evaluate')._replace(events=_before(host))
    if fault == 'aws-throttle':
        return _promoted()
    if fault == 'winrm-down':
        if phase in ('drain', 'deploy'):
            return _aborted(host, STEP['deploy'], 'unreachable')
        return _promoted()
    if fault == 'site-crash':
        if phase in ('drain', 'deploy', 'warm'):
            return _aborted(host, STEP['warm'], 'status 503')
        if phase == 'admit':
            return _aborted(host, STEP['admit'], 'healthy')
        return _aborted(host, STEP['bake'], 'errors')
    if fault == 'health-fail':
        if phase in ('drain', 'deploy', 'warm'):
            return _aborted(host, STEP['warm'], 'status 500')
        if phase == 'admit':
            return _aborted(host, STEP['admit'], 'healthy')
        return _aborted(host, STEP['bake'], '')
    raise ValueError('unknown fault %r' % fault)


# How long each fault lasts: the module docstring of tests/e2e/test_faults.py explains why.
CLEARED = {
    'es-down': 'at the end of the run',
    'winrm-down': 'after the host refused %d WinRM connections (or at the end of the run)' % WINRM_DROPS,
    'site-crash': 'when the crashed (new) site is stopped',
    'health-fail': 'when the host\'s revert starts; injected at the revert: after %.0f s' % HEALTH_FAIL_REVERT_SECONDS,
    'aws-throttle': 'after %.0f s' % THROTTLE_SECONDS,
    'sigkill': 'the controller is gone; rollback.yml recovers',
}


# -- injection ------------------------------------------------------------------------

class Injector:
    """Arms one fault on a LivePlaybook; ``clear()`` switches everything off."""

    def __init__(self, lab, live, fault, host, phase, new_site):
        self.lab, self.live = lab, live
        self.fault, self.host, self.phase, self.new_site = fault, host, phase, new_site
        self.injected_at = None
        self.cleared_at = None
        self.notes = []
        self._stop = threading.Event()
        self._threads = []
        live.on_task_start(host, PHASE_TASKS[phase], self._inject)

    def _later(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _off(self, name, host=None):
        if self.cleared_at is None:
            self.cleared_at = time.monotonic()
        self.lab.fault(name, host=host, off=True)

    def _inject(self):
        self.injected_at = time.monotonic()
        fault, host, lab = self.fault, self.host, self.lab
        if fault == 'sigkill':
            self.live.kill()
        elif fault == 'es-down':
            lab.fault('es-down')
        elif fault == 'aws-throttle':
            lab.fault('aws-throttle')
            self._later(self._off_after, THROTTLE_SECONDS, 'aws-throttle', None)
        elif fault == 'winrm-down':
            seen = lab.winrm.requests
            lab.fault('winrm-down', host=host)
            self._later(self._winrm_up_after_drops, seen)
        elif fault == 'site-crash':
            self._later(self._crash_new_site)
        elif fault == 'health-fail':
            lab.fault('health-fail', host=host)
            if self.phase == 'revert':
                self._later(self._off_after, HEALTH_FAIL_REVERT_SECONDS, 'health-fail', host)
            else:
                self.live.on_task_start(host, PHASE_TASKS['revert'], lambda: self._off('health-fail', host))
        else:
            raise ValueError('unknown fault %r' % fault)

    def _off_after(self, seconds, name, host):
        if not self._stop.wait(seconds):
            self._off(name, host)

    def _winrm_up_after_drops(self, seen):
        while not self._stop.is_set():
            if self.lab.winrm.requests >= seen + WINRM_DROPS:
                # The counter moves before the double drops the request: let it drop the last one.
                time.sleep(0.2)
                self._off('winrm-down', self.host)
                return
            time.sleep(0.01)

    def _crash_new_site(self):
        # The new version's app pool crashes: now if it runs, else as soon as it starts.
        while not self._stop.is_set():
            with self.lab._sites_lock:  # pylint: disable=protected-access
                app = self.lab.sites.get((self.host, self.new_site))
            if app is not None:
                app.crashed = True
                self.notes.append('crashed %s' % self.new_site)
                return
            time.sleep(0.01)

    def clear(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for name in ('es-down', 'aws-throttle'):
            self.lab.fault(name, off=True)
        for name in ('winrm-down', 'health-fail', 'site-crash'):
            self.lab.fault(name, host=self.host, off=True)


# -- one case -----------------------------------------------------------------------------

def fleet_site(lab):
    running = {tuple(h['running']) for h in lab.state()['hosts'].values()}
    if len(running) != 1 or len(next(iter(running))) != 1:
        raise AssertionError('the fleet is not on one site before the case: %s' % running)
    return next(iter(running))[0]


class Runner:
    """Runs cases one after the other in one lab; each starts from the fleet
    the previous one left (every host on one site)."""

    def __init__(self, lab, workdir, rps=CUSTOMER_RPS):
        self.lab = lab
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rps = rps
        self.counter = 0
        # An ALB's health check timeout is 5 s by default; a loaded CI machine needs it too.
        lab.checker.timeout = 5.0
        self.last_version = 0

    def _files(self, variables):
        self.counter += 1
        path = self.workdir / ('vars-%d-%d.json' % (self.counter, time.monotonic_ns()))
        path.write_text(json.dumps(variables), encoding='utf-8')
        return path

    def _live(self, playbook, variables):
        return LivePlaybook(PLAYBOOKS / playbook, self.lab.inventory_path, workdir=self.workdir,
                            args=['-e', '@%s' % self.lab.vars_path, '-e', '@%s' % self._files(variables)])

    def next_version(self):
        versions = [int(s['name'].rsplit('-', 1)[1]) for h in self.lab.state()['hosts'].values() for s in h['sites']
                    if s['name'].rsplit('-', 1)[-1].isdigit()]
        self.last_version = max(versions + [self.last_version]) + 1
        return self.last_version

    def run(self, fault, host, phase, behaviour=None, extra=None):
        """Deploy a new version with ``fault`` injected at the start of
        ``phase`` on ``host`` (fault None: no fault); after SIGKILL, run
        rollback.yml. Returns a dict with the runs and what was observed."""
        lab = self.lab
        old_site = fleet_site(lab)
        version = str(self.next_version())
        new_site = '%s-%s' % (APP, version)
        build = lab.build(version, **(behaviour or {}))
        run_id = 'faults-%s-%d' % (version, time.time_ns() // 1000000)
        report_path = self.workdir / ('report-%s.json' % version)
        variables = dict(VARS, rollout_version=version, rollout_package_url=build['url'], rollout_package_checksum=build['checksum'],
                         rollout_run_id=run_id, rollout_report_path=str(report_path), **(extra or {}))
        live = self._live('deploy.yml', variables)
        injector = Injector(lab, live, fault, host, phase, new_site) if fault else None
        traffic = Traffic(lab.plane.url, self.rps, lab.ca.ca_path, 'app.example.com').start() if self.rps else None
        started = time.monotonic()
        rollback = None
        sampler = CapacitySampler(lab).start()
        try:
            try:
                run = live.start().wait(timeout=900)
            finally:
                if injector:
                    injector.clear()
            if run.rc < 0:
                rollback = self._live('rollback.yml', VARS).start().wait(timeout=600)
        finally:
            sampler.stop()
            customers = traffic.stop() if traffic else None
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        return {
            'fault': fault, 'lock_left': clear_lock(lab),
            'run': run, 'rollback': rollback, 'report': report, 'run_id': run_id, 'old_site': old_site, 'new_site': new_site,
            'sampler': sampler, 'customers': customers, 'seconds': time.monotonic() - started,
            'injected': injector is None or injector.injected_at is not None, 'hook_errors': live.errors,
            'injector_notes': injector.notes if injector else [],
            'timeline': timeline(live, started, injector),
        }


def clear_lock(lab):
    """The run id of a deploy lock still held after the run, cleared as an
    operator would (with ``DELETE``) so that the next case can run; else None."""
    lock = lab.es.get_source(LOCK_INDEX, APP)
    if lock is None:
        return None
    request = urllib.request.Request('%s/%s/_doc/%s' % (lab.es.url, LOCK_INDEX, urllib.parse.quote(APP, safe='')), method='DELETE')
    with urllib.request.urlopen(request, timeout=10):  # nosec - the lab's loopback double
        pass
    return (lock.get('holder') or {}).get('run_id', '?')


def expected_lock(result):
    """Whose lock may stay after the run: the run's own when Elasticsearch
    was down at its end (the release could not reach it), else nobody's."""
    return result['run_id'] if result['fault'] == 'es-down' and result['injected'] else None


def timeline(live, started, injector):
    """Task starts (and the fault) in seconds since the run started, for failure messages."""
    base = time.time() - (time.monotonic() - started)
    lines = ['%6.1f %s %s' % (moment - base, host, task.split(' : ')[-1]) for host, task, moment in live.started]
    if injector is not None and injector.injected_at is not None:
        lines.append('%6.1f fault %s injected%s' % (injector.injected_at - started, injector.fault,
                                                    '' if injector.cleared_at is None else ', cleared at %.1f' % (injector.cleared_at - started)))
    return '\n'.join(sorted(lines, key=lambda line: float(line.split()[0])))


def outcomes_of(report):
    return {h: e.get('outcome') for h, e in (report or {}).get('hosts', {}).items()}


def observed(result):
    """The outcome in a few words: result and each host's outcome."""
    run, report = result['run'], result['report']
    if run.rc < 0:
        rb = result['rollback']
        return 'killed (rc %d); rollback.yml rc %s' % (run.rc, rb.rc if rb else '-')
    if report is None:
        return 'rc %d, no report' % run.rc
    hosts = ' '.join('%s=%s' % kv for kv in sorted(outcomes_of(report).items()))
    return '%s rc=%d %s' % (report.get('result'), run.rc, hosts)


def check_result(lab, result, expected):
    """Every invariant and the expected outcome; the list of what broke."""
    problems = []
    if not result['injected']:
        problems.append('the fault was never injected (phase not reached)')
    problems += ['hook: %s' % e for e in result['hook_errors']]
    final = result['new_site'] if expected.final == 'new' else result['old_site']
    problems += check_fleet(lab, final)
    problems += check_capacity(result['sampler'], MIN_HEALTHY)
    problems += check_autoscaling(lab)
    run, report = result['run'], result['report']
    if expected.result == 'killed':
        if run.rc >= 0:
            problems.append('the controller was not killed: rc %d' % run.rc)
        rollback = result['rollback']
        if rollback is None or rollback.rc != 0:
            problems.append('rollback.yml failed: rc %s %s' % (rollback and rollback.rc, rollback and rollback.stdout[-1500:]))
    else:
        problems += check_report(run, report, expected)
    wanted_lock = expected_lock(result)
    if result['lock_left'] != wanted_lock:
        problems.append('deploy lock after the run: held by %s, expected %s' % (result['lock_left'], wanted_lock or 'released'))
    if expected.events is not None:
        try:
            events = run_events(lab, result['run_id'])
        except OSError as exc:
            problems.append('events unreadable: %s' % exc)
        else:
            if events != sorted(expected.events):
                problems.append('events %s, expected %s' % (events, sorted(expected.events)))
            problems += check_nothing_lost(report, events)
    return problems


def check_autoscaling(lab):
    """Whatever the run went through, it (or the rollback after it) resumed the Auto Scaling processes it
    suspended and deleted its record: the lab's group has none suspended and no record tag."""
    problems = []
    suspended = lab.asg.suspended(LAB_ASG)
    if suspended:
        problems.append('Auto Scaling processes left suspended: %s' % ', '.join(suspended))
    groups = lab.asg.client().describe_auto_scaling_groups(AutoScalingGroupNames=[LAB_ASG])['AutoScalingGroups']
    records = sorted(t['Key'] for t in groups[0].get('Tags', []) if t['Key'].startswith('immune-canary:'))
    if records:
        problems.append('record tags left on the group: %s' % ', '.join(records))
    return problems


def check_nothing_lost(report, events):
    """Every event the run owed (by its report) is in Elasticsearch or listed in
    the report's events_failed: none is dropped silently."""
    if report is None:
        return []
    owed = {('started', '')}
    if report.get('result') in ('promoted', 'aborted'):
        owed.add(('succeeded' if report['result'] == 'promoted' else 'aborted', ''))
    for host, entry in report.get('hosts', {}).items():
        if entry.get('outcome') == 'promoted' or 'promoted' in entry:
            owed.add(('promoted', host))
        if entry.get('outcome') in ('reverted', 'reconciled'):
            owed.add(('reverted', host))
    listed = {(e.get('phase'), e.get('host', '')) for e in report.get('events_failed', [])}
    missing = sorted(owed - set(events) - listed)
    return ['events neither recorded nor in the report\'s events_failed: %s' % missing] if missing else []


def check_report(run, report, expected):
    """The exit code and the JSON report say what happened."""
    problems = []
    if report is None:
        return ['no JSON report (rc %d): %s' % (run.rc, run.stdout[-1500:])]
    want_rc_zero = expected.result == 'promoted'
    if (run.rc == 0) != want_rc_zero:
        problems.append('exit code %d for a %s rollout' % (run.rc, expected.result))
    if report.get('result') != expected.result:
        problems.append('report result %r, expected %r' % (report.get('result'), expected.result))
    if expected.outcomes is not None and outcomes_of(report) != expected.outcomes:
        problems.append('outcomes %s, expected %s' % (outcomes_of(report), expected.outcomes))
    if expected.failed_host:
        entry = report.get('hosts', {}).get(expected.failed_host, {})
        if not str(entry.get('failed_step', '')).endswith(expected.step):
            problems.append('%s failed_step %r, expected %r' % (expected.failed_host, entry.get('failed_step'), expected.step))
        if expected.reason and expected.reason not in str(entry.get('reason', '')):
            problems.append('%s reason %r lacks %r' % (expected.failed_host, str(entry.get('reason', ''))[:300], expected.reason))
    return problems


def describe_expected(expected):
    if expected.result == 'killed':
        return 'killed; rollback.yml -> old'
    if expected.result == 'promoted':
        return 'promoted'
    return 'aborted: %s at %s (%s)' % (expected.failed_host, expected.step.split(' ')[0].lower(), expected.reason or 'any reason')


def row(case, expected, result, problems):
    customers = result.get('customers') or {}
    return {
        'case': case_id(case), 'fault': case.fault, 'host': case.host, 'phase': case.phase,
        'expected': expected if isinstance(expected, str) else describe_expected(expected), 'observed': observed(result),
        'invariants': 'held' if not problems else 'BROKEN', 'problems': problems,
        'min_healthy_seen': result['sampler'].minimum, 'seconds': round(result['seconds'], 1),
        'failed_requests': customers.get('failures'), 'requests': customers.get('requests'),
    }


# The rollback cases (tests/e2e/test_rollback_faults.py) come after the deploy's, in the order they run.
ROLLBACK_CASES = ('pruned-no-package', 'pruned-package', 'swap-fail', 'winrm-down', 'site-crash', 'lock-held')


def _order(r):
    if r['phase'] == 'rollback':
        return (1, ROLLBACK_CASES.index(r['fault']) if r['fault'] in ROLLBACK_CASES else len(ROLLBACK_CASES), r['host'], 0)
    return (0, FAULTS.index(r['fault']), r['host'], PHASES.index(r['phase']))


def table(rows):
    """The matrix as a fixed-width text table (case -> outcome -> invariants)."""
    header = ('case', 'expected', 'observed', 'min healthy', 'failed req', 's', 'invariants')
    lines = [header]
    for r in sorted(rows, key=_order):
        lines.append((r['case'], r['expected'], r['observed'], str(r['min_healthy_seen']),
                      '%s/%s' % (r['failed_requests'], r['requests']), '%.0f' % r['seconds'],
                      r['invariants'] + ('' if not r['problems'] else ': ' + '; '.join(r['problems'])[:400])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append('  '.join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + '  ' + line[-1])
    held = sum(1 for r in rows if not r['problems'])
    out.append('%d of %d cases: every invariant held' % (held, len(rows)))
    return '\n'.join(out)


def write_row(directory, entry):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / 'rows.jsonl', 'a', encoding='utf-8') as handle:
        handle.write(json.dumps(entry) + '\n')


def read_rows(directory):
    path = Path(directory) / 'rows.jsonl'
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]


def main(argv):
    directory = Path(argv[1] if len(argv) > 1 else 'tests/output/faults')
    rows = read_rows(directory)
    text = table(rows)
    (directory / 'table.txt').write_text(text + '\n', encoding='utf-8')
    print(text)
    return 0 if rows and all(not r['problems'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
