"""immune.canary.cloudwatch_alarms through real ansible-playbook against moto's CloudWatch over HTTP."""

from __future__ import annotations

import pytest
from moto.cloudwatch import responses as cw_responses

from doubles.moto_alb import FAKE_SECRET_KEY, MotoALB
from doubles.moto_asg import MotoASG
from support.ansible_runner import run_module
from support.module_main import run_main


@pytest.fixture(scope='module')
def fleet():
    with MotoALB(region='eu-north-1') as alb, MotoASG(alb) as asg:
        asg.alarm('web-5xx')
        asg.alarm('web-latency', 'INSUFFICIENT_DATA', 'Insufficient Data: 1 datapoint was unknown')
        asg.alarm('web-errors')
        asg.alb = alb
        yield asg


def args(fleet, **extra):
    return dict(fleet.alb.aws_options, **extra)


def test_states_are_read_and_nothing_changes(fleet):
    for check in (False, True):
        run = run_module('cloudwatch_alarms', args(fleet, names=['web-latency', 'web-5xx'], fail_on_alarm=True), check=check)
        assert (run.failed, run.result['changed']) == (False, False), run.result
    alarms = run.result['alarms']
    assert [(a['name'], a['type'], a['state']) for a in alarms] == [('web-latency', 'metric', 'INSUFFICIENT_DATA'), ('web-5xx', 'metric', 'OK')]
    assert alarms[0]['reason'] == 'Insufficient Data: 1 datapoint was unknown'
    assert alarms[1]['updated'].endswith('+00:00') and alarms[1]['actions_enabled'] is True
    assert run.result['in_alarm'] == []


def test_fail_on_alarm_names_each_alarm_in_alarm_and_its_reason(fleet):
    cloudwatch = fleet.client('cloudwatch')
    cloudwatch.set_alarm_state(AlarmName='web-errors', StateValue='ALARM', StateReason='Threshold Crossed: 1 datapoint [42.0] > 10.0')
    try:
        run = run_module('cloudwatch_alarms', args(fleet, names=['web-5xx', 'web-errors'], fail_on_alarm=True))
        assert run.failed
        assert run.result['msg'] == ('Failed the alarm check: 1 CloudWatch alarm(s) in ALARM: web-errors '
                                     '(Threshold Crossed: 1 datapoint [42.0] > 10.0)')
        assert (run.result['changed'], run.result['in_alarm']) == (False, ['web-errors'])
        assert [a['state'] for a in run.result['alarms']] == ['OK', 'ALARM']

        run = run_module('cloudwatch_alarms', args(fleet, names=['web-5xx', 'web-errors']))
        assert (run.failed, run.result['changed'], run.result['in_alarm']) == (False, False, ['web-errors'])
    finally:
        cloudwatch.set_alarm_state(AlarmName='web-errors', StateValue='OK', StateReason='Threshold not crossed')


def test_an_unknown_alarm_is_refused_naming_the_option(fleet):
    run = run_module('cloudwatch_alarms', args(fleet, names=['web-5xx', 'web-5xxx']), verbosity=3, env={'ANSIBLE_INJECT_INVOCATION': 'true'})
    assert run.failed
    assert run.result['msg'] == 'Invalid value for option names: CloudWatch alarm(s) web-5xxx not found in this account and region'
    assert run.result['missing_alarms'] == ['web-5xxx']
    assert FAKE_SECRET_KEY not in run.stdout + run.stderr


@pytest.mark.parametrize('bad, message', [
    ({'names': []}, 'Invalid value for option names: []'),
    ({'names': ['web-5xx', '']}, "Invalid value for option names: ''"),
    ({'names': ['web-5xx'], 'fail_on_alarm': 'maybe'}, 'fail_on_alarm'),
    ({'names': ['web-5xx'], 'endpoint_url': 'ftp://x'}, "Invalid value for option endpoint_url: 'ftp://x'"),
], ids=['empty', 'blank', 'bool', 'endpoint'])
def test_bad_input_is_refused_before_any_request(fleet, bad, message, monkeypatch):
    calls = []
    original = cw_responses.CloudWatchResponse.call_action

    def counted(self):
        calls.append(self._get_action())
        return original(self)

    monkeypatch.setattr(cw_responses.CloudWatchResponse, 'call_action', counted)
    failed, result, _warnings = run_main('cloudwatch_alarms', args(fleet, **bad))
    assert failed and message in result['msg'], result
    assert calls == []
    assert not run_main('cloudwatch_alarms', args(fleet, names=['web-5xx']))[0]
    assert calls == ['DescribeAlarms']
