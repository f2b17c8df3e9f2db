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
