"""The fault matrix's own logic: expectations, report checks, capacity
spells, the soak plan, the table, and the live playbook's task-start hooks."""

from __future__ import annotations

import sys
import time

import pytest

from support import faults
from support.ansible_runner import AnsibleRun
from support.invariants import CapacitySampler, LivePlaybook, check_capacity


def test_matrix_is_every_fault_at_every_phase_of_both_hosts():
    cases = faults.all_cases()
    assert len(cases) == 72 == len(set(cases))
    assert {c.fault for c in cases} == set(faults.FAULTS)
    assert {(c.host, c.phase) for c in cases} == {(h, p) for h in ('web1', 'web2') for p in faults.PHASES}


@pytest.mark.parametrize('case', faults.all_cases(), ids=faults.case_id)
def test_every_case_has_a_consistent_expectation(case):
    expected = faults.expect(case)
    assert expected.result in ('promoted', 'aborted', 'killed')
    if expected.result == 'aborted':
        assert expected.failed_host in ('web1', 'web2') and expected.step in faults.PHASE_TASKS.values()
        assert expected.outcomes[expected.failed_host] == 'reverted' and expected.final == 'old'
        # A failure on web2 means web1 took the version and is reconciled.
        assert expected.outcomes['web1'] == ('reverted' if expected.failed_host == 'web1' else 'reconciled')
    if expected.result == 'promoted':
        assert set(expected.outcomes.values()) == {'promoted'} and expected.final == 'new'
    if case.fault == 'es-down':
        # Only the events written before the outage.
        assert expected.events == faults._before(case.host)  # pylint: disable=protected-access
    if case.phase == 'revert' and case.fault != 'sigkill':
        assert expected.result == 'aborted' and expected.failed_host == case.host


@pytest.mark.parametrize('case, result, step', [
    (faults.Case('es-down', 'web2', 'bake'), 'aborted', 'Bake in production and let Elasticsearch decide'),
    (faults.Case('winrm-down', 'web1', 'drain'), 'aborted', 'Deploy the new version as its own site'),
    (faults.Case('winrm-down', 'web1', 'bake'), 'promoted', None),
    (faults.Case('site-crash', 'web2', 'deploy'), 'aborted', 'Warm up the new site off-line until it is fast'),
    (faults.Case('health-fail', 'web1', 'admit'), 'aborted', 'Admit the host to the load balancer and wait until healthy'),
    (faults.Case('aws-throttle', 'web1', 'drain'), 'promoted', None),
    (faults.Case('aws-throttle', 'web2', 'revert'), 'aborted', 'Warm up the new site off-line until it is fast'),
])
def test_expectations_table(case, result, step):
    expected = faults.expect(case)
    assert (expected.result, expected.step) == (result, step)


def _run(rc):
    return AnsibleRun(rc, 'out', '', [])


ABORTED = faults.expect(faults.Case('es-down', 'web1', 'bake'))
GOOD_REPORT = {'result': 'aborted', 'hosts': {
    'web1': {'outcome': 'reverted', 'failed_step': 'immune.canary.rollout : Bake in production and let Elasticsearch decide',
             'reason': 'could not evaluate: ES down'},
    'web2': {'outcome': 'untouched'}}}


@pytest.mark.parametrize('rc, report, problems', [
    (2, GOOD_REPORT, []),
    (0, GOOD_REPORT, ['exit code 0 for a aborted rollout']),
    (2, dict(GOOD_REPORT, result='promoted'), ["report result 'promoted', expected 'aborted'"]),
    (2, {'result': 'aborted', 'hosts': {'web1': dict(GOOD_REPORT['hosts']['web1'], reason='errors 0.3 > 0.05'), 'web2': {'outcome': 'untouched'}}},
     ["web1 reason 'errors 0.3 > 0.05' lacks 'could not evaluate'"]),
    (2, {'result': 'aborted', 'hosts': {'web1': GOOD_REPORT['hosts']['web1'], 'web2': {'outcome': 'reconciled'}}},
     ["outcomes {'web1': 'reverted', 'web2': 'reconciled'}, expected {'web1': 'reverted', 'web2': 'untouched'}"]),
])
def test_check_report(rc, report, problems):
    assert faults.check_report(_run(rc), report, ABORTED) == problems


def test_no_report_is_a_problem():
    assert faults.check_report(_run(-9), None, ABORTED)[0].startswith('no JSON report (rc -9)')


def _sampler(counts, in_service=None):
    sampler = CapacitySampler(lab=None)
    sampler.samples = [(float(i), c) for i, c in enumerate(counts)]
    sampler.in_service = in_service or list(counts)
    return sampler


def test_capacity_spells_and_check():
    sampler = _sampler([2, 1, 0, 0, 1, 2, 0, 2], [2, 1, 1, 1, 1, 2, 1, 2])
    assert sampler.minimum == 0
    assert sampler.low_spells(1) == [(2.0, 2.0), (6.0, 1.0)]
    assert check_capacity(sampler, 1) == ['healthy targets fell to 0 (< rollout_min_healthy=1) for 2.0 s, 1.0 s; '
                                          'registered targets never fewer than 1']
    assert check_capacity(_sampler([2, 1, 1, 2]), 1) == []
    assert check_capacity(_sampler([]), 1) == ['the capacity sampler took no sample']


