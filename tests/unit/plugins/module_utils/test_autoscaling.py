from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _autoscaling as asg
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG

VALID = 'valid processes are Launch, Terminate, AddToLoadBalancer, AlarmNotification, AZRebalance, HealthCheck, InstanceRefresh, ' \
        'ReplaceUnhealthy, ScheduledActions'


# --------------------------------------------------------------------------
# Validation: before any call
# --------------------------------------------------------------------------

@pytest.mark.parametrize('state, kwargs, expected', [
    ('query', {'instance_ids': ['i-1', ' i-2 ', 'i-1']}, (['i-1', 'i-2'], [], None)),
    ('query', {'groups': ['web']}, ([], ['web'], None)),
    ('suspended', {'groups': ['web']}, ([], ['web'], list(asg.ROLLOUT_PROCESSES))),
    ('suspended', {'instance_ids': ['i-1'], 'processes': ['AZRebalance', 'Launch', 'AZRebalance']}, (['i-1'], [], ['AZRebalance', 'Launch'])),
    ('resumed', {'processes': {'web': ['AZRebalance'], 'api': []}}, ([], ['web', 'api'], {'web': ['AZRebalance'], 'api': []})),
    ('resumed', {'groups': ['web', 'api'], 'processes': ['HealthCheck']}, ([], ['web', 'api'], {'web': ['HealthCheck'], 'api': ['HealthCheck']})),
    ('resumed', {'groups': ['web'], 'processes': {'web': ['HealthCheck']}}, ([], ['web'], {'web': ['HealthCheck']})),
    ('standby', {'instance_ids': ['i-1']}, (['i-1'], [], None)),
    ('in_service', {'instance_ids': ['i-1']}, (['i-1'], [], None)),
    ('suspended', {'groups': ['web'], 'record': 'app-3457-20261206T101500Z'}, ([], ['web'], list(asg.ROLLOUT_PROCESSES))),
    ('resumed', {'instance_ids': ['i-1'], 'processes': 'recorded'}, (['i-1'], [], 'recorded')),
    ('resumed', {'groups': ['web'], 'processes': 'recorded'}, ([], ['web'], 'recorded')),
])
def test_validate_accepts_and_normalizes(state, kwargs, expected):
    assert asg.validate(state, **kwargs) == expected


@pytest.mark.parametrize('state, kwargs, message', [
    ('query', {}, 'Invalid options: state=query needs instance_ids or groups'),
    ('query', {'groups': ['web', ' ']}, "Invalid value for option groups: ['web', ' ']; every entry must be a non-empty name"),
    ('suspended', {}, 'Invalid options: state=suspended needs groups or instance_ids'),
    ('suspended', {'groups': ['web'], 'processes': ['AZRebalance', 'Rebalance', 'launch']},
     "Invalid value for option processes: unknown process(es) 'Rebalance', 'launch'; " + VALID),
    ('suspended', {'groups': ['web'], 'processes': []}, 'Invalid value for option processes: []; give at least one process, valid'),
    ('suspended', {'groups': ['web'], 'processes': 'AZRebalance'}, "Invalid value for option processes: 'AZRebalance'; expected a list"),
    ('suspended', {'groups': ['web'], 'processes': {'web': ['AZRebalance']}},
     "Invalid value for option processes: {'web': ['AZRebalance']}; state=suspended takes a list of processes"),
    ('resumed', {'groups': ['web']}, 'Invalid options: state=resumed needs processes'),
    ('resumed', {'processes': ['AZRebalance']}, 'Invalid options: state=resumed with a list of processes needs groups'),
    ('resumed', {'processes': {}}, 'Invalid value for option processes: {}; state=resumed resumes only the processes it is given'),
    ('resumed', {'processes': {'web': ['Bogus']}}, "Invalid value for option processes[web]: unknown process(es) 'Bogus'; " + VALID),
    ('resumed', {'processes': {'web': 'AZRebalance'}}, "Invalid value for option processes[web]: 'AZRebalance'; expected a list"),
    ('resumed', {'groups': ['web', 'api'], 'processes': {'web': ['AZRebalance']}}, 'Invalid options: groups api are not keys of processes'),
    ('resumed', {'instance_ids': ['i-1'], 'processes': {'web': ['AZRebalance']}},
     'Invalid options: state=resumed takes groups and processes, not instance_ids'),
    ('standby', {}, 'Invalid value for option instance_ids: None; state=standby takes exactly one instance id'),
    ('standby', {'instance_ids': ['i-1', 'i-2']}, "Invalid value for option instance_ids: ['i-1', 'i-2']; state=standby takes exactly one"),
    ('in_service', {'instance_ids': ['i-1'], 'groups': ['web']},
     "Invalid value for option instance_ids: ['i-1']; state=in_service takes exactly one instance id (and no groups)"),
    ('drained', {}, "Invalid value for option state: 'drained'; expected one of query, suspended, resumed, standby, in_service"),
    ('suspended', {'groups': ['web'], 'record': 'run;rm -rf'},
     "Invalid value for option record: 'run;rm -rf'; expected 1 to 256 letters, digits, spaces or _ . : / = + - @"),
    ('suspended', {'groups': ['web'], 'record': ''}, "Invalid value for option record: ''; expected 1 to 256"),
    ('suspended', {'groups': ['web'], 'record': 'r' * 257}, "Invalid value for option record: 'rrr"),
    ('resumed', {'groups': ['web'], 'processes': 'recorded', 'record': 'run-1'},
     'Invalid options: record is only used with state=suspended'),
    ('resumed', {'processes': 'recorded'}, 'Invalid options: state=resumed with processes=recorded needs groups or instance_ids'),
    ('resumed', {'groups': ['web'], 'processes': 'everything'}, "Invalid value for option processes: 'everything'; expected a list"),
])
def test_validate_refuses_naming_the_option(state, kwargs, message):
    with pytest.raises(CanaryError) as caught:
        asg.validate(state, **kwargs)
    assert caught.value.message.startswith(message), caught.value.message


