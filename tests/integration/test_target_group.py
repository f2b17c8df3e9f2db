"""The immune.canary.target_group inventory plugin through real ansible-inventory against moto over HTTP."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from ansible.release import __version__ as ANSIBLE_CORE_VERSION
from moto.autoscaling import responses as asg_responses

from doubles.moto_alb import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, MotoALB
from doubles.moto_asg import MotoASG
from support.ansible_runner import BIN, ROOT, ansible_env

# The region of inventory/app.target_group.yml, so that the example runs as shipped.
REGION = 'eu-west-1'
# ansible-inventory has --flush-cache from ansible-core 2.19 on.
FLUSH_OPTION = tuple(int(part) for part in ANSIBLE_CORE_VERSION.split('.')[:2]) >= (2, 19)


@pytest.fixture(scope='module')
def alb():
    with MotoALB(region=REGION) as harness:
        made = harness.seed(instances=3, groups=(('web-https', 'HTTPS', 443), ('web-http', 'HTTP', 80), ('app-https', 'HTTPS', 443)),
                            orphan_group='orphan')
        ec2, elbv2 = harness.client('ec2'), harness.client('elbv2')
        made['ip_group'] = elbv2.create_target_group(Name='by-address', Protocol='HTTP', Port=80, VpcId=made['vpc_id'],
                                                     TargetType='ip')['TargetGroups'][0]['TargetGroupArn']
        for index, instance in enumerate(made['instances']):
            ec2.create_tags(Resources=[instance], Tags=[{'Key': 'Name', 'Value': 'web-%02d' % (index + 1)},
                                                        {'Key': 'Role', 'Value': 'web' if index < 2 else 'api'}])
        made['addresses'] = {i['InstanceId']: (i['PrivateIpAddress'], i['PrivateDnsName'], i['Placement']['AvailabilityZone'])
                             for r in ec2.describe_instances(InstanceIds=made['instances'])['Reservations'] for i in r['Instances']}
        harness.made = made
        yield harness


def plain(value):
    """ansible-inventory --list marks values from inventory plugins as unsafe; unwrap them."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def run_inventory(tmp_path, config, *args, env=None):
    """Write ``<tmp>/fleet.target_group.yml`` and run ``ansible-inventory --list`` on it."""
    path = tmp_path / 'fleet.target_group.yml'
    path.write_text(json.dumps(dict(plugin='immune.canary.target_group', **config)), encoding='utf-8')
    base = {k: v for k, v in ansible_env().items() if not k.startswith(('AWS_', 'EC2_'))}
    base.update({'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true', 'HOME': str(tmp_path)})
    base.update(env or {})
    output = tmp_path / 'listing.json'
    proc = subprocess.run([str(BIN / 'ansible-inventory'), '-i', str(path), '--list', '--output', str(output), *args],
                          capture_output=True, text=True, timeout=180, env=base, check=False)
    listing = plain(json.loads(output.read_text(encoding='utf-8'))) if proc.returncode == 0 else None
    if output.exists():
        output.unlink()
    return proc, listing


def members(listing, group):
    return sorted(listing.get(group, {}).get('hosts', []))


def test_hosts_groups_and_constructed_features(alb, tmp_path):
    made = alb.made
    one, two, three = made['instances']
    config = dict(alb.aws_options, target_groups=['web-https', made['groups']['web-http']], hostnames=['tag:Name', 'instance-id'],
                  keyed_groups=[{'key': 'availability_zone', 'prefix': 'az'}, {'key': 'ec2_tags.Role', 'prefix': 'role'},
                                {'key': 'target_health', 'prefix': 'health'}],
                  groups={'in_service': "target_health == 'healthy'", 'first': "ec2_tags.Name == 'web-01'"},
                  compose={'ansible_connection': "'winrm'", 'ansible_port': '5986', 'winrm_name': "ec2_tags.Name ~ '.corp.example.com'"})
    proc, listing = run_inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert 'reserved name' not in proc.stderr
    hostvars = listing['_meta']['hostvars']
    assert sorted(hostvars) == ['web-01', 'web-02', 'web-03']

    web1 = hostvars['web-01']
    private_ip, private_dns, zone = made['addresses'][one]
    assert (web1['instance_id'], web1['ansible_host'], web1['private_ip_address'], web1['private_dns_name'], web1['availability_zone']) == (
        one, private_ip, private_ip, private_dns, zone)
    assert web1['ec2_tags'] == {'Name': 'web-01', 'Role': 'web'}
    assert web1['target_group_names'] == ['web-https', 'web-http']
    assert web1['target_group_arns'] == [made['groups']['web-https'], made['groups']['web-http']]
    assert [(g['name'], g['port'], g['state']) for g in web1['target_groups']] == [('web-https', 443, 'healthy'), ('web-http', 80, 'healthy')]
    assert (web1['target_port'], web1['target_health']) == (443, 'healthy')
    # ansible-core 2.18 renders composed values as text, 2.19 keeps their type.
    assert (web1['ansible_connection'], str(web1['ansible_port']), web1['winrm_name']) == ('winrm', '5986', 'web-01.corp.example.com')

    # A group per target group, keyed groups, conditional groups.
    assert members(listing, 'web_https') == members(listing, 'web_http') == ['web-01', 'web-02', 'web-03']
    assert 'orphan' not in listing
    assert members(listing, 'role_web') == ['web-01', 'web-02']
    assert members(listing, 'role_api') == ['web-03']
    assert members(listing, 'health_healthy') == members(listing, 'in_service') == ['web-01', 'web-02', 'web-03']
    assert members(listing, 'az_' + zone.replace('-', '_')) == ['web-01', 'web-02', 'web-03']
    assert members(listing, 'first') == ['web-01']
    assert {two, three} == {hostvars['web-02']['instance_id'], hostvars['web-03']['instance_id']}


