from __future__ import annotations

import os
import threading

import botocore.session
import pytest
from botocore.stub import Stubber

from ansible_collections.immune.canary.plugins.module_utils import _elbv2 as elbv2
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from support.servers import QuietHandler, serving

ARN = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/%s/0123456789abcdef'
TARGET = 'i-0aaaaaaaaaaaaaaaa'
OTHERS = ['i-0bbbbbbbbbbbbbbbb', 'i-0cccccccccccccccc']


# --------------------------------------------------------------------------
# Pure logic on tables
# --------------------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('1', ('count', 1)),
    (0, ('count', 0)),
    (3, ('count', 3)),
    (' 2 ', ('count', 2)),
    ('50%', ('percent', 50.0)),
    ('0%', ('percent', 0.0)),
    ('100%', ('percent', 100.0)),
    ('12.5 %', ('percent', 12.5)),
])
def test_parse_min_healthy_accepts_counts_and_percentages(value, expected):
    assert elbv2.parse_min_healthy(value) == expected


@pytest.mark.parametrize('value, fragment', [
    ('-1', "'-1'; expected a whole number"),
    (-1, "-1; expected a whole number"),
    ('101%', "'101%'; a percentage must lie between 0% and 100%"),
    ('half', "'half'; expected a whole number"),
    ('1.5', "'1.5'; expected a whole number"),
    ('%', "'%'; expected"),
    (True, 'True; expected'),
])
def test_parse_min_healthy_rejects_bad_values_naming_the_option(value, fragment):
    with pytest.raises(CanaryError) as info:
        elbv2.parse_min_healthy(value)
    assert info.value.message.startswith('Invalid value for option min_healthy: ')
    assert fragment in info.value.message


@pytest.mark.parametrize('min_healthy, others, required', [
    (('count', 0), 5, 0),
    (('count', 2), 0, 2),
    (('count', 3), 2, 3),
    (('percent', 0.0), 4, 0),
    (('percent', 50.0), 4, 2),
    (('percent', 50.0), 3, 2),      # rounded up
    (('percent', 100.0), 2, 2),
    (('percent', 10.0), 2, 1),      # at least one when above 0%
    (('percent', 50.0), 0, 1),      # a percentage never allows emptying a group
    (('percent', 33.3), 3, 1),
])
def test_required_healthy(min_healthy, others, required):
    assert elbv2.required_healthy(min_healthy, others) == required


def health(state, reason=None, description=None):
    return {'state': state, 'reason': reason, 'description': description}


@pytest.mark.parametrize('desired, observed, action', [
    ('present', elbv2.NOT_REGISTERED, 'register'),
    ('present', health('draining', 'Target.DeregistrationInProgress'), 'register'),
    ('present', health('unhealthy.draining'), 'register'),
    ('present', health('healthy'), None),
    ('present', health('initial', 'Elb.RegistrationInProgress'), None),
    ('present', health('unhealthy', 'Target.FailedHealthChecks'), None),
    ('present', health('unused', 'Target.NotInUse'), None),
    ('present', health('unused', 'Target.InvalidState'), None),
    ('absent', health('healthy'), 'deregister'),
    ('absent', health('initial'), 'deregister'),
    ('absent', health('unhealthy', 'Target.Timeout'), 'deregister'),
    ('absent', health('draining'), None),
    ('absent', elbv2.NOT_REGISTERED, None),
])
def test_plan_action(desired, observed, action):
    assert elbv2.plan_action(desired, observed) == action


@pytest.mark.parametrize('desired, observed, done', [
    ('present', health('healthy'), True),
    ('present', health('initial'), False),
    ('present', health('unhealthy', 'Target.FailedHealthChecks'), False),
    ('absent', health('draining'), False),
    ('absent', health('healthy'), False),
    ('absent', elbv2.NOT_REGISTERED, True),
])
def test_settled(desired, observed, done):
    assert elbv2.settled(desired, observed) is done


def group(name, other_healthy, other_targets, **extra):
    data = {'arn': ARN % name, 'name': name, 'other_healthy': other_healthy, 'other_targets': other_targets}
    data.update(extra)
    return data


