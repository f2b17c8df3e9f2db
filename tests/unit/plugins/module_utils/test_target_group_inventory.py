from __future__ import annotations

import datetime

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _target_group_inventory as tgi
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.moto_alb import MotoALB

ARN = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/%s/0123456789abcdef'


def facts(instance_id, private_ip='10.0.1.11', name=None, **extra):
    value = {
        'instance_id': instance_id, 'availability_zone': 'eu-west-1a', 'private_ip_address': private_ip,
        'private_dns_name': 'ip-%s.eu-west-1.compute.internal' % private_ip.replace('.', '-'),
        'public_ip_address': None, 'public_dns_name': None, 'ec2_tags': {'Name': name} if name else {},
    }
    value.update(extra)
    return value


def target(group, instance_id, port=443, state='healthy', reason=None):
    return {'target_group_arn': ARN % group, 'id': instance_id, 'port': port, 'state': state, 'reason': reason, 'description': None}


def data(targets, instances, groups=('web-https', 'web-http')):
    return {
        'target_groups': [{'arn': ARN % g, 'name': g, 'port': 443, 'protocol': 'HTTPS', 'vpc_id': 'vpc-1'} for g in groups],
        'targets': targets,
        'instances': {i['instance_id']: i for i in instances},
    }


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('instance-id', 'instance-id'),
    ('private-ip-address', 'private-ip-address'),
    ('private-ip', 'private-ip-address'),
    ('private-dns', 'private-dns-name'),
    ('public-ip', 'ip-address'),
    ('public-ip-address', 'ip-address'),
    ('public-dns', 'dns-name'),
    ('dns-name', 'dns-name'),
    ('tag:Name', 'tag:Name'),
    ('tag:aws:autoscaling:groupName', 'tag:aws:autoscaling:groupName'),
])
def test_sources_accept_aws_ec2_names_and_short_names(value, expected):
    assert tgi.normalize_source('hostnames', value) == expected


@pytest.mark.parametrize('option, value', [
    ('hostnames', 'private_ip'),
    ('ansible_host_source', 'tag:'),
    ('ansible_host_source', ''),
    ('hostnames', 'hostname'),
])
def test_bad_source_names_the_option_the_value_and_the_choices(option, value):
    with pytest.raises(CanaryError) as raised:
        tgi.normalize_source(option, value)
    assert raised.value.message.startswith('Invalid value for option %s: %r; expected one of ' % (option, value))
    assert 'private-ip-address' in raised.value.message and 'tag:<key>' in raised.value.message


@pytest.mark.parametrize('groups', [[], None, ['web', ' ']])
def test_target_groups_must_name_at_least_one_group(groups):
    with pytest.raises(CanaryError, match='^Invalid value for option target_groups: '):
        tgi.validate_options(groups, [], 'private-ip')


def test_validate_options_normalizes_everything():
    assert tgi.validate_options([' web ', ARN % 'api'], ['tag:Name', 'public-dns'], 'private-dns') == (
        ['web', ARN % 'api'], ['tag:Name', 'dns-name'], 'private-dns-name')


# --------------------------------------------------------------------------
# Mapping
# --------------------------------------------------------------------------

@pytest.mark.parametrize('states, worst', [
    (['healthy'], 'healthy'),
    (['healthy', 'initial'], 'initial'),
    (['draining', 'healthy'], 'draining'),
    (['unhealthy', 'draining'], 'unhealthy'),
    (['unused', 'initial'], 'unused'),
    (['healthy', 'something-new'], 'something-new'),
    ([], None),
])
def test_target_health_is_the_worst_state(states, worst):
    assert tgi.worst_health(states) == worst


@pytest.mark.parametrize('prefix, name, group', [
    ('', 'web-https', 'web_https'),
    ('tg_', 'web-https', 'tg_web_https'),
    ('', '2024-blue', '_2024_blue'),
    ('tg-', 'a', 'tg_a'),
])
def test_group_names_are_valid_ansible_names(prefix, name, group):
    assert tgi.group_name(prefix, name) == group


@pytest.mark.parametrize('hostnames, expected', [
    ([], ['i-1', 'i-2']),
    (['tag:Name'], ['web-01', 'i-2']),
    (['tag:Name', 'private-ip-address'], ['web-01', '10.0.1.12']),
    (['ip-address', 'private-dns-name'], ['ip-10-0-1-11.eu-west-1.compute.internal', '198.51.100.2']),
    (['instance-id', 'tag:Name'], ['i-1', 'i-2']),
])
def test_host_name_is_the_first_source_with_a_value(hostnames, expected):
    fleet = data([target('web-https', 'i-1'), target('web-https', 'i-2')],
                 [facts('i-1', name='web-01'), facts('i-2', '10.0.1.12', public_ip_address='198.51.100.2')])
    hosts, _groups, _warnings = tgi.build_hosts(fleet, hostnames)
    assert [h['name'] for h in hosts] == expected


