"""The rollout's Auto Scaling check at preflight, through real ansible-playbook against moto.

A group that replaces instances (an instance refresh), one short of its desired capacity, or a
host that is not InService refuses the run before any host is read; hosts in no group are fine.
"""

from __future__ import annotations

import pytest

from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG
from support.preflight import deploy, fact, output, reached_hosts

HOSTS = ['web1', 'web2', 'web3']


@pytest.fixture
def fleet():
    with MotoALB(region='us-east-2') as alb, MotoASG(alb) as asg:
        alb.made = alb.seed(instances=3)
        ids = alb.made['instances']
        # web1 and web2 in a group; web3 on its own, as many fleets have a few.
        asg.create_group('web-asg', ids[:2], target_groups=[alb.made['groups']['web-https']], min_size=1)
        asg.hosts = dict(zip(HOSTS, ids, strict=True))
        yield alb, asg


def test_a_steady_group_lets_the_run_start_and_the_report_gets_each_hosts_group(es, tmp_path, fleet):
    alb, asg = fleet
    run = deploy(es, tmp_path, alb, hosts=asg.hosts)
    assert 'Refusing to start' not in output(run), output(run)[-3000:]
    assert reached_hosts(run) == HOSTS
    state = fact(run, "Record the hosts' Auto Scaling groups", '__rollout_run_state')['autoscaling']
    assert state['groups'] == ['web-asg']
    assert {h: (v['group'], v['lifecycle_state']) for h, v in state['hosts'].items()} == {
        'web1': ('web-asg', 'InService'), 'web2': ('web-asg', 'InService'), 'web3': (None, None)}
    assert state['hosts']['web1']['availability_zone'] == 'us-east-2a'
    assert state['hosts']['web1']['instance_id'] == asg.hosts['web1']


def test_an_instance_refresh_refuses_the_run_naming_the_group(es, tmp_path, fleet):
    alb, asg = fleet
    refresh = asg.client().start_instance_refresh(AutoScalingGroupName='web-asg')['InstanceRefreshId']
    asg.set_refresh('web-asg', 'InProgress', percentage=40)
    run = deploy(es, tmp_path, alb, hosts=asg.hosts)
    assert run.rc != 0
    assert ('Refusing to start: Auto Scaling group web-asg has an instance refresh InProgress (%s, 40%% complete); it replaces '
            'instances while it runs.' % refresh) in output(run), output(run)[-3000:]
    assert reached_hosts(run) == []
    assert es.get_source('canary-locks', 'app.example.com') is None
    # Without the check, nothing is read from Auto Scaling and the run goes on.
    run = deploy(es, tmp_path, alb, hosts=asg.hosts, rollout_autoscaling=False)
    assert 'Refusing to start' not in output(run) and reached_hosts(run) == HOSTS
    assert not [r for r in run.records if r['task'].endswith('Read the Auto Scaling group of every host') and r['status'] != 'skipped']


def test_a_host_in_standby_and_a_group_short_of_capacity_are_named(es, tmp_path, fleet):
    alb, asg = fleet
    asg.set_lifecycle(asg.hosts['web2'], 'Standby')
    run = deploy(es, tmp_path, alb, hosts=asg.hosts)
    assert run.rc != 0
    assert ('Refusing to start: Auto Scaling group web-asg has 1 InService instance(s), fewer than its desired capacity 2; '
            'web2 (%s) is Standby in Auto Scaling group web-asg, not InService.' % asg.hosts['web2']) in output(run), output(run)[-3000:]
    assert reached_hosts(run) == []


def test_auto_scaling_that_cannot_be_read_says_how_to_proceed(es, tmp_path, fleet):
    alb, asg = fleet
    run = deploy(es, tmp_path, dict(alb.aws_options, endpoint_url='http://127.0.0.1:9'), hosts=asg.hosts)
    assert run.rc != 0
    text = output(run)
    assert "Failed to read the hosts' Auto Scaling groups: Failed to describe" in text, text[-3000:]
    assert 'or set rollout_autoscaling=false' in text
    assert reached_hosts(run) == []


ROLLOUT = ['AZRebalance', 'AlarmNotification', 'HealthCheck', 'InstanceRefresh', 'ReplaceUnhealthy', 'ScheduledActions']


