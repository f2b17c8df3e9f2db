"""Soak: consecutive rollouts in one lab, good and bad builds alternating,
with a random fault at a random phase in some of them; the invariants hold
after each one.

Bad builds alternate between 30 % errors (the gate catches them in the bake)
and 1.2 s responses (three times the warm-up's 400 ms threshold: caught
before the host takes traffic). Faults, hosts and phases come from a seeded
random generator: the seed is printed, ``SOAK_SEED=<seed>`` replays a run,
``SOAK_ROLLOUTS`` sets the count (``make e2e-faults``: 2; ``make soak``: 20). A fault whose
phase never comes (web2's phases after web1 failed, a revert in a good
rollout) is reported as not injected.

After each rollout: every host on one site (the new one when the report says
promoted, else the old one), registered and healthy; never fewer than
``rollout_min_healthy`` healthy targets; the exit code agrees with the
report (0 exactly when promoted); without a fault a good build is promoted
and a bad one aborted; the run's started and closing events and one event
per promoted or reverted host (two for a host promoted, then reconciled) are in Elasticsearch unless it was down; a
killed controller is recovered by rollback.yml; the deploy lock is
released, except after an Elasticsearch outage that lasted to the end of
the run (then it names the run, and is cleared before the next one).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from support.e2e import running_lab
from support.faults import FAULTS, HOSTS, MIN_HEALTHY, PHASES, WARMUP_THRESHOLD_MS, Runner, expected_lock, outcomes_of
from support.invariants import check_capacity, check_fleet, run_events

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get('SOAK_OUTPUT') or ROOT / 'tests' / 'output' / 'soak')
# 30 % errors: a canary gets about 45 customer requests in the 6 s bake, too
# few for the gate to be sure of 20 % within its share of the rollout's
# false-abort budget every time: a limit of the lab's traffic, which
# bench/bench_release.py and bench/bench_gate_stats.py measure at realistic
# traffic.
BAD_BUILDS = ({'error_rate': 0.3}, {'latency_ms': 3 * WARMUP_THRESHOLD_MS})


def plan(seed, count, fault_share=0.5):
    """The rollouts: (build, behaviour, fault, host, phase), reproducible from ``seed``."""
    rng = random.Random(seed)
    rollouts = []
    for index in range(count):
        bad = index % 2 == 1
        behaviour = BAD_BUILDS[(index // 2) % len(BAD_BUILDS)] if bad else {}
        if rng.random() < fault_share:
            fault, host, phase = rng.choice(FAULTS), rng.choice(HOSTS), rng.choice(PHASES)
        else:
            fault = host = phase = None
        rollouts.append(('bad' if bad else 'good', behaviour, fault, host, phase))
    return rollouts


def check_rollout(lab, result, build, fault):
    problems = []
    run, report = result['run'], result['report']
    problems += check_capacity(result['sampler'], MIN_HEALTHY)
    if result['lock_left'] != expected_lock(result):
        problems.append('deploy lock after the run: held by %s, expected %s' % (result['lock_left'], expected_lock(result) or 'released'))
    if run.rc < 0:
        rollback = result['rollback']
        if rollback is None or rollback.rc != 0:
            problems.append('rollback.yml after SIGKILL failed: rc %s' % (rollback and rollback.rc))
        return problems + check_fleet(lab, result['old_site'])
    if report is None:
        return problems + ['no JSON report (rc %d)' % run.rc] + check_fleet(lab)
    promoted = report.get('result') == 'promoted'
    if promoted != (run.rc == 0):
        problems.append('exit code %d with report result %s' % (run.rc, report.get('result')))
    if fault is None or not result['injected']:
        wanted = 'promoted' if build == 'good' else 'aborted'
        if report.get('result') != wanted:
            problems.append('a %s build without a fault ended %s' % (build, report.get('result')))
    outcomes = outcomes_of(report)
    if promoted:
        if set(outcomes.values()) != {'promoted'}:
            problems.append('promoted with outcomes %s' % outcomes)
    elif not any(e.get('failed_step') and e.get('reason') for e in report['hosts'].values() if e.get('outcome') == 'reverted'):
        problems.append('aborted without a reverted host naming its failed step and reason: %s' % outcomes)
    problems += check_fleet(lab, result['new_site'] if promoted else result['old_site'])
    if fault != 'es-down' or not result['injected']:
        events = run_events(lab, result['run_id'])
        phases = [phase for phase, _host in events]
        # A reconciled host was promoted before the abort: two events.
        expected_hosts = sum({'promoted': 1, 'reverted': 1, 'reconciled': 2}.get(o, 0) for o in outcomes.values())
        closing = 'succeeded' if promoted else 'aborted'
        if phases.count('started') != 1 or phases.count(closing) != 1 or len(events) != expected_hosts + 2:
            problems.append('events %s for outcomes %s' % (events, outcomes))
    return problems


def format_rows(seed, rows):
    lines = ['soak seed %s (replay: SOAK_SEED=%s)' % (seed, seed),
             '%-3s %-5s %-22s %-32s %-48s %-11s %s' % ('#', 'build', 'behaviour', 'fault', 'observed', 'min healthy', 'invariants')]
    for r in rows:
        cells = (r['index'], r['build'], r['behaviour'], r['fault'], r['observed'][:48], r['min_healthy_seen'], r['invariants'])
        lines.append('%-3d %-5s %-22s %-32s %-48s %-11s %s' % cells)
    lines.append('%d of %d rollouts: every invariant held' % (sum(1 for r in rows if r['invariants'] == 'held'), len(rows)))
    return '\n'.join(lines)


@pytest.fixture(scope='module')
def soak_lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('soak-lab'), 2, '127.0.70', region='sa-east-1') as lab:
        yield lab


def test_soak(soak_lab, tmp_path):
    from support.faults import observed  # pylint: disable=import-outside-toplevel

    seed = int(os.environ.get('SOAK_SEED') or random.SystemRandom().randrange(1, 10 ** 6))
    count = int(os.environ.get('SOAK_ROLLOUTS') or 2)
    print('soak seed %d, %d rollouts' % (seed, count), flush=True)
    runner = Runner(soak_lab, tmp_path)
    rows, failures = [], []
    for index, (build, behaviour, fault, host, phase) in enumerate(plan(seed, count)):
        result = runner.run(fault, host, phase, behaviour=behaviour)
        problems = check_rollout(soak_lab, result, build, fault)
        what = '%s@%s:%s' % (fault, host, phase) if fault else '-'
        if fault and not result['injected']:
            what += ' (not reached)'
        rows.append({'index': index + 1, 'build': build, 'behaviour': ','.join('%s=%s' % kv for kv in behaviour.items()) or '-',
                     'fault': what, 'observed': observed(result), 'min_healthy_seen': result['sampler'].minimum,
                     'invariants': 'held' if not problems else 'BROKEN: ' + '; '.join(problems)[:300]})
        print(format_rows(seed, rows[-1:]).splitlines()[-2], flush=True)
        if problems:
            failures.append('rollout %d (%s, %s): %s\n%s' % (index + 1, build, what, '\n'.join(problems), result['timeline']))
            break
    text = format_rows(seed, rows)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / 'summary.txt').write_text(text + '\n', encoding='utf-8')
    print(text)
    assert not failures, 'seed %d:\n%s' % (seed, '\n\n'.join(failures))