@pytest.mark.parametrize('min_healthy, groups, planned, violating', [
    (('count', 1), [group('a', 2, 2)], 'deregister', []),
    (('count', 3), [group('a', 2, 2)], 'deregister', ['a']),
    (('count', 2), [group('a', 2, 3), group('b', 1, 3)], 'deregister', ['b']),
    (('count', 0), [group('a', 0, 0)], 'deregister', []),
    (('count', 5), [group('a', 0, 0)], None, []),          # nothing to deregister: nothing to guard
    (('percent', 50.0), [group('a', 1, 3)], 'deregister', ['a']),
    (('percent', 50.0), [group('a', 2, 3)], 'deregister', []),
    (('percent', 1.0), [group('a', 0, 0)], 'deregister', ['a']),
    (('percent', 0.0), [group('a', 0, 0)], 'deregister', []),
    (('count', 1), [group('orphan', 0, 2, load_balancer_arns=[])], 'deregister', []),   # serves nothing: nothing to keep
    (('count', 1), [group('a', 0, 2, load_balancer_arns=['lb'])], 'deregister', ['a']),
])
def test_capacity_violations(min_healthy, groups, planned, violating):
    actions = {g['arn']: planned for g in groups}
    found = elbv2.capacity_violations(min_healthy, groups, actions)
    assert [g['name'] for g, _healthy, _required in found] == violating


ZONES = {TARGET: 'z-a', 'i-a2': 'z-a', 'i-a3': 'z-a', 'i-b1': 'z-b', 'i-b2': 'z-b'}


@pytest.mark.parametrize('minimum, groups, planned, violating', [
    (1, [group('g', 2, 2, other_healthy_ids=['i-a2', 'i-b1'])], 'deregister', []),
    (2, [group('g', 2, 2, other_healthy_ids=['i-a2', 'i-b1'])], 'deregister', [('g', 1)]),
    (1, [group('g', 2, 2, other_healthy_ids=['i-b1', 'i-b2'])], 'deregister', [('g', 0)]),
    (2, [group('g', 3, 3, other_healthy_ids=['i-a2', 'i-a3', 'i-b1'])], 'deregister', []),
    (0, [group('g', 0, 0, other_healthy_ids=[])], 'deregister', []),                     # off
    (1, [group('g', 0, 0, other_healthy_ids=[])], None, []),                             # nothing to deregister
    (1, [group('o', 0, 2, other_healthy_ids=[], load_balancer_arns=[])], 'deregister', []),   # serves nothing
    (1, [group('g', 1, 1, other_healthy_ids=['i-unknown'])], 'deregister', [('g', 0)]),       # a target of no known zone
])
def test_zone_violations(minimum, groups, planned, violating):
    actions = {g['arn']: planned for g in groups}
    found = elbv2.zone_violations(minimum, groups, actions, TARGET, ZONES)
    assert [(g['name'], zone, healthy, required) for g, zone, healthy, required in found] == [
        (name, 'z-a', healthy, minimum) for name, healthy in violating]
    # Off (0): never a violation.
    assert elbv2.zone_violations(0, groups, actions, TARGET, ZONES) == []


def test_healthy_others_are_the_healthy_targets_but_ours():
    descriptions = [
        {'Target': {'Id': TARGET, 'Port': 80}, 'TargetHealth': {'State': 'healthy'}},
        {'Target': {'Id': 'i-a2', 'Port': 80}, 'TargetHealth': {'State': 'healthy'}},
        {'Target': {'Id': 'i-b1', 'Port': 80}, 'TargetHealth': {'State': 'unhealthy'}},
        {'Target': {'Id': 'i-b2', 'Port': 80}, 'TargetHealth': {'State': 'draining'}},
        # Ours on another port is another target.
        {'Target': {'Id': TARGET, 'Port': 8080}, 'TargetHealth': {'State': 'healthy'}},
    ]
    assert elbv2.healthy_others(descriptions, TARGET, 80) == ['i-a2', TARGET]


@pytest.mark.parametrize('desired, groups, expected', [
    ('absent', [{'deregistration_delay': 300}], 330.0),
    ('absent', [{'deregistration_delay': 10}, {'deregistration_delay': 120}], 150.0),
    ('absent', [{'deregistration_delay': 0}], 30.0),
    ('present', [{'health_check_interval': 30, 'healthy_threshold': 5, 'health_check_timeout': 5}], 185.0),
    ('present', [{'health_check_interval': 10, 'healthy_threshold': 3, 'health_check_timeout': 5},
                 {'health_check_interval': 5, 'healthy_threshold': 2, 'health_check_timeout': 2}], 65.0),
])
def test_default_wait_timeout(desired, groups, expected):
    assert elbv2.default_wait_timeout(desired, groups) == expected