@pytest.mark.parametrize('source, expected', [
    ('private-ip-address', '10.0.1.11'),
    ('private-dns-name', 'ip-10-0-1-11.eu-west-1.compute.internal'),
    ('ip-address', '198.51.100.1'),
    ('dns-name', 'ec2-198-51-100-1.eu-west-1.compute.amazonaws.com'),
    ('tag:Name', 'web-01.corp.example.com'),
])
def test_ansible_host_comes_from_the_chosen_source(source, expected):
    instance = facts('i-1', name='web-01.corp.example.com', public_ip_address='198.51.100.1',
                     public_dns_name='ec2-198-51-100-1.eu-west-1.compute.amazonaws.com')
    fleet = data([target('web-https', 'i-1')], [instance])
    hosts, _groups, warnings = tgi.build_hosts(fleet, [], source)
    assert hosts[0]['vars']['ansible_host'] == expected
    assert warnings == []


def test_a_host_without_the_chosen_address_gets_no_ansible_host_and_a_warning():
    fleet = data([target('web-https', 'i-1')], [facts('i-1')])
    hosts, _groups, warnings = tgi.build_hosts(fleet, [], 'ip-address')
    assert 'ansible_host' not in hosts[0]['vars']
    assert warnings == ['Host i-1 (i-1) has no ip-address; ansible_host is not set']


def test_one_host_per_instance_with_every_registration():
    fleet = data([target('web-https', 'i-1', 443, 'healthy'), target('web-https', 'i-2', 443, 'healthy'),
                  target('web-http', 'i-1', 80, 'draining', 'Target.DeregistrationInProgress')],
                 [facts('i-1'), facts('i-2', '10.0.1.12')])
    hosts, groups, warnings = tgi.build_hosts(fleet, [], 'private-ip-address', 'tg_')
    assert warnings == []
    assert [h['name'] for h in hosts] == ['i-1', 'i-2']
    first = hosts[0]['vars']
    assert first['target_group_names'] == ['web-https', 'web-http']
    assert first['target_group_arns'] == [ARN % 'web-https', ARN % 'web-http']
    assert [(g['name'], g['port'], g['state'], g['reason']) for g in first['target_groups']] == [
        ('web-https', 443, 'healthy', None), ('web-http', 80, 'draining', 'Target.DeregistrationInProgress')]
    assert (first['target_port'], first['target_health']) == (443, 'draining')
    assert (first['instance_id'], first['availability_zone'], first['private_ip_address'], first['ansible_host']) == (
        'i-1', 'eu-west-1a', '10.0.1.11', '10.0.1.11')
    assert hosts[1]['vars']['target_health'] == 'healthy'
    assert groups == {'tg_web_https': ['i-1', 'i-2'], 'tg_web_http': ['i-1']}


def test_an_instance_registered_on_two_ports_of_one_group_is_one_host_in_the_group_once():
    fleet = data([target('web-https', 'i-1', 443), target('web-https', 'i-1', 8443, 'initial')], [facts('i-1')], groups=('web-https',))
    hosts, groups, _warnings = tgi.build_hosts(fleet)
    assert len(hosts) == 1
    assert [g['port'] for g in hosts[0]['vars']['target_groups']] == [443, 8443]
    assert hosts[0]['vars']['target_group_names'] == ['web-https']
    assert hosts[0]['vars']['target_health'] == 'initial'
    assert groups == {'web_https': ['i-1']}


def test_a_target_whose_instance_is_gone_is_skipped_with_a_warning():
    fleet = data([target('web-https', 'i-1'), target('web-https', 'i-gone')], [facts('i-1')])
    hosts, groups, warnings = tgi.build_hosts(fleet)
    assert [h['name'] for h in hosts] == ['i-1']
    assert groups['web_https'] == ['i-1']
    assert warnings == ['Target i-gone of target group(s) web-https is not an existing instance; skipped']


def test_two_instances_with_one_host_name_are_an_error_naming_both():
    fleet = data([target('web-https', 'i-1'), target('web-https', 'i-2')], [facts('i-1', name='web'), facts('i-2', '10.0.1.12', name='web')])
    with pytest.raises(CanaryError) as raised:
        tgi.build_hosts(fleet, ['tag:Name'])
    assert raised.value.message == ("Failed to name the hosts: instances i-1 and i-2 both get the host name 'web' from hostnames ['tag:Name']; "
                                    "add instance-id to hostnames, or choose a unique source")


def test_an_empty_group_is_still_a_group():
    hosts, groups, _warnings = tgi.build_hosts(data([], []))
    assert hosts == []
    assert groups == {'web_https': [], 'web_http': []}