def record_tags(asg, name):
    groups = asg.client().describe_auto_scaling_groups(AutoScalingGroupNames=[name])['AutoScalingGroups']
    return {t['Key']: t['Value'] for t in groups[0].get('Tags', []) if t['Key'].startswith('immune-canary:')}


def results(run, task):
    return [r for r in run.records if r['task'].endswith(task) and r['status'] != 'skipped']


def test_a_run_refused_after_suspending_resumes_exactly_what_it_suspended(es, tmp_path, fleet):
    alb, asg = fleet
    # An operator's own suspension: the run must leave it as it is.
    asg.client().suspend_processes(AutoScalingGroupName='web-asg', ScalingProcesses=['AZRebalance', 'Launch'])
    run = deploy(es, tmp_path, alb, hosts=asg.hosts, rollout_run_id='app-3457-run/1&2')
    # The hosts do not exist: the run is refused at their first read, after it suspended.
    assert run.rc != 0 and reached_hosts(run) == HOSTS
    suspend = results(run, 'Suspend the Auto Scaling processes that would fight the rollout')
    assert len(suspend) == 1 and suspend[0]['result']['suspended_now'] == {'web-asg': [p for p in ROLLOUT if p != 'AZRebalance']}
    # Recorded under the run id, made a valid tag value.
    assert suspend[0]['result']['groups'][0]['record']['by'] == 'app-3457-run/1_2'
    resume = results(run, 'Resume the Auto Scaling processes the run suspended')
    assert len(resume) == 1 and resume[0]['result']['resumed_now'] == {'web-asg': [p for p in ROLLOUT if p != 'AZRebalance']}
    assert asg.suspended('web-asg') == ['AZRebalance', 'Launch']
    assert record_tags(asg, 'web-asg') == {}
    assert es.get_source('canary-locks', 'app.example.com') is None


def test_what_a_run_that_died_left_suspended_is_resumed_first(es, tmp_path, fleet):
    alb, asg = fleet
    client = asg.client()
    client.suspend_processes(AutoScalingGroupName='web-asg', ScalingProcesses=['HealthCheck', 'ReplaceUnhealthy', 'Launch'])
    client.create_or_update_tags(Tags=[
        {'ResourceId': 'web-asg', 'ResourceType': 'auto-scaling-group', 'Key': key, 'Value': value, 'PropagateAtLaunch': False}
        for key, value in (('immune-canary:suspended-processes', 'HealthCheck ReplaceUnhealthy'),
                           ('immune-canary:suspended-by', 'app.example.com-3456-20261205T230000Z'))])
    run = deploy(es, tmp_path, alb, hosts=asg.hosts, rollout_autoscaling_suspend=['HealthCheck'])
    assert ('WARNING: run app.example.com-3456-20261205T230000Z did not finish and left HealthCheck, ReplaceUnhealthy suspended '
            'in Auto Scaling group web-asg; resumed.') in output(run), output(run)[-3000:]
    # Then this run suspended HealthCheck again, as its own, and resumed it when it was refused.
    suspend = results(run, 'Suspend the Auto Scaling processes that would fight the rollout')
    assert suspend[0]['result']['suspended_now'] == {'web-asg': ['HealthCheck']}
    # Launch was the operator's, never in any record: still suspended.
    assert asg.suspended('web-asg') == ['Launch'] and record_tags(asg, 'web-asg') == {}


def test_no_process_is_suspended_with_an_empty_list(es, tmp_path, fleet):
    alb, asg = fleet
    run = deploy(es, tmp_path, alb, hosts=asg.hosts, rollout_autoscaling_suspend=[])
    assert reached_hosts(run) == HOSTS
    assert results(run, 'Suspend the Auto Scaling processes that would fight the rollout') == []
    assert results(run, 'Resume the Auto Scaling processes the run suspended') == []
    assert asg.suspended('web-asg') == []


def test_a_process_aws_does_not_know_is_refused_naming_the_option(es, tmp_path, fleet):
    alb, asg = fleet
    run = deploy(es, tmp_path, alb, hosts=asg.hosts, rollout_autoscaling_suspend=['AZRebalance', 'Rebalance'])
    assert run.rc != 0
    text = output(run)
    assert 'rollout_autoscaling_suspend' in text and 'Rebalance' in text and 'ReplaceUnhealthy' in text, text[-3000:]
    assert reached_hosts(run) == [] and asg.suspended('web-asg') == []
