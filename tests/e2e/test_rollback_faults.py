"""Faults during an emergency rollback: it never makes things worse.

The cases run in order on one 2-host lab (customers' traffic flowing,
``rollout_min_healthy=1``); each starts from the fleet the previous one left.
Two good releases A and B are promoted first, so that the site the fleet ran
before A (O) is pruned everywhere, then:

=====================  ==============================================================  ==========================================
case                   what happens                                                    expected
=====================  ==============================================================  ==========================================
pruned-no-package      rollback to O, whose site both hosts lost                       refused before any change, naming both
                                                                                       hosts and the release that pruned O
pruned-package         the same with O's package                                       every host deploys O: fleet on O
swap-fail@web2         rollback to B; starting B fails on web2 (its port or files     web2 put back in service on O, the run
                       held by another process)                                        fails naming it; a second rollback (fault
                                                                                       cleared) ends on B
winrm-down@web2        rollback to O; web2's WinRM drops 3 connections as its revert  the revert rides it out: fleet on O
                       starts
site-crash@web2        rollback to B; B's app pool crashes on web2 as it starts       web2 put back in service on O, the run
                                                                                       fails naming it; a second rollback (fault
                                                                                       cleared) ends on B
lock-held              a deploy of C holds the deploy lock and bakes on web1 when the  the rollback takes the lock over and puts
                       rollback to B starts                                            every host on B; the deploy stops touching
                                                                                       hosts (result ``displaced``), reverts none
=====================  ==============================================================  ==========================================

Invariants after every case: the run was refused before touching anything,
or every host ends on one site (after the second rollback where the first
failed), registered and healthy; the capacity sampler never saw fewer than
``rollout_min_healthy`` routable targets; the deploy lock is released.
Each case is a row of the fault table (``make faults``, ``make e2e-faults``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from lab.traffic import Traffic
from support.e2e import CUSTOMER_RPS, FAST, PLAYBOOKS, applied_scripts, running_lab
from support.faults import LOCK_INDEX, WINRM_DROPS, Case, clear_lock, row, table, write_row
from support.invariants import CapacitySampler, LivePlaybook, check_capacity, check_fleet

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get('FAULTS') == 'full'
OUTPUT = Path(os.environ.get('FAULTS_OUTPUT') or ROOT / 'tests' / 'output' / ('faults' if FULL else 'faults-ci'))
APP = 'app.example.com'
MIN_HEALTHY = 1
VARS = dict(FAST, rollout_min_healthy=MIN_HEALTHY, rollout_warmup_latency_threshold_ms=400)
REVERT_START = 'Take the host out of the load balancer without waiting for the full drain'


class Rollbacks:
    """Runs playbooks against the lab with traffic and a capacity sampler; keeps what each case needs."""

    def __init__(self, lab, workdir):
        self.lab, self.workdir = lab, Path(workdir)
        self.sites = {}
        self.counter = 0
        lab.checker.timeout = 5.0

    def _vars(self, extra):
        self.counter += 1
        path = self.workdir / ('vars-%d.json' % self.counter)
        path.write_text(json.dumps(dict(VARS, **extra)), encoding='utf-8')
        return path

    def live(self, playbook, extra, report=None):
        extra = dict(extra, rollout_report_path=str(report)) if report else extra
        return LivePlaybook(PLAYBOOKS / playbook, self.lab.inventory_path, workdir=self.workdir,
                            args=['-e', '@%s' % self.lab.vars_path, '-e', '@%s' % self._vars(extra)])

    def release(self, version):
        build = self.lab.build(version)
        return {'rollout_version': version, 'rollout_package_url': build['url'], 'rollout_package_checksum': build['checksum']}

    def traffic(self):
        """Customers' requests: the gate judges them."""
        return Traffic(self.lab.plane.url, CUSTOMER_RPS, self.lab.ca.ca_path, APP).start()

    def deploy(self, version):
        report = self.workdir / ('deploy-%s.json' % version)
        traffic = self.traffic()
        try:
            run = self.live('deploy.yml', self.release(version), report).start().wait(timeout=900)
        finally:
            traffic.stop()
        assert run.rc == 0, run.stdout[-3000:]
        return run

    def rollback(self, version, extra=None, arm=None):
        """rollback.yml to ``version`` with traffic and the sampler; ``arm(live)`` hooks a fault first."""
        report = self.workdir / ('rollback-%d.json' % (self.counter + 1))
        live = self.live('rollback.yml', dict(extra or {}, rollback_to=version), report)
        if arm:
            arm(live)
        traffic = self.traffic()
        sampler = CapacitySampler(self.lab).start()
        started = time.monotonic()
        try:
            run = live.start().wait(timeout=900)
        finally:
            sampler.stop()
            customers = traffic.stop()
        run.report = json.loads(report.read_text()) if report.exists() else None
        return dict(run=run, report=run.report, rollback=None, sampler=sampler, customers=customers,
                    seconds=time.monotonic() - started, hook_errors=live.errors)


