from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _cloudwatch as cw
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG


@pytest.mark.parametrize('names, expected', [
    (['a'], ['a']),
    ([' a ', 'b', 'a'], ['a', 'b']),
])
def test_names_are_stripped_and_deduplicated(names, expected):
    assert cw.validate_names(names) == expected


@pytest.mark.parametrize('names, message', [
    ([], 'Invalid value for option names: []; give a list of one or more CloudWatch alarm names'),
    ('web-5xx', "Invalid value for option names: 'web-5xx'; give a list"),
    (['ok', ' '], "Invalid value for option names: ' '; every entry must be an alarm name of 1 to 255 characters"),
    (['x' * 256], 'Invalid value for option names: '),
])
def test_bad_names_are_refused_naming_the_option(names, message):
    with pytest.raises(CanaryError) as caught:
        cw.validate_names(names)
    assert caught.value.message.startswith(message)


def test_firing_message_names_each_alarm_in_alarm_and_its_reason():
    alarms = [{'name': 'a', 'state': 'OK', 'reason': 'fine'}, {'name': 'b', 'state': 'ALARM', 'reason': '5xx above 10'},
              {'name': 'c', 'state': 'INSUFFICIENT_DATA', 'reason': None}, {'name': 'd', 'state': 'ALARM', 'reason': None}]
    assert cw.firing_message(alarms) == 'Failed the alarm check: 2 CloudWatch alarm(s) in ALARM: b (5xx above 10); d (no reason given)'


def test_one_call_per_hundred_names_metric_and_composite_alarms():
    with MotoALB(region='ca-central-1') as alb, MotoASG(alb) as fleet:
        names = ['alarm-%03d' % n for n in range(150)]
        for name in names:
            fleet.alarm(name)
        fleet.alarm('alarm-007', 'ALARM', 'Threshold Crossed')
        alb.client('cloudwatch').put_composite_alarm(AlarmName='web-any', AlarmRule='ALARM("alarm-007")')
        client = aws_client(alb.aws_params, 'cloudwatch')
        calls = []
        client.meta.events.register('before-call.cloudwatch.*', lambda model, **_: calls.append(model.name))
        found = cw.read_alarms(client, names + ['web-any'])
        assert calls == ['DescribeAlarms', 'DescribeAlarms']
        assert [a['name'] for a in found] == names + ['web-any']
        assert [(a['type'], a['state']) for a in found if a['name'] in ('alarm-006', 'alarm-007')] == [('metric', 'OK'), ('metric', 'ALARM')]
        assert found[-1]['type'] == 'composite'
        with pytest.raises(CanaryError) as caught:
            cw.read_alarms(client, ['alarm-001', 'no-such-alarm', 'nor-this'])
        assert caught.value.message == 'Invalid value for option names: CloudWatch alarm(s) no-such-alarm, nor-this not found in this account and region'
