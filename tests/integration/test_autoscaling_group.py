"""immune.canary.autoscaling_group through real ansible-playbook against moto's Auto Scaling over HTTP."""

from __future__ import annotations

import pytest
from moto.autoscaling import responses as asg_responses

from doubles.moto_alb import FAKE_SECRET_KEY, MotoALB
from doubles.moto_asg import MotoASG
from support.ansible_runner import run_module
from support.module_main import run_main

ROLLOUT = ['AZRebalance', 'AlarmNotification', 'HealthCheck', 'InstanceRefresh', 'ReplaceUnhealthy', 'ScheduledActions']
# What a record lists, in AWS's order.
RECORDED = ['AlarmNotification', 'AZRebalance', 'HealthCheck', 'InstanceRefresh', 'ReplaceUnhealthy', 'ScheduledActions']
VALID = ('valid processes are Launch, Terminate, AddToLoadBalancer, AlarmNotification, AZRebalance, HealthCheck, InstanceRefresh, '
         'ReplaceUnhealthy, ScheduledActions')


@pytest.fixture
def fleet():
    """web-asg: three instances of both target groups (MinSize 2), with Launch and AZRebalance suspended by an operator;
    solo-asg: one instance (MinSize 0); one instance in no group."""
    with MotoALB(initial_seconds=0.0, region='us-west-2') as alb, MotoASG(alb) as asg:
        alb.made = made = alb.seed(instances=5)
        ids = made['instances']
        asg.create_group('web-asg', ids[:3], target_groups=list(made['groups'].values()), min_size=2, suspended=['Launch', 'AZRebalance'])
        asg.create_group('solo-asg', ids[3:4], min_size=0)
        asg.alb, asg.ids = alb, ids
        yield asg


def args(fleet, **extra):
    return dict(fleet.alb.aws_options, **extra)


def https_state(fleet, instance_id):
    return fleet.alb.state_of(fleet.alb.made['groups']['web-https'], instance_id)


def test_query_reads_groups_instances_and_problems_and_changes_nothing(fleet):
    ids = fleet.ids
    for check in (False, True):
        run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[0], ids[4], ids[3]]), check=check)
        assert (run.failed, run.result['changed']) == (False, False), run.result
    result = run.result
    assert [(i['instance_id'], i['group'], i['lifecycle_state'], i['health_status']) for i in result['instances']] == [
        (ids[0], 'web-asg', 'InService', 'Healthy'), (ids[4], None, None, None), (ids[3], 'solo-asg', 'InService', 'Healthy')]
    assert result['instances'][0]['availability_zone'] == 'us-west-2a'
    web, solo = result['groups']
    assert [g['name'] for g in result['groups']] == ['web-asg', 'solo-asg']
    assert (web['min_size'], web['max_size'], web['desired_capacity'], web['in_service'], web['instance_count']) == (2, 5, 3, 3, 3)
    assert web['suspended_processes'] == ['AZRebalance', 'Launch']
    assert sorted(web['target_group_arns']) == sorted(fleet.alb.made['groups'].values())
    assert (web['instance_refresh'], web['refresh_in_progress'], web['problems']) == (None, False, [])
    assert (solo['desired_capacity'], solo['in_service'], solo['suspended_processes']) == (1, 1, [])
    assert result['problems'] == []

    # An instance refresh running, and an instance still launching: a rollout must not start.
    refresh = fleet.client().start_instance_refresh(AutoScalingGroupName='web-asg')['InstanceRefreshId']
    fleet.set_refresh('web-asg', 'InProgress', percentage=40)
    fleet.set_lifecycle(ids[3], 'Pending')
    run = run_module('autoscaling_group', args(fleet, groups=['web-asg'], instance_ids=[ids[3]]))
    assert (run.failed, run.result['changed']) == (False, False), run.result
    assert run.result['groups'][0]['instance_refresh']['id'] == refresh
    assert run.result['problems'] == [
        'Auto Scaling group web-asg has an instance refresh InProgress (%s, 40%% complete); it replaces instances while it runs' % refresh,
        'Auto Scaling group solo-asg has 0 InService instance(s), fewer than its desired capacity 1']

    fleet.set_refresh('web-asg', 'Successful', percentage=100)
    run = run_module('autoscaling_group', args(fleet, groups=['web-asg']))
    assert run.result['problems'] == [] and run.result['groups'][0]['instance_refresh']['status'] == 'Successful'


