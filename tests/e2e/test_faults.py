"""Faults during a rollout: the fleet keeps serving and nothing is lost.

Each case runs playbooks/deploy.yml against a 2-host lab (customers' traffic
flowing, ``rollout_min_healthy=1``) and injects one fault at the moment one
phase starts on one host (the test callback reports task starts as they
happen). Phases and the task that marks their start: drain (``Drain the host
from the load balancer``), deploy (``Deploy the new version as its own site``), warm,
admit, bake, and revert (the first task of revert.yml; the release is made
bad on that host first: 30 % errors fail web1's bake, 400 ms on web2 fail
web2's warm-up after web1 was promoted).

What each fault is, and when it is cleared (a realistic, deterministic case):

==============  =========================================================  ===============================================
fault           what it models                                             cleared
==============  =========================================================  ===============================================
es-down         Elasticsearch outage longer than the run                   at the end of the run
winrm-down      the host's WinRM stops answering (network blip, reboot)   after it refused 3 connections = one step's
                                                                           whole retry budget (or at the end of the run)
site-crash      the new version's app pool crashes (rapid-fail): at once   when that site is stopped (a restart heals it)
                if it runs, else the moment it starts
health-fail     the host's /health answers 500 (a dependency it checks)    when the host's revert starts; injected at the
                                                                           revert: after 3 s
aws-throttle    every ELBv2 call answers Throttling                        after 4 s
sigkill         SIGKILL to ansible-playbook's process group (lost agent)   rollback.yml (no version named) recovers
==============  =========================================================  ===============================================

Expected outcome per case (``support.faults.expect``):

- es-down before the bake ends: the gate fails closed (``could not
  evaluate``), the host is reverted, the run aborted. The events written
  before the outage are in Elasticsearch; the later ones (revert, aborted)
  are lost by nature (events are best effort so that a revert never waits
  on Elasticsearch): the events check expects exactly the earlier ones.
- winrm-down at drain/deploy: the deploy's first WinRM step fails
  (``unreachable``), the host is reverted; at warm/admit/bake no WinRM call
  follows on that host, so the rollout is promoted.
- site-crash at drain/deploy/warm: the warm-up gets 503 until its timeout;
  at admit the target never becomes healthy; at bake the gate sees the
  errors. Always reverted.
- health-fail at drain/deploy/warm: the warm-up gets 500; at admit the
  target never becomes healthy; at bake the gate fails. Always reverted.
- aws-throttle: bounded retries ride through 4 s of throttling: promoted.
- At the revert phase every fault leaves the outcome of the bad build
  unchanged: the revert completes.
- sigkill: the run dies (no report); rollback.yml puts every host back on
  the old version.

Invariants after every case (``support.faults.check_result``): every host
runs exactly one app site, all the same one (the new one when promoted, else
the old one), registered and healthy; a sampler polling the lab's routable
targets every 100 ms never saw fewer than ``rollout_min_healthy``; the exit
code and the JSON report name the result, each host's outcome, the failed
host, its failed step and reason; the run's deploy events in Elasticsearch
are exactly the expected ones; the deploy lock is released (after es-down it
cannot be: it names the run, and is cleared before the next case); the lab's
Auto Scaling group has no process left suspended and no record tag (the run
resumed them, or rollback.yml after a killed run).

``make e2e-faults`` runs a subset (``CI_CASES``); ``make faults`` runs all 72 cases
(``FAULTS=full``, two labs in parallel) and prints the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.e2e import running_lab
from support.faults import Case, Runner, all_cases, bad_build, case_id, check_result, expect, row, table, write_row

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get('FAULTS') == 'full'
OUTPUT = Path(os.environ.get('FAULTS_OUTPUT') or ROOT / 'tests' / 'output' / ('faults' if FULL else 'faults-ci'))

# In CI: every fault and every phase at least once, on both hosts.
CI_CASES = [
    # Elasticsearch lost while host 2 bakes: it fails closed, host 1 is reconciled, the lock stays.
    Case('es-down', 'web2', 'bake'),
    Case('es-down', 'web1', 'admit'),
    # Regression: a WinRM blip during the revert stopped the run with the host out of service.
    Case('winrm-down', 'web1', 'revert'),
    Case('winrm-down', 'web2', 'deploy'),
    Case('site-crash', 'web2', 'bake'),
    Case('site-crash', 'web1', 'warm'),
    Case('health-fail', 'web1', 'admit'),
    Case('health-fail', 'web2', 'warm'),
    Case('aws-throttle', 'web2', 'revert'),
    Case('aws-throttle', 'web1', 'drain'),
    Case('sigkill', 'web2', 'deploy'),
    Case('sigkill', 'web1', 'bake'),
]
# FAULTS=full: every case; FAULTS=es-down@web1:bake,...: those cases.
SELECTED = [c for c in all_cases() if case_id(c) in os.environ.get('FAULTS', '').split(',')]
CASES = all_cases() if FULL else (SELECTED or CI_CASES)


def _worker_index():
    worker = os.environ.get('PYTEST_XDIST_WORKER', '')
    return int(worker[2:]) + 1 if worker.startswith('gw') and worker[2:].isdigit() else 0


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    index = _worker_index()
    regions = ('ca-central-1', 'ap-south-1', 'eu-north-1', 'us-west-1', 'ap-northeast-2')
    with running_lab(tmp_path_factory.mktemp('faults-lab'), 2, '127.0.%d' % (60 + index), region=regions[index % len(regions)]) as lab:
        yield Runner(lab, tmp_path_factory.mktemp('faults-runs'))


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_fault(runner, case):
    expected = expect(case)
    behaviour = bad_build(case.host) if case.phase == 'revert' else None
    result = runner.run(case.fault, case.host, case.phase, behaviour=behaviour)
    problems = check_result(runner.lab, result, expected)
    entry = row(case, expected, result, problems)
    write_row(OUTPUT, entry)
    print(table([entry]))
    assert not problems, '%s\n%s\n%s\n%s' % (case_id(case), '\n'.join(problems), result['timeline'], result['run'].stdout[-3000:])
