"""The rollout's CloudWatch alarms at preflight, through real ansible-playbook: refused before any host is read.

Against the Elasticsearch double (the deploy lock, the metrics check) and moto's CloudWatch; the
hosts do not exist, so a run that gets past the alarms fails at the first host read, which the
tests use as proof that the alarms let it start.
"""

from __future__ import annotations

import pytest

from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG
from support.preflight import deploy, fact, output, reached_hosts


@pytest.fixture
def cloudwatch():
    with MotoALB(region='sa-east-1') as alb, MotoASG(alb) as fleet:
        fleet.alarm('web-5xx')
        fleet.alarm('web-latency')
        yield alb, fleet


@pytest.mark.parametrize('bad', ['web-5xx', [''], ['web-5xx', 7], {'web-https': ['web-5xx']}, {'app-https': 'web-5xx'}, 3],
                         ids=['string', 'empty-name', 'not-a-name', 'unknown-group', 'group-to-string', 'number'])
def test_a_bad_rollout_alarms_is_named_before_anything_is_contacted(es, tmp_path, bad):
    run = deploy(es, tmp_path, rollout_alarms=bad)
    assert run.rc != 0
    text = output(run)
    assert 'Invalid rollout_alarms: ' in text and 'must be a list of CloudWatch alarm names, or a dict from an entry of' in text, text[-3000:]
    assert es.requests == 0


def test_a_bad_preexisting_mode_is_refused_naming_the_choices(es, tmp_path):
    run = deploy(es, tmp_path, rollout_alarms_preexisting='skip')
    assert run.rc != 0
    assert 'rollout_alarms_preexisting' in output(run) and 'refuse, ignore' in output(run)
    assert es.requests == 0


def test_an_alarm_that_does_not_exist_is_refused_and_the_lock_released(es, tmp_path, cloudwatch):
    alb, _fleet = cloudwatch
    run = deploy(es, tmp_path, alb, rollout_alarms=['web-5xx', 'web-5xxx'])
    assert run.rc != 0
    assert 'Invalid rollout_alarms: CloudWatch alarm(s) web-5xxx not found in this account and region' in output(run)
    assert reached_hosts(run) == []
    assert es.get_source('canary-locks', 'app.example.com') is None


def test_an_alarm_in_alarm_refuses_the_run_naming_it_and_its_reason(es, tmp_path, cloudwatch):
    alb, fleet = cloudwatch
    fleet.alarm('web-latency', 'ALARM', 'Threshold Crossed: p99 2.4 s > 2 s')
    run = deploy(es, tmp_path, alb, rollout_alarms=['web-5xx', 'web-latency'])
    assert run.rc != 0
    assert ('Refusing to start: 1 CloudWatch alarm(s) of rollout_alarms in ALARM: web-latency (Threshold Crossed: p99 2.4 s > 2 s).'
            in output(run)), output(run)[-3000:]
    assert 'rollout_alarms_preexisting=ignore' in output(run)
    assert reached_hosts(run) == []
    assert es.get_source('canary-locks', 'app.example.com') is None


def test_ignore_lets_the_run_start_and_says_so(es, tmp_path, cloudwatch):
    alb, fleet = cloudwatch
    fleet.alarm('web-latency', 'ALARM', 'Threshold Crossed')
    run = deploy(es, tmp_path, alb, rollout_alarms={'app-https': ['web-5xx', 'web-latency']}, rollout_alarms_preexisting='ignore')
    assert 'WARNING: rollout_alarms_preexisting=ignore: starting while web-latency in ALARM' in output(run), output(run)[-3000:]
    assert 'Refusing to start' not in output(run)
    assert reached_hosts(run) == ['web1', 'web2']   # past the alarms: the hosts are read (and do not exist here)
    state = fact(run, 'Record the alarms the bakes watch', '__rollout_run_state')['alarms']
    assert state['watched'] == ['web-5xx', 'web-latency']
    assert [(a['name'], a['state'], a['reason']) for a in state['preexisting']] == [('web-latency', 'ALARM', 'Threshold Crossed')]


def test_an_unreadable_alarm_is_not_called_invalid(es, tmp_path, cloudwatch):
    alb, _fleet = cloudwatch
    run = deploy(es, tmp_path, dict(alb.aws_options, endpoint_url='http://127.0.0.1:9'), rollout_alarms=['web-5xx'])
    assert run.rc != 0
    assert 'Failed to read rollout_alarms: Failed to describe CloudWatch alarms web-5xx' in output(run), output(run)[-3000:]
    assert reached_hosts(run) == []


def test_quiet_alarms_let_the_run_start_with_one_read_per_host(es, tmp_path, cloudwatch):
    alb, _fleet = cloudwatch
    run = deploy(es, tmp_path, alb, rollout_alarms=['web-5xx', 'web-latency'])
    reads = [r for r in run.records if r['task'].endswith("Read the CloudWatch alarms this host's bake will watch")]
    calls = [r['result']['alarms'] for r in reads]
    assert sorted(r['host'] for r in reads) == ['web1', 'web2']
    assert all([a['name'] for a in alarms] == ['web-5xx', 'web-latency'] and {a['state'] for a in alarms} == {'OK'} for alarms in calls)
    assert 'Refusing to start' not in output(run)
    assert reached_hosts(run) == ['web1', 'web2']