@pytest.mark.parametrize('desired, groups, expected', [
    ('present', [{'name': 'web', 'health': health('unhealthy', 'Target.FailedHealthChecks', 'Health checks failed')}],
     'Failed to wait for target i-1 to become healthy in 1 target group(s): timed out after 12.3 s; '
     'last observed: web: unhealthy (Target.FailedHealthChecks: Health checks failed)'),
    ('absent', [{'name': 'a', 'health': health('draining', 'Target.DeregistrationInProgress', 'Target deregistration is in progress')},
                {'name': 'b', 'health': elbv2.NOT_REGISTERED}],
     'Failed to wait for target i-1 to finish draining in 2 target group(s): timed out after 12.3 s; '
     'last observed: a: draining (Target.DeregistrationInProgress: Target deregistration is in progress); '
     'b: unused (Target.NotRegistered: Target is not registered to the target group)'),
    ('present', [{'name': 'web', 'health': health('initial')}],
     'Failed to wait for target i-1 to become healthy in 1 target group(s): timed out after 12.3 s; last observed: web: initial'),
])
def test_timeout_message(desired, groups, expected):
    assert elbv2.timeout_message('i-1', desired, groups, 12.34) == expected


def describe(target_id, state, port=80, reason=None, description=None):
    target_health = {'State': state}
    if reason:
        target_health.update(Reason=reason, Description=description or reason)
    return {'Target': {'Id': target_id, 'Port': port}, 'TargetHealth': target_health}


@pytest.mark.parametrize('descriptions, expected', [
    ([], ('unused', 0, 0, 0, 0)),
    ([describe(TARGET, 'healthy'), describe(OTHERS[0], 'healthy'), describe(OTHERS[1], 'unhealthy', reason='Target.Timeout')],
     ('healthy', 2, 3, 1, 2)),
    ([describe(TARGET, 'draining', reason='Target.DeregistrationInProgress'), describe(OTHERS[0], 'healthy')],
     ('draining', 1, 1, 1, 1)),
    ([describe(TARGET, 'healthy', port=8080), describe(OTHERS[0], 'healthy')],   # another port is another target
     ('unused', 2, 2, 2, 2)),
    ([describe(OTHERS[0], 'draining'), describe(OTHERS[1], 'initial')],
     ('unused', 0, 1, 0, 1)),
])
def test_summarise_health(descriptions, expected):
    ours, healthy, total, other_healthy, other_total = elbv2.summarise_health(descriptions, TARGET, 80)
    assert (ours['state'], healthy, total, other_healthy, other_total) == expected


# --------------------------------------------------------------------------
# The whole operation with botocore's Stubber: waiting, rare error codes
# --------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def stubbed():
    client = botocore.session.get_session().create_client(
        'elbv2', region_name='eu-west-1', aws_access_key_id='AKIAFAKE', aws_secret_access_key='fake-secret')
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def tg(name, lbs=True, port=80):
    return {'TargetGroupArn': ARN % name, 'TargetGroupName': name, 'Port': port, 'Protocol': 'HTTP', 'VpcId': 'vpc-1',
            'TargetType': 'instance', 'HealthCheckIntervalSeconds': 10, 'HealthCheckTimeoutSeconds': 5, 'HealthyThresholdCount': 3,
            'LoadBalancerArns': ['arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x/1'] if lbs else []}


def expect_group(stubber, name, lbs=True, delay=60):
    stubber.add_response('describe_target_groups', {'TargetGroups': [tg(name, lbs)]}, {'Names': [name]})
    stubber.add_response('describe_target_group_attributes', {'Attributes': [
        {'Key': 'deregistration_delay.timeout_seconds', 'Value': str(delay)},
        {'Key': 'slow_start.duration_seconds', 'Value': '0'}]}, {'TargetGroupArn': ARN % name})


def expect_health(stubber, name, *descriptions):
    stubber.add_response('describe_target_health', {'TargetHealthDescriptions': list(descriptions)}, {'TargetGroupArn': ARN % name})


def run(client, clock, **kwargs):
    kwargs.setdefault('target_groups', ['web'])
    return elbv2.TargetRegistration(client, TARGET, sleep=clock.sleep, clock=clock, **kwargs).run()


