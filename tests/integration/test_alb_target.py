"""immune.canary.alb_target through real ansible-playbook against moto over HTTP."""

from __future__ import annotations

import json
import subprocess
import time

import moto.elbv2.models
import pytest

from doubles.moto_alb import FAKE_SECRET_KEY, MotoALB
from support.ansible_runner import BIN, ansible_env, run_module, run_playbook

# Results are read as the user sees them; Ansible shows `diff` in results from -vvv on.
# Fast polling against the stand-in; the defaults (2 s, backing off to 15 s) are for AWS.
FAST = {'poll_interval': 0.2}


@pytest.fixture
def alb():
    with MotoALB(initial_seconds=0.5) as harness:
        harness.made = harness.seed(instances=3, orphan_group='orphan', deregistration_delay=1)
        yield harness


def args(alb, target_id, groups=('web-https', 'web-http'), **extra):
    values = dict(alb.aws_options, target_id=target_id, target_groups=list(groups), **FAST)
    values.update(extra)
    return values


def states(alb, target_id, names=('web-https', 'web-http')):
    return [alb.state_of(alb.made['groups'][name], target_id) for name in names]


def test_absent_then_present_check_real_idempotent(alb):
    target = alb.made['instances'][0]
    # An ARN and a name mixed.
    groups = [alb.made['groups']['web-https'], 'web-http']

    run = run_module('alb_target', args(alb, target, groups, state='absent'), check=True, diff=True, verbosity=3)
    assert not run.failed, run.result
    assert run.result['changed'] is True
    assert run.result['diff']['before']['web-https'] == {'registered': True, 'target_state': 'healthy'}
    assert run.result['diff']['after']['web-https'] == {'registered': False, 'target_state': 'draining'}
    assert states(alb, target) == ['healthy', 'healthy']      # check mode changed nothing

    run = run_module('alb_target', args(alb, target, groups, state='absent'), diff=True, verbosity=3)
    assert not run.failed, run.result
    assert run.result['changed'] is True
    assert [g['target_state'] for g in run.result['target_groups']] == ['unused', 'unused']
    assert [g['reason'] for g in run.result['target_groups']] == ['Target.NotRegistered'] * 2
    assert [(g['healthy_count'], g['target_count']) for g in run.result['target_groups']] == [(2, 2), (2, 2)]
    assert [g['name'] for g in run.result['target_groups']] == ['web-https', 'web-http']
    assert [(g['port'], g['deregistration_delay'], g['slow_start']) for g in run.result['target_groups']] == [(443, 1, 0), (80, 1, 0)]
    assert states(alb, target) == [None, None]

    run = run_module('alb_target', args(alb, target, groups, state='absent'), check=True)
    assert (run.failed, run.result['changed']) == (False, False)
    run = run_module('alb_target', args(alb, target, groups, state='absent'))
    assert (run.failed, run.result['changed']) == (False, False)

    run = run_module('alb_target', args(alb, target, groups, state='present'), check=True)
    assert (run.failed, run.result['changed']) == (False, True)
    assert states(alb, target) == [None, None]

    run = run_module('alb_target', args(alb, target, groups, state='present'), diff=True, verbosity=3)
    assert not run.failed, run.result
    assert run.result['changed'] is True
    assert [g['target_state'] for g in run.result['target_groups']] == ['healthy', 'healthy']
    assert run.result['diff']['after']['web-http'] == {'registered': True, 'target_state': 'healthy'}
    assert states(alb, target) == ['healthy', 'healthy']

    run = run_module('alb_target', args(alb, target, groups, state='present'), check=True)
    assert (run.failed, run.result['changed']) == (False, False)
    run = run_module('alb_target', args(alb, target, groups, state='present'), diff=True, verbosity=3)
    assert (run.failed, run.result['changed']) == (False, False)
    # The same keys every time (the callback only shows diff from -vvv on).
    assert sorted(set(run.result) - {'invocation'}) == sorted(['changed', 'target_id', 'state', 'elapsed', 'target_groups', 'diff'])


def test_query_reads_every_state_and_never_changes_anything(alb):
    target, other = alb.made['instances'][0], alb.made['instances'][1]
    run_module('alb_target', args(alb, other, ('web-http',), state='absent'))
    for check in (False, True):
        run = run_module('alb_target', args(alb, target, state='query'), check=check)
        assert (run.failed, run.result['changed']) == (False, False), run.result
        assert [g['target_state'] for g in run.result['target_groups']] == ['healthy', 'healthy']
        assert [(g['healthy_count'], g['target_count']) for g in run.result['target_groups']] == [(3, 3), (2, 2)]
    run = run_module('alb_target', args(alb, other, state='query'))
    assert [g['target_state'] for g in run.result['target_groups']] == ['healthy', 'unused']
    assert states(alb, target) == ['healthy', 'healthy'] and states(alb, other) == ['healthy', None]