def test_the_rollout_list_is_valid_and_leaves_launch_terminate_and_add_to_load_balancer_alone():
    assert set(asg.ROLLOUT_PROCESSES) <= set(asg.PROCESSES)
    assert not {'Launch', 'Terminate', 'AddToLoadBalancer'} & set(asg.ROLLOUT_PROCESSES)
    # ReplaceUnhealthy without HealthCheck would replace, on resume, an instance marked unhealthy during the run.
    assert {'ReplaceUnhealthy', 'HealthCheck', 'AZRebalance', 'InstanceRefresh'} <= set(asg.ROLLOUT_PROCESSES)


# --------------------------------------------------------------------------
# Plans and views (pure)
# --------------------------------------------------------------------------

@pytest.mark.parametrize('wanted, already, now, before', [
    (['AZRebalance', 'HealthCheck'], [], ['AZRebalance', 'HealthCheck'], []),
    (['AZRebalance', 'HealthCheck'], ['HealthCheck', 'Launch'], ['AZRebalance'], ['HealthCheck']),
    (['AZRebalance'], ['AZRebalance'], [], ['AZRebalance']),
])
def test_plan_suspend_separates_ours_from_an_operators(wanted, already, now, before):
    assert asg.plan_suspend(wanted, already) == (now, before)


@pytest.mark.parametrize('wanted, suspended, now, idle', [
    (['AZRebalance'], ['AZRebalance', 'Launch'], ['AZRebalance'], []),
    (['AZRebalance', 'HealthCheck'], ['Launch'], [], ['AZRebalance', 'HealthCheck']),
    ([], ['Launch'], [], []),
])
def test_plan_resume_touches_only_what_it_is_given(wanted, suspended, now, idle):
    assert asg.plan_resume(wanted, suspended) == (now, idle)


def raw_group(name='web-asg', states=('InService',) * 3, desired=3, min_size=1, suspended=()):
    return {'AutoScalingGroupName': name, 'AutoScalingGroupARN': 'arn:' + name, 'MinSize': min_size, 'MaxSize': 6, 'DesiredCapacity': desired,
            'Instances': [{'InstanceId': 'i-%d' % n, 'LifecycleState': s} for n, s in enumerate(states)],
            'AvailabilityZones': ['eu-west-1a'], 'SuspendedProcesses': [{'ProcessName': p} for p in suspended]}


def _tags(processes, by='run-1'):
    return [{'Key': 'Name', 'Value': 'web'}, {'Key': asg.RECORD_PROCESSES_TAG, 'Value': processes}, {'Key': asg.RECORD_BY_TAG, 'Value': by}]


@pytest.mark.parametrize('tags, record', [
    (None, None),
    ([{'Key': 'Name', 'Value': 'web'}], None),
    (_tags('ReplaceUnhealthy AZRebalance'), {'processes': ['AZRebalance', 'ReplaceUnhealthy'], 'by': 'run-1'}),
    # Only names AWS knows: a tag edited by hand resumes nothing else.
    (_tags('  HealthCheck   Everything launch '), {'processes': ['HealthCheck'], 'by': 'run-1'}),
    (_tags('Everything'), None),
    (_tags(''), None),
    ([{'Key': asg.RECORD_PROCESSES_TAG, 'Value': 'AZRebalance'}], {'processes': ['AZRebalance'], 'by': ''}),
])
def test_a_record_is_read_from_the_groups_tags(tags, record):
    assert asg.record_view(tags) == record