@pytest.fixture(scope='module')
def rb(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('rollback-faults-lab'), 2, '127.0.54', region='sa-east-1') as lab:
        rollbacks = Rollbacks(lab, tmp_path_factory.mktemp('rollback-faults-runs'))
        rollbacks.sites['O'] = APP + '-1'
        rollbacks.deploy('11')
        rollbacks.deploy('12')
        rollbacks.sites.update(A=APP + '-11', B=APP + '-12')
        yield rollbacks


def record(rb, case, expected, result, problems):
    problems = list(problems) + ['hook: %s' % e for e in result.get('hook_errors', [])]
    lock = clear_lock(rb.lab)
    if lock is not None:
        problems.append('deploy lock after the run: held by %s, expected released' % lock)
    entry = row(case, expected, result, problems)
    entry['expected'] = expected
    write_row(OUTPUT, entry)
    print(table([entry]))
    assert not problems, '%s\n%s\n%s' % (case, '\n'.join(problems), result['run'].stdout[-3000:])


def converged(rb, site, result):
    return check_fleet(rb.lab, site) + check_capacity(result['sampler'], MIN_HEALTHY)


def test_a_rollback_to_a_pruned_version_without_its_package_is_refused_before_any_change(rb):
    before = {h: applied_scripts(rb.lab, h) for h in rb.lab.hosts}
    result = rb.rollback('1')
    run, problems = result['run'], []
    text = ' '.join(run.stdout.split())
    if run.rc == 0:
        problems.append('the rollback ran (rc 0)')
    for host in ('web1', 'web2'):
        if '%s: %s is pruned by the deploy of release 12' % (host, rb.sites['O']) not in text:
            problems.append('%s is not named with the release that pruned its site' % host)
    if {h: applied_scripts(rb.lab, h) for h in rb.lab.hosts} != before:
        problems.append('a host was changed')
    record(rb, Case('pruned-no-package', '*', 'rollback'), 'refused, nothing touched', result,
           problems + converged(rb, rb.sites['B'], result))


def test_a_rollback_to_a_pruned_version_with_its_package_deploys_it(rb):
    package = rb.lab.build('1')
    result = rb.rollback('1', {'rollout_package_url': package['url'], 'rollout_package_checksum': package['checksum']})
    run, problems = result['run'], []
    if run.rc != 0 or (run.report or {}).get('result') != 'rolled_back':
        problems.append('rc %d, result %s' % (run.rc, (run.report or {}).get('result')))
    elif {h: d['action'] for h, d in run.report['plan'].items()} != {'web1': 'deploy', 'web2': 'deploy'}:
        problems.append('plan %s' % run.report['plan'])
    record(rb, Case('pruned-package', '*', 'rollback'), 'deployed from the package: fleet on O', result,
           problems + converged(rb, rb.sites['O'], result))