def test_suspend_and_resume_exactly_what_the_run_suspended(fleet):
    ids = fleet.ids
    # The groups come from the instances; the one in no group is fine.
    suspend = args(fleet, instance_ids=[ids[0], ids[1], ids[4]], state='suspended')

    run = run_module('autoscaling_group', suspend, check=True, diff=True, verbosity=3)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    ours = [p for p in ROLLOUT if p != 'AZRebalance']
    assert run.result['suspended_now'] == {'web-asg': ours}
    assert run.result['diff']['after']['suspended_processes'] == {'web-asg': sorted(ROLLOUT + ['Launch'])}
    assert fleet.suspended('web-asg') == ['AZRebalance', 'Launch']       # check mode changed nothing

    run = run_module('autoscaling_group', suspend, diff=True, verbosity=3)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    suspended_now = run.result['suspended_now']
    assert suspended_now == {'web-asg': ours}
    group = run.result['groups'][0]
    assert (group['name'], group['suspended_now'], group['suspended_before']) == ('web-asg', ours, ['AZRebalance'])
    assert run.result['diff']['before']['suspended_processes'] == {'web-asg': ['AZRebalance', 'Launch']}
    assert fleet.suspended('web-asg') == sorted(ROLLOUT + ['Launch'])

    for check in (True, False):
        run = run_module('autoscaling_group', suspend, check=check)
        assert (run.failed, run.result['changed'], run.result['suspended_now']) == (False, False, {}), run.result
        assert run.result['groups'][0]['suspended_before'] == ROLLOUT

    resume = args(fleet, state='resumed', processes=suspended_now)
    run = run_module('autoscaling_group', resume, check=True)
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, suspended_now), run.result
    assert fleet.suspended('web-asg') == sorted(ROLLOUT + ['Launch'])

    run = run_module('autoscaling_group', resume)
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, suspended_now), run.result
    # What the operator had suspended stays suspended.
    assert fleet.suspended('web-asg') == ['AZRebalance', 'Launch']
    assert run.result['groups'][0]['suspended_processes'] == ['AZRebalance', 'Launch']

    for check in (True, False):
        run = run_module('autoscaling_group', resume, check=check)
        assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, False, {}), run.result
        assert run.result['groups'][0]['not_suspended'] == ours

    # A list of processes for named groups, as the operator would resume by hand.
    run = run_module('autoscaling_group', args(fleet, state='resumed', groups=['web-asg', 'solo-asg'], processes=['Launch']))
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, {'web-asg': ['Launch']}), run.result
    assert fleet.suspended('web-asg') == ['AZRebalance'] and fleet.suspended('solo-asg') == []


def record_tags(fleet, name):
    groups = fleet.client().describe_auto_scaling_groups(AutoScalingGroupNames=[name])['AutoScalingGroups']
    return {t['Key']: t['Value'] for t in groups[0].get('Tags', []) if t['Key'].startswith('immune-canary:')}


def test_a_recorded_suspension_outlives_the_run_and_is_resumed_exactly(fleet):
    ids = fleet.ids
    ours = [p for p in ROLLOUT if p != 'AZRebalance']
    suspend = args(fleet, instance_ids=[ids[0], ids[3]], state='suspended', record='app-3457-20261206T101500Z')

    run = run_module('autoscaling_group', suspend, check=True)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert run.result['groups'][0]['record'] == {'processes': ours, 'by': 'app-3457-20261206T101500Z'}    # as predicted
    assert record_tags(fleet, 'web-asg') == {} and fleet.suspended('web-asg') == ['AZRebalance', 'Launch']

    run = run_module('autoscaling_group', suspend)
    assert (run.failed, run.result['suspended_now']) == (False, {'web-asg': ours, 'solo-asg': ROLLOUT}), run.result
    # The operator's AZRebalance is not in the record: no later run resumes it.
    assert record_tags(fleet, 'web-asg') == {'immune-canary:suspended-processes': ' '.join(ours),
                                             'immune-canary:suspended-by': 'app-3457-20261206T101500Z'}
    assert record_tags(fleet, 'solo-asg')['immune-canary:suspended-processes'] == ' '.join(RECORDED)
    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[0]]))
    assert run.result['groups'][0]['record'] == {'processes': ours, 'by': 'app-3457-20261206T101500Z'}

    # The run dies here. A later run, knowing only its hosts, resumes what the groups' records name.
    repair = args(fleet, instance_ids=[ids[0], ids[3], ids[4]], state='resumed', processes='recorded')
    run = run_module('autoscaling_group', repair, check=True)
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, {'web-asg': ours, 'solo-asg': RECORDED})
    assert fleet.suspended('web-asg') == sorted(ROLLOUT + ['Launch']) and record_tags(fleet, 'web-asg') != {}

    run = run_module('autoscaling_group', repair)
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, {'web-asg': ours, 'solo-asg': RECORDED})
    assert run.result['records']['web-asg'] == {'processes': ours, 'by': 'app-3457-20261206T101500Z'}
    assert fleet.suspended('web-asg') == ['AZRebalance', 'Launch'] and fleet.suspended('solo-asg') == []
    assert record_tags(fleet, 'web-asg') == {} and record_tags(fleet, 'solo-asg') == {}
    assert [g['record'] for g in run.result['groups']] == [None, None]

    for check in (True, False):
        run = run_module('autoscaling_group', repair, check=check)
        assert (run.failed, run.result['changed'], run.result['resumed_now'], run.result['records']) == (False, False, {}, {})

    # A run that died after resuming, before deleting its record: the record goes, nothing else changes.
    assert not run_module('autoscaling_group', dict(suspend, processes=['HealthCheck'], instance_ids=[ids[3]])).failed
    fleet.client().resume_processes(AutoScalingGroupName='solo-asg', ScalingProcesses=['HealthCheck'])
    run = run_module('autoscaling_group', dict(repair, instance_ids=[ids[3]]))
    assert (run.failed, run.result['changed'], run.result['resumed_now']) == (False, True, {}), run.result
    assert record_tags(fleet, 'solo-asg') == {}

    # Resuming by hand what a record names takes it out of the record.
    assert not run_module('autoscaling_group', dict(suspend, processes=['HealthCheck', 'AZRebalance'], instance_ids=[ids[3]])).failed
    run = run_module('autoscaling_group', args(fleet, state='resumed', groups=['solo-asg'], processes=['HealthCheck']))
    assert run.result['groups'][0]['record'] == {'processes': ['AZRebalance'], 'by': 'app-3457-20261206T101500Z'}
    assert record_tags(fleet, 'solo-asg')['immune-canary:suspended-processes'] == 'AZRebalance'