def test_capacity_guard_refuses_and_leaves_the_target_registered(alb):
    target = alb.made['instances'][0]
    run = run_module('alb_target', args(alb, target, state='absent', min_healthy=3))
    assert run.failed
    assert run.result['msg'] == ('Failed to deregister target %s: min_healthy=3 would be violated, nothing was deregistered; '
                                 'web-https has 2 healthy other target(s) of 2, needs 3; web-http has 2 healthy other target(s) of 2, needs 3'
                                 % target)
    assert run.result['changed'] is False
    assert states(alb, target) == ['healthy', 'healthy']

    # The same guard as a percentage lets it go: 100% of the two others are healthy.
    run = run_module('alb_target', args(alb, target, state='absent', min_healthy='100%', wait=False))
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert [g['target_state'] for g in run.result['target_groups']] == ['draining', 'draining']
    # Draining lasts 1 s here: by now it may be over; either way it is out.
    assert all(state in ('draining', 'unused', None) for state in states(alb, target))


def test_the_guard_per_zone_keeps_each_zone_serving():
    # Four instances, two per zone (a, b, a, b), healthy in both groups.
    with MotoALB(initial_seconds=0.0, region='eu-central-1') as alb:
        alb.made = alb.seed(instances=4, deregistration_delay=1, spread=True)
        first_a, first_b, second_a, _second_b = alb.made['instances']

        # One host per zone may leave: each zone keeps one healthy target.
        for target in (first_a, first_b):
            run = run_module('alb_target', args(alb, target, state='absent', min_healthy=1, min_healthy_per_az=1, wait=False))
            assert (run.failed, run.result['changed']) == (False, True), run.result

        # The last one of zone a may not, though the fleet keeps a healthy target in zone b; check mode says so too.
        for check in (True, False):
            run = run_module('alb_target', args(alb, second_a, state='absent', min_healthy=1, min_healthy_per_az=1), check=check)
            assert run.failed, run.result
            assert run.result['msg'] == (
                'Failed to deregister target %s: min_healthy_per_az=1 would be violated, nothing was deregistered; '
                'web-https has 0 healthy other target(s) in eu-central-1a, needs 1; '
                'web-http has 0 healthy other target(s) in eu-central-1a, needs 1' % second_a)
            assert states(alb, second_a) == ['healthy', 'healthy']
        # Without the guard per zone, min_healthy alone lets it go.
        run = run_module('alb_target', args(alb, second_a, state='absent', min_healthy=1, wait=False), check=True)
        assert (run.failed, run.result['changed']) == (False, True), run.result

        run = run_module('alb_target', args(alb, second_a, state='absent', min_healthy_per_az=-1))
        assert run.failed and run.result['msg'].startswith('Invalid value for option min_healthy_per_az: -1; expected a count')


def test_present_re_registers_a_draining_target(alb):
    target = alb.made['instances'][1]
    elbv2 = alb.client('elbv2')
    for name in ('web-https', 'web-http'):
        arn = alb.made['groups'][name]
        elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[{'Key': 'deregistration_delay.timeout_seconds', 'Value': '120'}])
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target}])
    assert states(alb, target) == ['draining', 'draining']

    run = run_module('alb_target', args(alb, target, state='present'), diff=True, verbosity=3)
    assert not run.failed, run.result
    assert run.result['changed'] is True
    assert run.result['diff']['before']['web-https'] == {'registered': False, 'target_state': 'draining'}
    assert states(alb, target) == ['healthy', 'healthy']


def test_timeout_reports_last_state_reason_and_elapsed(alb):
    target = alb.made['instances'][2]
    alb.set_health(alb.made['groups']['web-http'], target,
                   lambda _group, _target: ('unhealthy', 'Target.FailedHealthChecks', 'Health checks failed'))
    run = run_module('alb_target', args(alb, target, state='present', wait_timeout=2))
    assert run.failed
    msg = run.result['msg']
    assert msg.startswith('Failed to wait for target %s to become healthy in 2 target group(s): timed out after 2.' % target)
    assert msg.endswith('s; last observed: web-https: healthy; web-http: unhealthy (Target.FailedHealthChecks: Health checks failed)')
    assert run.result['changed'] is False
    assert run.result['target_groups'][1]['reason'] == 'Target.FailedHealthChecks'
    assert run.result['elapsed'] >= 2


def test_unknown_group_is_named(alb):
    run = run_module('alb_target', args(alb, alb.made['instances'][0], ('web-https', 'no-such-group')))
    assert run.failed
    assert run.result['msg'] == 'Failed to find target group(s) no-such-group: not found in this account and region'


def test_group_without_load_balancer_fails_at_once_and_touches_nothing(alb):
    target = alb.made['instances'][0]
    run = run_module('alb_target', args(alb, target, ('orphan',), state='present', wait_timeout=600))
    assert run.failed
    assert run.result['msg'] == ('Failed to wait for target %s to become healthy in orphan: the target group is not used by any '
                                 'load balancer, so its targets never become healthy (attach it to a listener, or set wait: false)' % target)
    assert run.result['elapsed'] < 60
    assert states(alb, target, ('orphan',)) == [None]

    run = run_module('alb_target', args(alb, target, ('orphan',), state='present', wait=False))
    assert (run.failed, run.result['changed']) == (False, True)
    assert run.result['target_groups'][0]['reason'] == 'Target.NotInUse'