def test_soak_plan_is_reproducible_and_alternates_builds():
    test_soak = _soak_module()
    first, again, other = test_soak.plan(7, 20), test_soak.plan(7, 20), test_soak.plan(8, 20)
    assert first == again and first != other
    assert [r[0] for r in first] == ['good', 'bad'] * 10
    assert {tuple(sorted(r[1].items())) for r in first if r[0] == 'bad'} == {(('error_rate', 0.3),), (('latency_ms', 1200),)}
    faulted = [r for r in first if r[2]]
    assert 0 < len(faulted) < 20
    assert all(r[2] in faults.FAULTS and r[3] in faults.HOSTS and r[4] in faults.PHASES for r in faulted)


def _soak_module():
    import importlib.util  # pylint: disable=import-outside-toplevel
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    path = Path(__file__).resolve().parents[1] / 'e2e' / 'test_soak.py'
    spec = importlib.util.spec_from_file_location('soak_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_lists_each_case_and_the_total():
    rows = [{'case': 'es-down@web1:bake', 'fault': 'es-down', 'host': 'web1', 'phase': 'bake', 'expected': 'aborted: web1 at bake',
             'observed': 'aborted rc=2 web1=reverted web2=untouched', 'invariants': 'held', 'problems': [], 'min_healthy_seen': 1,
             'seconds': 31.2, 'failed_requests': 0, 'requests': 900},
            {'case': 'sigkill@web2:drain', 'fault': 'sigkill', 'host': 'web2', 'phase': 'drain', 'expected': 'killed',
             'observed': 'killed (rc -9)', 'invariants': 'BROKEN', 'problems': ['rollback.yml failed'], 'min_healthy_seen': 1,
             'seconds': 40.0, 'failed_requests': 3, 'requests': 1200}]
    text = faults.table(rows)
    lines = text.splitlines()
    assert lines[0].split()[0] == 'case' and len(lines) == 4
    assert 'es-down@web1:bake' in lines[1] and lines[1].rstrip().endswith('held')
    assert 'BROKEN: rollback.yml failed' in lines[2]
    assert lines[-1] == '1 of 2 cases: every invariant held'


def test_live_playbook_calls_back_when_a_task_starts(tmp_path, monkeypatch):
    # A stand-in for ansible-playbook that writes the progress records the test callback writes.
    script = tmp_path / 'fake.py'
    script.write_text(
        'import json, os, sys, time\n'
        'path = os.environ["CANARY_PROGRESS_FILE"]\n'
        'for host, task in [("web1", "role : Drain the host from the load balancer"), ("web2", "role : Drain the host from the load balancer")]:\n'
        '    with open(path, "a") as f:\n'
        '        f.write(json.dumps({"event": "start", "host": host, "task": task, "time": time.time()}) + "\\n")\n'
        '    time.sleep(0.2)\n'
        'time.sleep(float(sys.argv[-1]))\n', encoding='utf-8')
    live = LivePlaybook('unused.yml', 'inventory', args=['0.1'], workdir=tmp_path)
    live.cmd = [sys.executable, str(script), '0.1']
    seen = []
    live.on_task_start('web2', 'Drain the host from the load balancer', lambda: seen.append('web2 drain'))
    live.on_task_start('web1', 'Bake in production', lambda: seen.append('never'))
    run = live.start().wait(timeout=30)
    assert run.rc == 0 and seen == ['web2 drain']
    assert [h for h, _t, _m in live.started] == ['web1', 'web2']

    killed = LivePlaybook('unused.yml', 'inventory', workdir=tmp_path)
    killed.cmd = [sys.executable, str(script), '30']
    killed.on_task_start('web1', 'Drain the host from the load balancer', killed.kill)
    started = time.monotonic()
    assert killed.start().wait(timeout=60).rc == -9
    assert time.monotonic() - started < 20


REVERTED_REPORT = {'result': 'aborted', 'hosts': {'web1': {'outcome': 'reconciled', 'promoted': {'site': 'app-3'}},
                                                  'web2': {'outcome': 'reverted'}}}


@pytest.mark.parametrize('events, failed, problems', [
    ([('aborted', ''), ('promoted', 'web1'), ('reverted', 'web1'), ('reverted', 'web2'), ('started', '')], [], 0),
    ([('promoted', 'web1'), ('started', '')], [{'phase': 'reverted', 'host': 'web1'}, {'phase': 'reverted', 'host': 'web2'},
                                               {'phase': 'aborted'}], 0),
    ([('promoted', 'web1'), ('started', '')], [{'phase': 'reverted', 'host': 'web2'}], 1),
    ([('started', '')], [], 1),
], ids=['all-recorded', 'lost-ones-reported', 'one-dropped-silently', 'several-dropped'])
def test_check_nothing_lost(events, failed, problems):
    found = faults.check_nothing_lost(dict(REVERTED_REPORT, events_failed=failed), events)
    assert len(found) == problems, found
    if problems:
        assert found[0].startswith("events neither recorded nor in the report's events_failed: [('")