def test_standby_and_back_in_service(fleet):
    target = fleet.ids[0]
    standby = args(fleet, instance_ids=[target], state='standby')

    run = run_module('autoscaling_group', standby, check=True)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert fleet.lifecycle(target) == 'InService' and https_state(fleet, target) == 'healthy'

    run = run_module('autoscaling_group', standby)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert run.result['instances'][0]['lifecycle_state'] == 'Standby'
    group = run.result['groups'][0]
    assert (group['desired_capacity'], group['in_service'], group['instance_count']) == (2, 2, 3)   # no replacement launched
    assert fleet.lifecycle(target) == 'Standby'
    assert https_state(fleet, target) in ('draining', None)           # out of the target groups, as AWS does it

    for check in (True, False):
        run = run_module('autoscaling_group', standby, check=check)
        assert (run.failed, run.result['changed']) == (False, False), run.result

    back = args(fleet, instance_ids=[target], state='in_service')
    run = run_module('autoscaling_group', back, check=True)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert fleet.lifecycle(target) == 'Standby'

    run = run_module('autoscaling_group', back)
    assert (run.failed, run.result['changed']) == (False, True), run.result
    assert run.result['instances'][0]['lifecycle_state'] == 'InService'
    assert (run.result['groups'][0]['desired_capacity'], run.result['groups'][0]['in_service']) == (3, 3)
    assert https_state(fleet, target) == 'healthy'

    for check in (True, False):
        run = run_module('autoscaling_group', back, check=check)
        assert (run.failed, run.result['changed']) == (False, False), run.result


def test_standby_is_refused_below_the_minimum_or_to_zero(fleet):
    ids = fleet.ids
    assert not run_module('autoscaling_group', args(fleet, instance_ids=[ids[0]], state='standby')).failed

    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[1]], state='standby'))
    assert run.failed
    assert run.result['msg'] == ('Failed to put instance %s in standby: Auto Scaling group web-asg would keep 1 InService instance(s), '
                                 'below its MinSize 2 (InService 2, MinSize 2, desired capacity 2); nothing was changed' % ids[1])
    assert run.result['changed'] is False
    assert fleet.lifecycle(ids[1]) == 'InService'

    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[3]], state='standby'), check=True)
    assert run.failed       # check mode predicts the refusal
    assert run.result['msg'] == ('Failed to put instance %s in standby: Auto Scaling group solo-asg would keep no InService instance '
                                 '(InService 1, MinSize 0, desired capacity 1); nothing was changed' % ids[3])
    assert fleet.lifecycle(ids[3]) == 'InService'

    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[4]], state='standby'))
    assert run.failed
    assert run.result['msg'] == 'Failed to put instance %s in standby: it is in no Auto Scaling group' % ids[4]

    fleet.set_lifecycle(ids[2], 'Terminating')
    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[2]], state='standby'))
    assert run.failed
    assert run.result['msg'] == ('Failed to put instance %s in standby: its lifecycle state in Auto Scaling group web-asg is Terminating, '
                                 'not InService' % ids[2])
    run = run_module('autoscaling_group', args(fleet, instance_ids=[ids[2]], state='in_service'))
    assert run.failed
    assert run.result['msg'] == ('Failed to return instance %s to service: its lifecycle state in Auto Scaling group web-asg is '
                                 'Terminating, not Standby' % ids[2])