def test_present_registers_then_waits_with_backoff_until_healthy(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    expect_health(stubber, 'web', describe(OTHERS[0], 'healthy'))
    stubber.add_response('register_targets', {}, {'TargetGroupArn': ARN % 'web', 'Targets': [{'Id': TARGET, 'Port': 80}]})
    for state in ('initial', 'initial', 'initial', 'healthy'):
        expect_health(stubber, 'web', describe(TARGET, state), describe(OTHERS[0], 'healthy'))
    result = run(client, clock, state='present')
    assert clock.sleeps == [1.0, 1.25, 1.562]  # the fake clock keeps milliseconds
    assert result['changed'] is True
    assert result['target_groups'][0]['target_state'] == 'healthy'
    assert result['target_groups'][0]['healthy_count'] == 2
    assert result['diff'] == {'before': {'web': {'registered': False, 'target_state': 'unused'}},
                              'after': {'web': {'registered': True, 'target_state': 'healthy'}}}


def test_backoff_is_capped_by_the_maximum_interval(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    for _poll in range(11):
        expect_health(stubber, 'web', describe(TARGET, 'initial'))
    expect_health(stubber, 'web', describe(TARGET, 'healthy'))
    result = run(client, clock, state='present', wait_timeout=600)
    assert result['changed'] is False
    # A quarter more each poll, from 1 s, capped at 5 s.
    assert clock.sleeps == [1.0, 1.25, 1.562, 1.953, 2.441, 3.052, 3.815, 4.768, 5.0, 5.0, 5.0]


def test_timeout_with_a_terminal_reason_keeps_waiting_and_shows_it(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    for _poll in range(10):
        expect_health(stubber, 'web', describe(TARGET, 'unhealthy', reason='Target.FailedHealthChecks', description='Health checks failed'))
    with pytest.raises(CanaryError) as info:
        run(client, clock, state='present', wait_timeout=20)
    assert info.value.message == (
        'Failed to wait for target %s to become healthy in 1 target group(s): timed out after 20.0 s; '
        'last observed: web: unhealthy (Target.FailedHealthChecks: Health checks failed)' % TARGET)
    assert sum(clock.sleeps) == pytest.approx(20.0, abs=0.01)
    assert info.value.details['target_groups'][0]['reason'] == 'Target.FailedHealthChecks'
    assert info.value.details['changed'] is False


def test_default_timeout_for_absent_follows_the_deregistration_delay(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web', delay=10)
    expect_health(stubber, 'web', describe(TARGET, 'healthy'), describe(OTHERS[0], 'healthy'))
    stubber.add_response('deregister_targets', {}, {'TargetGroupArn': ARN % 'web', 'Targets': [{'Id': TARGET, 'Port': 80}]})
    for _poll in range(14):
        expect_health(stubber, 'web', describe(TARGET, 'draining', reason='Target.DeregistrationInProgress'), describe(OTHERS[0], 'healthy'))
    with pytest.raises(CanaryError) as info:
        run(client, clock, state='absent')
    assert 'to finish draining' in info.value.message
    assert 'timed out after 40.0 s' in info.value.message
    assert info.value.details['wait_timeout'] == 40.0
    assert info.value.details['changed'] is True


def test_deregister_answering_invalid_target_is_not_a_change(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    expect_health(stubber, 'web', describe(TARGET, 'healthy'), describe(OTHERS[0], 'healthy'))
    stubber.add_client_error('deregister_targets', 'InvalidTarget', 'The specified target does not exist', 400)
    result = run(client, clock, state='absent', wait=False)
    assert result['changed'] is False


def test_capacity_guard_fails_before_any_mutating_call(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    expect_health(stubber, 'web', describe(TARGET, 'healthy'), describe(OTHERS[0], 'healthy'), describe(OTHERS[1], 'unhealthy'))
    with pytest.raises(CanaryError) as info:
        run(client, clock, state='absent', min_healthy=('count', 2))
    # The Stubber would raise on an unexpected deregister_targets call.
    assert info.value.message == ('Failed to deregister target %s: min_healthy=2 would be violated, nothing was deregistered; '
                                  'web has 1 healthy other target(s) of 2, needs 2' % TARGET)


def test_group_without_load_balancer_fails_at_once_before_registering(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'orphan', lbs=False)
    expect_health(stubber, 'orphan')
    with pytest.raises(CanaryError) as info:
        run(client, clock, state='present', target_groups=['orphan'])
    assert 'in orphan: the target group is not used by any load balancer' in info.value.message
    assert clock.sleeps == []


def test_check_mode_calls_nothing_that_mutates_and_does_not_wait(stubbed):
    client, stubber = stubbed
    clock = FakeClock()
    expect_group(stubber, 'web')
    expect_health(stubber, 'web', describe(OTHERS[0], 'healthy'))
    result = run(client, clock, state='present', check_mode=True)
    assert result['changed'] is True
    assert result['diff']['after'] == {'web': {'registered': True, 'target_state': 'initial'}}
    assert clock.sleeps == []


def test_unknown_group_is_named(stubbed):
    client, stubber = stubbed
    stubber.add_response('describe_target_groups', {'TargetGroups': [tg('web')]}, {'TargetGroupArns': [ARN % 'web']})
    stubber.add_client_error('describe_target_groups', 'TargetGroupNotFound', 'One or more target groups not found', 400,
                             expected_params={'Names': ['api', 'ghost']})
    stubber.add_response('describe_target_groups', {'TargetGroups': [tg('api')]}, {'Names': ['api']})
    stubber.add_client_error('describe_target_groups', 'TargetGroupNotFound', 'One or more target groups not found', 400,
                             expected_params={'Names': ['ghost']})
    with pytest.raises(CanaryError) as info:
        elbv2.describe_target_groups(client, [ARN % 'web', 'api', 'ghost'])
    assert info.value.message == 'Failed to find target group(s) ghost: not found in this account and region'


def test_mixed_arns_and_names_come_back_in_the_given_order(stubbed):
    client, stubber = stubbed
    stubber.add_response('describe_target_groups', {'TargetGroups': [tg('b')]}, {'TargetGroupArns': [ARN % 'b']})
    stubber.add_response('describe_target_groups', {'TargetGroups': [tg('a'), tg('c')]}, {'Names': ['c', 'a']})
    found = elbv2.describe_target_groups(client, ['c', ARN % 'b', 'a'])
    assert [g['TargetGroupName'] for g in found] == ['c', 'b', 'a']


@pytest.mark.parametrize('code', ['InvalidClientTokenId', 'SignatureDoesNotMatch', 'ExpiredToken'])
def test_rejected_credentials_are_worded_for_users(stubbed, code):
    client, stubber = stubbed
    stubber.add_client_error('describe_target_groups', code, 'The security token included in the request is invalid.', 403)
    with pytest.raises(CanaryError) as info:
        elbv2.describe_target_groups(client, ['web'])
    assert info.value.message == ('Failed to describe target groups web: AWS rejected the credentials '
                                  '(%s: The security token included in the request is invalid.)' % code)
    assert 'fake-secret' not in info.value.message


def test_register_invalid_target_explains_running_and_vpc(stubbed):
    client, stubber = stubbed
    stubber.add_client_error('register_targets', 'InvalidTarget',
                             "The following targets are not in a running state and cannot be registered: 'i-1'", 400)
    with pytest.raises(CanaryError) as info:
        elbv2.register_target(client, ARN % 'web', 'i-1', 80, 'web', 'vpc-1')
    assert info.value.message == ("Failed to register target i-1 in target group web: InvalidTarget: The following targets are not in a "
                                  "running state and cannot be registered: 'i-1' (the target must exist, be running, and be in the "
                                  "target group's VPC vpc-1)")


# --------------------------------------------------------------------------
# Throttling: botocore's own retries over a real socket, bounded
# --------------------------------------------------------------------------

THROTTLED = (b'<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type>'
             b'<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId></ErrorResponse>')
DESCRIBED = (b'<DescribeTargetGroupsResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">'
             b'<DescribeTargetGroupsResult><TargetGroups><member><TargetGroupArn>' + (ARN % 'web').encode() +
             b'</TargetGroupArn><TargetGroupName>web</TargetGroupName><Port>80</Port></member></TargetGroups>'
             b'</DescribeTargetGroupsResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata>'
             b'</DescribeTargetGroupsResponse>')


def throttling_handler(throttle_first):
    state = {'requests': 0}
    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get('Content-Length', 0)))
            with lock:
                state['requests'] += 1
                throttled = state['requests'] <= throttle_first
            body = THROTTLED if throttled else DESCRIBED
            self.send_response(400 if throttled else 200)
            self.send_header('Content-Type', 'text/xml')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler, state


def params(url):
    return {'endpoint_url': url, 'region': 'eu-west-1', 'access_key': 'AKIAFAKE', 'secret_key': 'fake-secret-marker',
            'session_token': None, 'profile': None, 'validate_certs': True, 'aws_ca_bundle': None}


def test_throttling_is_retried_then_succeeds():
    handler, state = throttling_handler(throttle_first=2)
    with serving(handler) as server:
        client = aws_client(params(server.url), 'elbv2', max_attempts=3)
        found = elbv2.describe_target_groups(client, ['web'])
    assert [g['TargetGroupName'] for g in found] == ['web']
    assert state['requests'] == 3


def test_throttling_retries_are_bounded_and_reported():
    handler, state = throttling_handler(throttle_first=100)
    with serving(handler) as server:
        client = aws_client(params(server.url), 'elbv2', max_attempts=3)
        with pytest.raises(CanaryError) as info:
            elbv2.describe_target_groups(client, ['web'])
    # botocore's max_attempts counts retries: one call plus three retries.
    assert state['requests'] == 4
    assert info.value.message == 'Failed to describe target groups web: Throttling: Rate exceeded'
    assert 'fake-secret-marker' not in info.value.message


@pytest.mark.parametrize('validate_certs, bundle, verify', [
    (True, None, True),
    (True, '/etc/ssl/certs/ca-certificates.crt', '/etc/ssl/certs/ca-certificates.crt'),
    (False, '/etc/ssl/certs/ca-certificates.crt', False),   # an explicit false wins over AWS_CA_BUNDLE
    (False, None, False),
])
def test_client_certificate_validation(validate_certs, bundle, verify):
    client = aws_client(dict(params('https://127.0.0.1:9'), validate_certs=validate_certs, aws_ca_bundle=bundle), 'elbv2')
    assert client._endpoint.http_session._verify == verify


# --------------------------------------------------------------------------
# The capacity lock
# --------------------------------------------------------------------------

def test_capacity_lock_path_is_per_group_and_in_the_directory(tmp_path):
    one = elbv2.capacity_lock_path(ARN % 'web-https', str(tmp_path))
    assert one == elbv2.capacity_lock_path(ARN % 'web-https', str(tmp_path))
    assert one != elbv2.capacity_lock_path(ARN % 'web-http', str(tmp_path))
    assert one.startswith(str(tmp_path / elbv2.CAPACITY_LOCK_PREFIX)) and one.endswith('.lock')
    assert 'web-https' not in one   # a hash: no ARN characters in a file name


def test_capacity_lock_excludes_a_second_holder_of_the_same_group_until_released(tmp_path):
    entered = threading.Event()
    release = threading.Event()
    order = []

    def first():
        with elbv2.capacity_lock([ARN % 'web-https', ARN % 'web-http'], directory=str(tmp_path)):
            order.append('first in')
            entered.set()
            release.wait(5)
            order.append('first out')

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(5)
    # A different group is free at once.
    with elbv2.capacity_lock([ARN % 'other'], timeout=0, directory=str(tmp_path)):
        order.append('other group')
    # The same group waits; release it from a timer while waiting.
    timer = threading.Timer(0.3, release.set)
    timer.start()
    with elbv2.capacity_lock([ARN % 'web-http'], timeout=5, directory=str(tmp_path)):
        order.append('second in')
    thread.join(5)
    timer.join(5)
    assert order == ['first in', 'other group', 'first out', 'second in']


def test_capacity_lock_gives_up_after_the_timeout_naming_the_group_and_file(tmp_path):
    clock = FakeClock()
    with elbv2.capacity_lock([ARN % 'web-https'], directory=str(tmp_path)):
        with pytest.raises(CanaryError) as info:
            with elbv2.capacity_lock([ARN % 'web-https'], timeout=2, directory=str(tmp_path),
                                     sleep=clock.sleep, clock=clock):
                pytest.fail('the lock was taken twice')
    message = info.value.message
    assert message.startswith('Failed to lock target group %s for the capacity guard' % (ARN % 'web-https'))
    assert elbv2.capacity_lock_path(ARN % 'web-https', str(tmp_path)) in message and 'more than 2 s' in message
    assert clock.now >= 1002
    # Released on the way out: taken again at once.
    with elbv2.capacity_lock([ARN % 'web-https'], timeout=0, directory=str(tmp_path)):
        pass


def test_capacity_lock_refuses_a_symlinked_lock_file(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('keep')
    (tmp_path / 'x').mkdir()
    path = elbv2.capacity_lock_path(ARN % 'web-https', str(tmp_path / 'x'))
    os.symlink(victim, path)
    with pytest.raises(CanaryError) as info:
        with elbv2.capacity_lock([ARN % 'web-https'], directory=str(tmp_path / 'x')):
            pytest.fail('locked through a symlink')
    assert 'cannot open %s' % path in info.value.message
    assert victim.read_text() == 'keep'