def test_instance_facts_keep_a_json_able_subset():
    launched = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    got = tgi.instance_facts({
        'InstanceId': 'i-1', 'Placement': {'AvailabilityZone': 'eu-west-1b'}, 'PrivateIpAddress': '10.0.1.11',
        'PrivateDnsName': 'ip-10-0-1-11.internal', 'PublicIpAddress': '', 'PublicDnsName': '', 'State': {'Name': 'running'},
        'InstanceType': 't3.large', 'Platform': 'windows', 'VpcId': 'vpc-1', 'SubnetId': 'subnet-1', 'ImageId': 'ami-1',
        'LaunchTime': launched, 'Tags': [{'Key': 'Name', 'Value': 'web-01'}, {'Key': 'Role', 'Value': 'web'}],
        'BlockDeviceMappings': [{'DeviceName': '/dev/sda1'}],
    })
    assert got == {
        'instance_id': 'i-1', 'availability_zone': 'eu-west-1b', 'private_ip_address': '10.0.1.11',
        'private_dns_name': 'ip-10-0-1-11.internal', 'public_ip_address': None, 'public_dns_name': None,
        'instance_state': 'running', 'instance_type': 't3.large', 'platform': 'windows', 'vpc_id': 'vpc-1',
        'subnet_id': 'subnet-1', 'image_id': 'ami-1', 'launch_time': '2026-01-02T03:04:05+00:00',
        'ec2_tags': {'Name': 'web-01', 'Role': 'web'},
    }


# --------------------------------------------------------------------------
# Reading the fleet from the ELBv2 and EC2 APIs (moto over a real socket)
# --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def alb():
    with MotoALB(region='eu-north-1') as harness:
        harness.made = harness.seed(instances=3, orphan_group='orphan')
        elbv2 = harness.client('elbv2')
        harness.made['ip_group'] = elbv2.create_target_group(
            Name='by-address', Protocol='HTTP', Port=80, VpcId=harness.made['vpc_id'], TargetType='ip')['TargetGroups'][0]['TargetGroupArn']
        harness.client('ec2').create_tags(Resources=harness.made['instances'][:1], Tags=[{'Key': 'Name', 'Value': 'web-01'}])
        yield harness


def clients(alb):
    return aws_client(alb.aws_params, 'elbv2'), aws_client(alb.aws_params, 'ec2')


def test_collect_reads_groups_targets_and_instances(alb):
    instances = alb.made['instances']
    got = tgi.collect(*clients(alb), ['web-https', alb.made['groups']['web-http'], 'web-https'])
    assert [g['name'] for g in got['target_groups']] == ['web-https', 'web-http']
    assert sorted((t['id'], t['port'], t['state']) for t in got['targets']) == sorted(
        [(i, 443, 'healthy') for i in instances] + [(i, 80, 'healthy') for i in instances])
    assert sorted(got['instances']) == sorted(instances)
    first = got['instances'][instances[0]]
    assert first['ec2_tags'] == {'Name': 'web-01'}
    assert first['private_ip_address'].startswith('10.20.1.')
    assert first['availability_zone'] == 'eu-north-1a'
    assert first['instance_state'] == 'running'


def test_collect_of_a_group_without_targets_is_empty(alb):
    got = tgi.collect(*clients(alb), ['orphan'])
    assert (got['targets'], got['instances']) == ([], {})


def test_collect_names_the_missing_group(alb):
    with pytest.raises(CanaryError) as raised:
        tgi.collect(*clients(alb), ['web-https', 'no-such-group'])
    assert raised.value.message == 'Failed to find target group(s) no-such-group: not found in this account and region'


def test_collect_refuses_an_ip_target_group(alb):
    with pytest.raises(CanaryError) as raised:
        tgi.collect(*clients(alb), ['web-https', alb.made['ip_group']])
    assert raised.value.message.startswith(
        "Failed to list the targets of target group by-address: its target type is 'ip'; only target groups of type 'instance' are supported")


@pytest.mark.parametrize('autoscaling, expected', [
    (None, {'i-1': None, 'i-2': None}),
    ({}, {'i-1': ('', ''), 'i-2': ('', '')}),
    ({'i-2': {'group': 'web-asg', 'lifecycle_state': 'Standby'}}, {'i-1': ('', ''), 'i-2': ('web-asg', 'Standby')}),
])
def test_auto_scaling_variables_are_set_only_when_read_and_empty_outside_a_group(autoscaling, expected):
    fleet = data([target('web-https', 'i-1'), target('web-https', 'i-2')], [facts('i-1'), facts('i-2', '10.0.1.12')], groups=('web-https',))
    if autoscaling is not None:
        fleet['autoscaling'] = autoscaling
    hosts, _groups, _warnings = tgi.build_hosts(fleet)
    found = {h['name']: (h['vars']['autoscaling_group'], h['vars']['autoscaling_lifecycle_state']) if 'autoscaling_group' in h['vars'] else None
             for h in hosts}
    assert found == expected