def test_an_unknown_group_is_refused_naming_the_option_and_nothing_is_suspended(fleet):
    run = run_module('autoscaling_group', args(fleet, groups=['web-asg', 'no-such-asg'], state='suspended'))
    assert run.failed
    assert run.result['msg'] == 'Invalid value for option groups: Auto Scaling group(s) no-such-asg not found in this account and region'
    assert run.result['missing_groups'] == ['no-such-asg']
    assert fleet.suspended('web-asg') == ['AZRebalance', 'Launch']

    run = run_module('autoscaling_group', args(fleet, state='resumed', processes={'no-such-asg': ['Launch']}))
    assert run.failed and run.result['msg'].startswith('Invalid value for option groups: Auto Scaling group(s) no-such-asg not found')


def test_a_bad_process_name_is_refused_before_any_call_naming_the_option(fleet):
    run = run_module('autoscaling_group', args(fleet, groups=['web-asg'], state='suspended', processes=['AZRebalance', 'Rebalance']),
                     verbosity=3, env={'ANSIBLE_INJECT_INVOCATION': 'true'})
    assert run.failed
    assert run.result['msg'] == "Invalid value for option processes: unknown process(es) 'Rebalance'; " + VALID
    assert fleet.suspended('web-asg') == ['AZRebalance', 'Launch']
    assert FAKE_SECRET_KEY not in run.stdout + run.stderr


BAD = [
    ({'state': 'suspended', 'groups': ['web-asg'], 'processes': ['launch']}, "Invalid value for option processes: unknown process(es) 'launch'"),
    ({'state': 'suspended', 'groups': ['web-asg'], 'processes': []}, 'Invalid value for option processes: []'),
    ({'state': 'suspended'}, 'Invalid options: state=suspended needs groups or instance_ids'),
    ({'state': 'resumed', 'groups': ['web-asg']}, 'Invalid options: state=resumed needs processes'),
    ({'state': 'resumed', 'processes': {'web-asg': ['HealthCheck', 'Nope']}}, "Invalid value for option processes[web-asg]: unknown process(es) 'Nope'"),
    ({'state': 'resumed', 'processes': 'AZRebalance', 'groups': ['web-asg']}, "Invalid value for option processes: 'AZRebalance'"),
    ({'state': 'standby', 'instance_ids': []}, 'Invalid value for option instance_ids: []; state=standby takes exactly one instance id'),
    ({'state': 'in_service', 'instance_ids': ['i-1', 'i-2']}, 'state=in_service takes exactly one instance id'),
    ({'state': 'query'}, 'Invalid options: state=query needs instance_ids or groups'),
    ({'state': 'gone', 'groups': ['web-asg']}, 'value of state must be one of: query, suspended, resumed, standby, in_service'),
    ({'groups': ['web-asg'], 'endpoint_url': 'http://'}, "Invalid value for option endpoint_url: 'http://'"),
    ({'state': 'suspended', 'groups': ['web-asg'], 'record': 'run$1'}, "Invalid value for option record: 'run$1'"),
    ({'state': 'resumed', 'groups': ['web-asg'], 'processes': 'recorded', 'record': 'r'}, 'record is only used with state=suspended'),
]


@pytest.mark.parametrize('bad, message', BAD, ids=['-'.join('%s' % v for v in row[0].values())[:40] for row in BAD])
def test_bad_input_is_refused_before_anything_is_touched(fleet, bad, message, monkeypatch):
    calls = []
    original = asg_responses.AutoScalingResponse.call_action

    def counted(self):
        calls.append(self._get_action())
        return original(self)

    monkeypatch.setattr(asg_responses.AutoScalingResponse, 'call_action', counted)
    server = fleet.backend
    before = {name: sorted(p['ProcessName'] for p in group.suspended_processes) for name, group in server.autoscaling_groups.items()}
    failed, result, _warnings = run_main('autoscaling_group', args(fleet, **bad))
    assert failed, result
    assert message in result['msg'], result['msg']
    after = {name: sorted(p['ProcessName'] for p in group.suspended_processes) for name, group in server.autoscaling_groups.items()}
    assert after == before and calls == []
    # The counter does count: a good request reaches the server.
    assert not run_main('autoscaling_group', args(fleet, groups=['web-asg']))[0]
    assert calls == ['DescribeAutoScalingGroups', 'DescribeInstanceRefreshes']