def test_stopped_instance_cannot_be_registered(alb):
    target = alb.made['instances'][0]
    elbv2 = alb.client('elbv2')
    arn = alb.made['groups']['web-http']
    elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target}])
    alb.client('ec2').stop_instances(InstanceIds=[target])
    run = run_module('alb_target', args(alb, target, ('web-http',), state='present'))
    assert run.failed
    assert run.result['msg'].startswith('Failed to register target %s in target group web-http: InvalidTarget: ' % target)
    assert run.result['msg'].endswith("(the target must exist, be running, and be in the target group's VPC %s)" % alb.made['vpc_id'])


def test_bad_min_healthy_is_rejected_naming_the_option(alb):
    target = alb.made['instances'][0]
    run = run_module('alb_target', args(alb, target, state='absent', min_healthy='150%'))
    assert run.failed
    assert run.result['msg'] == "Invalid value for option min_healthy: '150%'; a percentage must lie between 0% and 100%"
    assert states(alb, target) == ['healthy', 'healthy']


def test_hosts_deregistering_at_once_never_take_a_group_below_min_healthy(tmp_path, monkeypatch):
    """Four hosts leave one group at once (free strategy, four forks) with min_healthy 1.

    Every DescribeTargetHealth answer is made 1.5 s stale, so that each host
    would see the other three healthy if the guards ran side by side: exactly
    three may go, the fourth is refused, and one target keeps serving.
    """
    original = moto.elbv2.models.ELBv2Backend.describe_target_health

    def stale(backend, target_group_arn, targets):
        answer = original(backend, target_group_arn, targets)
        time.sleep(1.5)
        return answer

    with MotoALB(initial_seconds=0.5) as alb:
        made = alb.seed(instances=4, groups=(('web-https', 'HTTPS', 443),))
        monkeypatch.setattr(moto.elbv2.models.ELBv2Backend, 'describe_target_health', stale)
        hosts = ['web%d' % n for n in range(1, 5)]
        play = [{'name': 'Everyone out', 'hosts': 'all', 'gather_facts': False, 'strategy': 'free', 'tasks': [
            {'name': 'Leave the group', 'delegate_to': 'localhost',
             'immune.canary.alb_target': dict(alb.aws_options, target_groups=['web-https'], target_id='{{ instance_id }}',
                                              state='absent', wait=False, min_healthy=1)}]}]
        inventory = {'all': {'hosts': {host: {'instance_id': made['instances'][n]} for n, host in enumerate(hosts)}}}
        (tmp_path / 'play.yml').write_text(json.dumps(play), encoding='utf-8')
        (tmp_path / 'hosts.json').write_text(json.dumps(inventory), encoding='utf-8')
        run = run_playbook(tmp_path / 'play.yml', inventory=tmp_path / 'hosts.json', args=['-c', 'local', '-f', '4'])
        monkeypatch.undo()
        outcome = {r['host']: r for r in run.records if r['task'] == 'Leave the group'}
        assert sorted(outcome) == hosts, run.stdout[-3000:] + run.stderr[-3000:]
        left = [h for h, r in outcome.items() if r['status'] == 'ok' and r['result']['changed']]
        refused = [h for h, r in outcome.items() if r['status'] == 'failed']
        assert (len(left), len(refused)) == (3, 1), outcome
        assert 'min_healthy=1 would be violated, nothing was deregistered' in outcome[refused[0]]['result']['msg']
        assert 'web-https has 0 healthy other target(s) of ' in outcome[refused[0]]['result']['msg']
        serving = [i for i in made['instances'] if alb.state_of(made['groups']['web-https'], i) == 'healthy']
        assert serving == [made['instances'][hosts.index(refused[0])]]


def test_moto_invalid_target_on_deregister_is_tolerated():
    with MotoALB(aws_like_deregister=False) as alb:
        alb.made = alb.seed(instances=2, register=False)
        run = run_module('alb_target', args(alb, alb.made['instances'][0], state='absent'))
        assert (run.failed, run.result['changed']) == (False, False), run.result


def test_secret_key_never_appears_at_vvv(alb):
    target = alb.made['instances'][0]
    # ansible-core 2.21 shows the (masked) arguments only when asked; earlier releases always do.
    shown = {'ANSIBLE_INJECT_INVOCATION': 'true'}
    ok = run_module('alb_target', args(alb, target, state='absent', validate_certs=False), verbosity=3, diff=True, env=shown)
    bad = run_module('alb_target', args(alb, target, ('ghost',), state='present'), verbosity=3, env=shown)
    assert not ok.failed and bad.failed
    assert 'validate_certs is false' in ok.stdout + ok.stderr
    for run in (ok, bad):
        assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in run.stdout     # the invocation was shown, masked
        assert FAKE_SECRET_KEY not in run.stdout + run.stderr


def test_ansible_doc_renders():
    proc = subprocess.run([str(BIN / 'ansible-doc'), 'immune.canary.alb_target'], capture_output=True, text=True,
                          env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for word in ('target_groups', 'min_healthy', 'wait_timeout', 'poll_interval', 'secret_key', 'healthy_count'):
        assert word in proc.stdout
    assert 'WARNING' not in proc.stderr
