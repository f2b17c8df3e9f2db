"""Wall time of alb_target present/absent round trips against moto, no waits.

Prints medians: each ELBv2 call alone, one whole module run in Python (the
service layer), and one module run through ansible-playbook (what a playbook
task costs, Ansible's own start-up included, shown separately as a baseline).
The issue asks for well under 2 s per call.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT / 'tests'))

import build_collection  # noqa: E402

build_collection.sync()
sys.path.insert(0, str(ROOT / '.build'))

from ansible_collections.immune.canary.plugins.module_utils import _elbv2 as elbv2  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client  # noqa: E402
from doubles.moto_alb import MotoALB  # noqa: E402
from support.ansible_runner import run_module, run_playbook  # noqa: E402

ROUNDS = 7
PLAYBOOK_ROUNDS = 3


def timed(func, rounds):
    samples = []
    for _round in range(rounds):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), max(samples)


def show(label, figures):
    median, worst = figures
    print('%-58s median %7.3f s   max %7.3f s' % (label, median, worst))


def main():
    with MotoALB(initial_seconds=0.0) as alb:
        made = alb.seed(instances=3, deregistration_delay=0)
        client = aws_client(alb.aws_params, 'elbv2')
        target = made['instances'][0]
        arn = made['groups']['web-https']
        groups = ['web-https', 'web-http']

        print('== single ELBv2 calls (boto3 -> moto over HTTP, %d rounds)' % ROUNDS)
        show('describe_target_groups (2 names)', timed(lambda: elbv2.describe_target_groups(client, groups), ROUNDS))
        show('describe_target_group_attributes', timed(lambda: elbv2.describe_target_group_attributes(client, arn), ROUNDS))
        show('describe_target_health (whole group)', timed(lambda: elbv2.describe_target_health(client, arn), ROUNDS))

        def register_and_deregister():
            elbv2.deregister_target(client, arn, target, 443)
            elbv2.register_target(client, arn, target, 443)
        median, worst = timed(register_and_deregister, ROUNDS)
        show('deregister_targets + register_targets (per call)', (median / 2, worst / 2))

        print('== service layer: one module run, 2 groups, wait=false (%d rounds)' % ROUNDS)

        def service(state):
            return elbv2.TargetRegistration(client, target, groups, state=state, wait=False).run()

        def round_trip():
            assert service('absent')['changed'] and service('present')['changed']
        median, worst = timed(round_trip, ROUNDS)
        show('absent + present round trip, per call', (median / 2, worst / 2))

        print('== through ansible-playbook, 2 groups, wait=false (%d rounds)' % PLAYBOOK_ROUNDS)
        show('baseline: ansible-playbook running ansible.builtin.ping',
             timed(lambda: run_module('ansible.builtin.ping', {}), PLAYBOOK_ROUNDS))
        base = dict(alb.aws_options, target_id=target, target_groups=groups, wait=False)

        def playbook(state):
            run = run_module('alb_target', dict(base, state=state))
            if run.failed or not run.result['changed']:
                raise SystemExit('unexpected result: %r' % run.result)
            return run.result['elapsed']

        module_elapsed = []

        def playbook_round_trip():
            module_elapsed.append(playbook('absent'))
            module_elapsed.append(playbook('present'))
        median, worst = timed(playbook_round_trip, PLAYBOOK_ROUNDS)
        show('one-task playbook, per call (wall, start-up included)', (median / 2, worst / 2))
        show('  of which inside the module (its elapsed)', (statistics.median(module_elapsed), max(module_elapsed)))

        # What one more task costs inside a running playbook: the start-up
        # is paid once per run, so compare a short and a long playbook.
        def tasks_playbook(rounds, ping=False):
            if ping:
                tasks = [{'name': 'Ping', 'ansible.builtin.ping': {}} for _task in range(2 * rounds)]
            else:
                tasks = [{'name': 'Set %s' % state, 'immune.canary.alb_target': dict(base, state=state)}
                         for _round in range(rounds) for state in ('absent', 'present')]
            play = [{'name': 'Bench', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
            with tempfile.TemporaryDirectory(prefix='canary-bench-') as tmp:
                path = Path(tmp) / 'play.yml'
                path.write_text(json.dumps(play), encoding='utf-8')
                start = time.perf_counter()
                run = run_playbook(path)
                wall = time.perf_counter() - start
            if run.rc != 0 or not all(r['changed'] or ping for r in run.results()):
                raise SystemExit('unexpected playbook result: rc=%s %s' % (run.rc, run.stderr[-2000:]))
            return wall
        short, long_ = tasks_playbook(1), tasks_playbook(6)
        per_task = (long_ - short) / 10
        print('%-58s         %7.3f s   (2 tasks %.2f s, 12 tasks %.2f s)' % ('marginal wall time per alb_target task in one playbook',
                                                                             per_task, short, long_))
        short, long_ = tasks_playbook(1, ping=True), tasks_playbook(6, ping=True)
        print('%-58s         %7.3f s   (2 tasks %.2f s, 12 tasks %.2f s)' % ('baseline: marginal wall time per ping task',
                                                                             (long_ - short) / 10, short, long_))
    return 0


if __name__ == '__main__':
    sys.exit(main())