def _failed_then_recovered(rb, case, fault, arm):
    """Rollback to B with a fault on web2: web2 back in service on O, the run failed; then a clean rollback ends on B."""
    result = rb.rollback('12', arm=arm)
    rb.lab.fault(fault, host='web2', off=True)
    run, problems = result['run'], []
    web2 = ((run.report or {}).get('hosts') or {}).get('web2', {})
    if run.rc == 0 or web2.get('outcome') != 'rolled_back_failed':
        problems.append('rc %d, web2 %s' % (run.rc, web2.get('outcome')))
    if (web2.get('restored') or {}).get('site') != rb.sites['O']:
        problems.append('web2 was not put back in service on O: %s' % {k: web2.get(k) for k in ('restored', 'out_of_service', 'reason')})
    state = rb.lab.state()['hosts']['web2']
    if state['running'] != [rb.sites['O']] or set(state['target_state'].values()) != {'healthy'}:
        problems.append('web2 after the failed rollback: %s, %s' % (state['running'], state['target_state']))
    problems += check_capacity(result['sampler'], MIN_HEALTHY)
    again = rb.rollback('12')
    if again['run'].rc != 0:
        problems.append('the second rollback failed: rc %d' % again['run'].rc)
    problems += converged(rb, rb.sites['B'], again)
    record(rb, case, 'web2 back in service on O, run failed; second rollback: fleet on B', result, problems)


def test_a_failed_swap_gives_the_capacity_back(rb):
    def arm(live):
        # Starting any site but the running one fails on web2 from the start of the run.
        del live
        rb.lab.fault('swap-fail', host='web2')
    _failed_then_recovered(rb, Case('swap-fail', 'web2', 'rollback'), 'swap-fail', arm)


def test_winrm_lost_during_a_rollback_is_ridden_out(rb):
    def arm(live):
        def drop():
            seen = rb.lab.winrm.requests
            rb.lab.fault('winrm-down', host='web2')
            deadline = time.monotonic() + 60
            while rb.lab.winrm.requests < seen + WINRM_DROPS and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            rb.lab.fault('winrm-down', host='web2', off=True)
        live.on_task_start('web2', REVERT_START, lambda: threading.Thread(target=drop, daemon=True).start())
    result = rb.rollback('1', arm=arm)
    rb.lab.fault('winrm-down', host='web2', off=True)
    run = result['run']
    problems = [] if run.rc == 0 else ['rc %d: %s' % (run.rc, (run.report or {}).get('hosts'))]
    record(rb, Case('winrm-down', 'web2', 'rollback'), 'ridden out: fleet on O', result, problems + converged(rb, rb.sites['O'], result))


def test_the_target_crashing_on_a_host_gives_the_capacity_back(rb):
    def crash_when_started():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with rb.lab._sites_lock:  # pylint: disable=protected-access
                app = rb.lab.sites.get(('web2', rb.sites['B']))
            if app is not None:
                app.crashed = True
                return
            time.sleep(0.01)

    def arm(live):
        live.on_task_start('web2', REVERT_START, lambda: threading.Thread(target=crash_when_started, daemon=True).start())
    _failed_then_recovered(rb, Case('site-crash', 'web2', 'rollback'), 'site-crash', arm)


def test_a_rollback_takes_the_lock_of_a_live_deploy_which_then_stops(rb):
    # A bake long enough for the rollback to run while web1 bakes.
    first = rb.live('deploy.yml', dict(rb.release('13'), rollout_bake_seconds=40), rb.workdir / 'deploy-13.json')
    traffic = rb.traffic()
    first.start()
    problems = []
    try:
        deadline = time.monotonic() + 300
        while not first.phase_started('web1', 'Bake in production and let Elasticsearch decide') and time.monotonic() < deadline:
            time.sleep(0.1)
        result = rb.rollback('12')
        deploy = first.wait(timeout=600)
    finally:
        traffic.stop()
        if first.proc and first.proc.poll() is None:
            first.kill()
    report_path = rb.workdir / 'deploy-13.json'
    deploy_report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if result['run'].rc != 0:
        problems.append('the rollback failed: rc %d' % result['run'].rc)
    if deploy.rc == 0 or deploy_report.get('result') != 'displaced':
        problems.append('the deploy: rc %d, result %s' % (deploy.rc, deploy_report.get('result')))
    if any(o.get('outcome') in ('reverted', 'reconciled') for o in (deploy_report.get('hosts') or {}).values()):
        problems.append('the displaced deploy reverted a host behind the rollback: %s' % deploy_report.get('hosts'))
    if rb.lab.es.get_source(LOCK_INDEX, APP) is not None:
        problems.append('a lock is left')
    record(rb, Case('lock-held', 'web1', 'rollback'), "rollback takes the lock: fleet on B; deploy stops, 'displaced'", result,
           problems + converged(rb, rb.sites['B'], result))