def test_a_record_grows_with_what_a_run_suspends_and_shrinks_with_what_is_resumed():
    grown = asg.merge_record({'processes': ['HealthCheck'], 'by': 'old'}, ['AZRebalance'], 'new')
    assert grown == {'processes': ['AZRebalance', 'HealthCheck'], 'by': 'new'}
    assert asg.merge_record(None, ['ScheduledActions', 'AZRebalance'], 'new') == {'processes': ['AZRebalance', 'ScheduledActions'], 'by': 'new'}
    assert asg.shrink_record(grown, ['HealthCheck', 'Launch']) == {'processes': ['AZRebalance'], 'by': 'new'}
    assert asg.shrink_record(grown, ['HealthCheck', 'AZRebalance']) is None
    assert asg.shrink_record(None, ['HealthCheck']) is None


@pytest.mark.parametrize('status, running', [
    ('Pending', True), ('InProgress', True), ('Baking', True), ('Cancelling', True), ('RollbackInProgress', True),
    ('Successful', False), ('Failed', False), ('Cancelled', False), ('RollbackSuccessful', False), ('RollbackFailed', False),
])
def test_a_refresh_is_a_problem_while_it_can_replace_instances(status, running):
    view = asg.group_view(raw_group(), [{'InstanceRefreshId': 'r-1', 'Status': status, 'PercentageComplete': 40}])
    assert view['refresh_in_progress'] is running
    expected = ['Auto Scaling group web-asg has an instance refresh %s (r-1, 40%% complete); it replaces instances while it runs' % status]
    assert view['problems'] == (expected if running else [])


def test_fewer_in_service_than_desired_is_a_problem_naming_the_group():
    view = asg.group_view(raw_group(states=('InService', 'Pending', 'Standby'), desired=3, suspended=('Launch', 'AZRebalance')))
    assert (view['in_service'], view['instance_count'], view['suspended_processes']) == (1, 3, ['AZRebalance', 'Launch'])
    assert view['problems'] == ['Auto Scaling group web-asg has 1 InService instance(s), fewer than its desired capacity 3']
    assert asg.group_view(raw_group(), [])['problems'] == []


@pytest.mark.parametrize('in_service, min_size, refusal', [
    (3, 2, None),
    (2, 1, None),
    (2, 2, 'would keep 1 InService instance(s), below its MinSize 2 (InService 2, MinSize 2, desired capacity 2)'),
    (1, 0, 'would keep no InService instance (InService 1, MinSize 0, desired capacity 1)'),
    (1, 1, 'would keep no InService instance (InService 1, MinSize 1, desired capacity 1)'),
])
def test_standby_never_takes_a_group_below_its_minimum_or_to_zero(in_service, min_size, refusal):
    view = asg.group_view(raw_group(states=('InService',) * in_service, desired=in_service, min_size=min_size))
    message = asg.standby_refusal('i-0', view)
    if refusal is None:
        assert message is None
    else:
        assert message == 'Failed to put instance i-0 in standby: Auto Scaling group web-asg %s; nothing was changed' % refusal


# --------------------------------------------------------------------------
# Remote calls against moto, through boto3
# --------------------------------------------------------------------------

def test_instances_are_read_50_a_call_and_groups_100_a_call():
    with MotoALB(region='sa-east-1') as alb, MotoASG(alb) as fleet:
        alb.made = alb.seed(instances=3, register=False)
        fleet.create_group('web-asg', alb.made['instances'][:2])
        client = aws_client(alb.aws_params, 'autoscaling')
        calls = []
        client.meta.events.register('before-call.auto-scaling.*', lambda model, **_: calls.append(model.name))
        ids = alb.made['instances'] + ['i-%017x' % n for n in range(60)]
        found = asg.describe_auto_scaling_instances(client, ids)
        assert calls == ['DescribeAutoScalingInstances'] * 2
        assert sorted(found) == sorted(alb.made['instances'][:2])
        calls.clear()
        groups = asg.describe_auto_scaling_groups(client, ['web-asg'] + ['other-%d' % n for n in range(120)])
        assert calls == ['DescribeAutoScalingGroups'] * 2
        assert list(groups) == ['web-asg']