def test_credentials_from_the_environment_ansible_host_source_and_prefix(alb, tmp_path):
    made = alb.made
    env = {'AWS_ACCESS_KEY_ID': FAKE_ACCESS_KEY, 'AWS_SECRET_ACCESS_KEY': FAKE_SECRET_KEY, 'AWS_REGION': REGION, 'AWS_URL': alb.endpoint_url}
    # Only an ARN, the group listed twice (by name too), names from the private DNS name.
    config = dict(target_groups=[made['groups']['web-http'], 'web-http'], hostnames=['private-dns'], ansible_host_source='private-dns',
                  group_prefix='tg_')
    proc, listing = run_inventory(tmp_path, config, '-vvv', env=env)
    assert proc.returncode == 0, proc.stderr
    dns_names = sorted(dns for _ip, dns, _zone in made['addresses'].values())
    assert sorted(listing['_meta']['hostvars']) == members(listing, 'tg_web_http') == dns_names
    for name, hostvars in listing['_meta']['hostvars'].items():
        assert hostvars['ansible_host'] == name
        assert hostvars['target_group_names'] == ['web-http']
        assert [g['port'] for g in hostvars['target_groups']] == [80]
    assert FAKE_SECRET_KEY not in proc.stdout + proc.stderr


def test_cache_serves_the_fleet_until_flushed(alb, tmp_path):
    made = alb.made
    cache_dir = tmp_path / 'cache'
    config = dict(alb.aws_options, target_groups=['web-https'], hostnames=['tag:Name'], keyed_groups=[{'key': 'ec2_tags.Build', 'prefix': 'build'}],
                  cache=True, cache_plugin='ansible.builtin.jsonfile', cache_connection=str(cache_dir), cache_timeout=3600)
    ec2 = alb.client('ec2')
    ec2.create_tags(Resources=made['instances'], Tags=[{'Key': 'Build', 'Value': 'b1'}])

    proc, listing = run_inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert members(listing, 'build_b1') == ['web-01', 'web-02', 'web-03']
    assert len(list(cache_dir.iterdir())) == 1
    assert FAKE_SECRET_KEY not in ''.join(p.read_text(encoding='utf-8') for p in cache_dir.iterdir())

    ec2.create_tags(Resources=made['instances'], Tags=[{'Key': 'Build', 'Value': 'b2'}])
    proc, listing = run_inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert members(listing, 'build_b1') == ['web-01', 'web-02', 'web-03']     # from the cache
    assert 'build_b2' not in listing

    if FLUSH_OPTION:
        proc, listing = run_inventory(tmp_path, config, '--flush-cache')
    else:  # ansible-inventory 2.18 has no --flush-cache: remove the cache files, which is what flushing does
        for entry in cache_dir.iterdir():
            entry.unlink()
        proc, listing = run_inventory(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert members(listing, 'build_b2') == ['web-01', 'web-02', 'web-03']
    assert 'build_b1' not in listing


@pytest.mark.parametrize('config, message', [
    ({'target_groups': ['web-https', 'no-such-group']},
     'Failed to find target group(s) no-such-group: not found in this account and region'),
    ({'target_groups': ['by-address']},
     "Failed to list the targets of target group by-address: its target type is 'ip'; only target groups of type 'instance' are supported"),
    ({'target_groups': ['web-https'], 'ansible_host_source': 'private_ip'},
     "Invalid value for option ansible_host_source: 'private_ip'; expected one of dns-name, instance-id"),
    ({'target_groups': ['web-https'], 'hostnames': ['tag:Role']},
     "Failed to name the hosts: instances "),
    ({'target_groups': ['web-https'], 'strict': True, 'compose': {'winrm_name': 'no_such_variable ~ ".corp"'}},
     "Could not set winrm_name for host i-"),
], ids=['unknown-group', 'ip-group', 'bad-source', 'duplicate-names', 'strict-compose'])
def test_errors_are_clear_and_hold_no_secret(alb, tmp_path, config, message):
    proc, _listing = run_inventory(tmp_path, dict(alb.aws_options, **config), '-vvv')
    assert proc.returncode != 0
    output = ' '.join((proc.stdout + proc.stderr).split())
    assert message in output, output
    assert FAKE_SECRET_KEY not in proc.stdout + proc.stderr


def test_a_file_not_named_target_group_yml_is_declined(alb, tmp_path):
    path = tmp_path / 'fleet.yml'
    path.write_text(json.dumps(dict(alb.aws_options, plugin='immune.canary.target_group', target_groups=['web-https'])), encoding='utf-8')
    env = dict(ansible_env(), ANSIBLE_INVENTORY_ENABLED='immune.canary.target_group', ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED='true')
    proc = subprocess.run([str(BIN / 'ansible-inventory'), '-i', str(path), '--list', '-vvv'], capture_output=True, text=True,
                          timeout=180, env=env, check=False)
    assert proc.returncode != 0
    assert 'declined parsing %s as it did not pass its verify_file() method' % path in proc.stdout + proc.stderr


def test_the_example_inventory_works(alb, tmp_path):
    """inventory/app.target_group.yml as shipped, against a fleet in its region."""
    example = ROOT / 'inventory' / 'app.target_group.yml'
    env = {'AWS_ACCESS_KEY_ID': FAKE_ACCESS_KEY, 'AWS_SECRET_ACCESS_KEY': FAKE_SECRET_KEY, 'AWS_URL': alb.endpoint_url}
    config = yaml.safe_load(example.read_text(encoding='utf-8'))
    config.pop('plugin')
    proc, listing = run_inventory(tmp_path, config, env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(listing['_meta']['hostvars']) == ['web-01', 'web-02', 'web-03']
    assert members(listing, 'app_https') == members(listing, 'health_healthy') == ['web-01', 'web-02', 'web-03']
    for hostvars in listing['_meta']['hostvars'].values():
        assert (hostvars['ansible_connection'], str(hostvars['ansible_port'])) == ('winrm', '5986')
        assert hostvars['ansible_host'] == hostvars['private_ip_address']
        assert hostvars['instance_id'] in alb.made['instances']


def test_auto_scaling_group_and_lifecycle_state_as_host_variables(tmp_path):
    """Two instances in an Auto Scaling group (one in Standby), one in none; keyed_groups on both variables."""
    with MotoALB(region='us-east-2') as harness, MotoASG(harness) as fleet:
        made = harness.made = harness.seed(instances=3)
        one, two, three = made['instances']
        fleet.create_group('web-asg', [one, two], target_groups=list(made['groups'].values()), min_size=1)
        fleet.client().enter_standby(AutoScalingGroupName='web-asg', InstanceIds=[two], ShouldDecrementDesiredCapacity=True)
        calls = []
        original = asg_responses.AutoScalingResponse.call_action

        def counted(self):
            calls.append(self._get_action())
            return original(self)

        keyed = [{'key': 'autoscaling_group', 'prefix': 'asg', 'default_value': 'none'},
                 {'key': 'autoscaling_lifecycle_state', 'prefix': 'lifecycle'}]
        config = dict(harness.aws_options, target_groups=['web-https', 'web-http'], keyed_groups=keyed,
                      groups={'standby': "autoscaling_lifecycle_state == 'Standby'"})
        asg_responses.AutoScalingResponse.call_action = counted
        try:
            proc, listing = run_inventory(tmp_path, config)
        finally:
            asg_responses.AutoScalingResponse.call_action = original
        assert proc.returncode == 0, proc.stderr
        assert calls == ['DescribeAutoScalingInstances']
        hostvars = listing['_meta']['hostvars']
        assert [(hostvars[i]['autoscaling_group'], hostvars[i]['autoscaling_lifecycle_state']) for i in (one, two, three)] == [
            ('web-asg', 'InService'), ('web-asg', 'Standby'), ('', '')]
        assert members(listing, 'asg_web_asg') == sorted([one, two])
        assert members(listing, 'asg_none') == [three]
        assert members(listing, 'lifecycle_InService') == [one]
        assert members(listing, 'lifecycle_Standby') == members(listing, 'standby') == [two]

        # Without the Auto Scaling read: no call, no variables.
        proc, listing = run_inventory(tmp_path, dict(config, autoscaling=False, keyed_groups=[], groups={}))
        assert proc.returncode == 0, proc.stderr
        assert not any('autoscaling_group' in v for v in listing['_meta']['hostvars'].values())
