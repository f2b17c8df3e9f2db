"""The lab's own behaviour: what an ALB, IIS and ELK would do, on loopback."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest
import winrm

from lab.dataplane import PinnedHTTPSConnection
from lab.fleet import GROUP, LAB_ALARMS, LAB_ASG, PUBLIC_NAME, Lab, host_address, loopback_network

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    fleet = Lab(tmp_path_factory.mktemp('lab'), hosts=3, drain_seconds=1, cold_start_s=0.3, health_interval=0.2, network='127.0.12')
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def target_state(lab, host):
    client = lab.alb.client('elbv2')
    for desc in client.describe_target_health(TargetGroupArn=lab.group_arn)['TargetHealthDescriptions']:
        if desc['Target']['Id'] == lab.hosts[host]['instance_id']:
            return desc['TargetHealth']['State']
    return None


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def get(address, port, ca, path='/'):
    conn = PinnedHTTPSConnection(address, port, PUBLIC_NAME, ssl.create_default_context(cafile=str(ca)), 10)
    conn.request('GET', path, headers={'Host': PUBLIC_NAME})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader('X-App-Version')


def test_up_brings_every_host_to_version_1_registered_and_healthy(lab):
    state = lab.state()
    assert sorted(state['hosts']) == ['web1', 'web2', 'web3']
    for host in state['hosts'].values():
        assert host['running'] == ['app.example.com-1']
        assert host['target_state'] == {GROUP: 'healthy'} and host['routed']
    inventory = json.loads(Path(lab.inventory_path).read_text())
    web1 = inventory['all']['children']['web']['hosts']['web1']
    assert web1['ansible_host'] == host_address(0, lab.network) and web1['instance_id'] == lab.hosts['web1']['instance_id']
    assert get(lab.plane.running.host, lab.plane.running.port, lab.ca.ca_path) == (200, '1')


def test_health_states_move_like_an_alb_and_draining_holds_for_the_delay(lab):
    client = lab.alb.client('elbv2')
    target = [{'Id': lab.hosts['web2']['instance_id']}]
    client.deregister_targets(TargetGroupArn=lab.group_arn, Targets=target)
    started = time.monotonic()
    assert target_state(lab, 'web2') == 'draining'
    assert lab.hosts['web2']['instance_id'] not in {t[0] for t in lab.routable()}
    assert wait_until(lambda: target_state(lab, 'web2') is None, 5)
    assert time.monotonic() - started >= 0.9  # deregistration_delay is 1 s
    client.register_targets(TargetGroupArn=lab.group_arn, Targets=target)
    assert target_state(lab, 'web2') == 'initial'
    assert lab.hosts['web2']['instance_id'] not in {t[0] for t in lab.routable()}
    assert wait_until(lambda: target_state(lab, 'web2') == 'healthy', 5)
    assert lab.hosts['web2']['instance_id'] in {t[0] for t in lab.routable()}


def test_data_plane_never_routes_to_a_draining_or_unhealthy_target(lab):
    web3 = lab.hosts['web3']['instance_id']
    lab.fault('health-fail', host='web3')
    try:
        assert wait_until(lambda: target_state(lab, 'web3') == 'unhealthy', 5)
        marked = len(lab.plane.access_log)
        statuses = [get(lab.plane.running.host, lab.plane.running.port, lab.ca.ca_path)[0] for _i in range(12)]
        assert statuses == [200] * 12
        assert web3 not in {e['target'] for e in lab.plane.access_log[marked:]}
    finally:
        lab.fault('health-fail', host='web3', off=True)
    assert wait_until(lambda: target_state(lab, 'web3') == 'healthy', 5)
    client = lab.alb.client('elbv2')
    client.deregister_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web3}])
    marked = len(lab.plane.access_log)
    for _i in range(12):
        get(lab.plane.running.host, lab.plane.running.port, lab.ca.ca_path)
    assert web3 not in {e['target'] for e in lab.plane.access_log[marked:]}
    assert wait_until(lambda: target_state(lab, 'web3') is None, 5)
    client.register_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web3}])
    assert wait_until(lambda: target_state(lab, 'web3') == 'healthy', 5)


def test_slow_start_of_the_target_group_ramps_a_new_targets_share(lab):
    ramp = 4.0
    client = lab.alb.client('elbv2')
    client.modify_target_group_attributes(TargetGroupArn=lab.group_arn, Attributes=[{'Key': 'slow_start.duration_seconds', 'Value': '4'}])
    web1 = lab.hosts['web1']['instance_id']

    def weights():
        routable = lab.routable()
        return dict(zip([t[0] for t in routable], lab.plane.weights(routable), strict=True))

    try:
        client.deregister_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web1}])
        assert wait_until(lambda: target_state(lab, 'web1') is None, 5)
        # The others have been healthy for a whole ramp: full weight.
        assert wait_until(lambda: set(weights().values()) == {1.0}, 2 * ramp)
        client.register_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web1}])
        assert wait_until(lambda: target_state(lab, 'web1') == 'healthy', 5)
        early = weights()
        assert early.pop(web1) < 0.5 and set(early.values()) == {1.0}
        assert wait_until(lambda: weights().get(web1) == 1.0, 2 * ramp)
    finally:
        client.modify_target_group_attributes(TargetGroupArn=lab.group_arn, Attributes=[{'Key': 'slow_start.duration_seconds', 'Value': '0'}])


def test_two_sites_cannot_hold_one_hosts_443(lab):
    sim = lab.hosts['web1']['sim']
    with sim.lock:
        sim.add_site('app.example.com-9', [dict(protocol='https', ip='*', port=443)], state='Stopped')
    result = sim.run_site_swap({'operation': 'apply', 'actions': [{'op': 'start_site', 'name': 'app.example.com-9'}]})
    try:
        assert result['failed'] and result['conflict_site'] == 'app.example.com-1'
        assert ('web1', 'app.example.com-9') not in lab.sites
        assert get(host_address(0, lab.network), 443, lab.ca.ca_path) == (200, '1')
    finally:
        sim.run_site_swap({'operation': 'apply', 'actions': [{'op': 'remove_site', 'name': 'app.example.com-9'},
                                                             {'op': 'remove_pool', 'name': 'app.example.com-9'}]})


def pings_logged(lab):
    query = json.dumps({'query': {'bool': {'filter': [{'term': {'url.path': '/api/ping'}}, {'term': {'host.name': 'web2'}}]}}}).encode()
    request = urllib.request.Request(lab.es.url + '/iis-logs-*/_count', data=query, headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return json.loads(response.read())['count']


def test_app_requests_are_logged_to_elasticsearch(lab):
    before = pings_logged(lab)
    get(host_address(1, lab.network), 443, lab.ca.ca_path, '/api/ping')
    # Logged after the response is sent, as IIS does: the client may read it first.
    assert wait_until(lambda: pings_logged(lab) == before + 1, timeout=5)
    time.sleep(0.2)
    assert pings_logged(lab) == before + 1      # once, not more


def test_the_hosts_are_spread_over_two_zones_in_the_auto_scaling_group(lab):
    found = lab.asg.client().describe_auto_scaling_instances(InstanceIds=[h['instance_id'] for h in lab.hosts.values()])
    zones = {i['InstanceId']: i['AvailabilityZone'] for i in found['AutoScalingInstances']}
    assert [zones[lab.hosts[h]['instance_id']] for h in ('web1', 'web2', 'web3')] == ['eu-west-1a', 'eu-west-1b', 'eu-west-1a']
    assert {i['AutoScalingGroupName'] for i in found['AutoScalingInstances']} == {LAB_ASG}


def test_asg_replace_terminates_a_host_unless_the_processes_are_suspended(lab):
    web2 = lab.hosts['web2']
    client = lab.asg.client()

    def health():
        return client.describe_auto_scaling_instances(InstanceIds=[web2['instance_id']])['AutoScalingInstances'][0]

    # Nothing suspended: marked Unhealthy and terminated; the host stops answering and leaves the target group.
    lab.fault('asg-replace', host='web2')
    try:
        assert lab.state()['autoscaling_actions'][-1] == {'host': 'web2', 'instance_id': web2['instance_id'], 'action': 'replaced: terminated'}
        assert (health()['LifecycleState'], health()['HealthStatus']) == ('Terminating', 'Unhealthy')
        assert wait_until(lambda: lab.state()['hosts']['web2']['target_state'][GROUP] == 'unhealthy', 10)
    finally:
        lab.fault('asg-replace', host='web2', off=True)
    assert (health()['LifecycleState'], health()['HealthStatus']) == ('InService', 'Healthy')
    assert wait_until(lambda: lab.state()['hosts']['web2']['target_state'][GROUP] == 'healthy', 10)

    # What a rollout suspends keeps it: HealthCheck does not even mark it; ReplaceUnhealthy alone marks but keeps it.
    for suspended, action, status in ((['HealthCheck', 'ReplaceUnhealthy'], 'kept: HealthCheck suspended, not marked Unhealthy', 'Healthy'),
                                      (['ReplaceUnhealthy'], 'kept: marked Unhealthy, ReplaceUnhealthy suspended', 'Unhealthy')):
        client.suspend_processes(AutoScalingGroupName=LAB_ASG, ScalingProcesses=suspended)
        try:
            lab.fault('asg-replace', host='web2')
            assert lab.state()['autoscaling_actions'][-1]['action'] == action
            assert (health()['LifecycleState'], health()['HealthStatus']) == ('InService', status)
            assert lab.state()['hosts']['web2']['target_state'][GROUP] == 'healthy'
        finally:
            lab.fault('asg-replace', host='web2', off=True)
            client.resume_processes(AutoScalingGroupName=LAB_ASG, ScalingProcesses=suspended)
    with pytest.raises(ValueError, match='fault asg-replace needs --host'):
        lab.fault('asg-replace')


def test_faults_switch_on_and_off(lab):
    web1 = lab.hosts['web1']
    session = winrm.Session('https://%s:5986/wsman' % web1['address'], auth=('canary', 'lab-Winrm-Pa55'), transport='basic',
                            server_cert_validation='validate', ca_trust_path=str(lab.ca.ca_path), read_timeout_sec=5, operation_timeout_sec=3)
    shell = session.protocol.open_shell()
    session.protocol.close_shell(shell)
    lab.fault('winrm-down', host='web1')
    try:
        with pytest.raises(Exception):  # noqa: B017 - any transport error: the host is gone
            session.protocol.open_shell()
    finally:
        lab.fault('winrm-down', host='web1', off=True)
    session.protocol.close_shell(session.protocol.open_shell())

    lab.fault('es-down')
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(lab.es.url + '/', timeout=3)  # noqa: S310 - loopback
    finally:
        lab.fault('es-down', off=True)
    with urllib.request.urlopen(lab.es.url + '/', timeout=3) as response:  # noqa: S310 - loopback
        assert response.status == 200

    client = lab.alb.client('elbv2')
    opts = lab.alb.aws_options
    once = boto3.client('elbv2', region_name=opts['region'], endpoint_url=opts['endpoint_url'], aws_access_key_id=opts['access_key'],
                        aws_secret_access_key=opts['secret_key'], config=botocore.config.Config(retries={'total_max_attempts': 1}))
    lab.fault('aws-throttle')
    try:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            once.describe_target_health(TargetGroupArn=lab.group_arn)
        assert info.value.response['Error']['Code'] == 'Throttling'
    finally:
        lab.fault('aws-throttle', off=True)
    assert client.describe_target_health(TargetGroupArn=lab.group_arn)['TargetHealthDescriptions']

    lab.fault('site-crash', host='web2')
    try:
        assert get(host_address(1, lab.network), 443, lab.ca.ca_path)[0] == 503
    finally:
        lab.fault('site-crash', host='web2', off=True)
    assert get(host_address(1, lab.network), 443, lab.ca.ca_path)[0] == 200
    assert lab.state()['faults'] == []


def test_the_alarm_fault_fires_one_of_the_teams_alarms_and_clears_it(lab):
    assert lab.vars['rollout_alarms'] == list(LAB_ALARMS)
    assert lab.alarm_states() == {name: 'OK' for name in LAB_ALARMS}
    lab.fault('alarm', alarm='app-target-5xx')
    try:
        alarm = lab.alb.client('cloudwatch').describe_alarms(AlarmNames=['app-target-5xx'])['MetricAlarms'][0]
        assert (alarm['StateValue'], alarm['StateReason']) == ('ALARM', 'Threshold Crossed: lab fault')
        assert lab.alarm_states()['app-target-p99'] == 'OK'
        assert lab.state()['faults'] == ['alarm@app-target-5xx']
    finally:
        lab.fault('alarm', alarm='app-target-5xx', off=True)
    assert lab.alarm_states() == {name: 'OK' for name in LAB_ALARMS}
    assert lab.state()['faults'] == []


def test_the_hosts_are_in_one_auto_scaling_group_that_registers_them_only_when_they_join(lab):
    client = lab.asg.client()
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[LAB_ASG])['AutoScalingGroups'][0]
    assert sorted(i['InstanceId'] for i in group['Instances']) == sorted(h['instance_id'] for h in lab.hosts.values())
    assert {i['LifecycleState'] for i in group['Instances']} == {'InService'}
    assert (group['DesiredCapacity'], group['MinSize'], group['TargetGroupARNs']) == (3, 1, [lab.group_arn])
    # As AWS does: a host a rollout deregisters stays out, whatever the group does next.
    web3 = lab.hosts['web3']['instance_id']
    lab.alb.client('elbv2').deregister_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web3}])
    try:
        client.update_auto_scaling_group(AutoScalingGroupName=LAB_ASG, MinSize=1)
        assert wait_until(lambda: lab.state()['hosts']['web3']['target_state'][GROUP] == 'unused', 10)
    finally:
        lab.alb.client('elbv2').register_targets(TargetGroupArn=lab.group_arn, Targets=[{'Id': web3}])
    assert wait_until(lambda: lab.state()['hosts']['web3']['target_state'][GROUP] == 'healthy', 10)


def test_unknown_fault_and_host_are_refused(lab):
    with pytest.raises(ValueError, match='unknown fault'):
        lab.fault('disk-full')
    with pytest.raises(ValueError, match="fault alarm needs the name of a lab alarm; got 'nope'; lab alarms: app-target-5xx, app-target-p99"):
        lab.fault('alarm', alarm='nope')
    with pytest.raises(ValueError, match="unknown host 'web9'"):
        lab.fault('site-crash', host='web9')


def listening(address, port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


LABCTL_NET = loopback_network('127.0.13')


def test_labctl_up_and_down_leave_no_process_or_port_behind(tmp_path):
    labctl = [str(ROOT / 'tests' / 'lab' / 'labctl')]
    env = dict(os.environ)
    up = subprocess.run(labctl + ['up', '--dir', str(tmp_path), '--hosts', '2', '--network', '127.0.13', '--cold-start', '0.2'],
                        capture_output=True, text=True, timeout=180, check=False, env=env)
    info = json.loads(up.stdout)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert listening(host_address(0, LABCTL_NET), 443) and listening(host_address(1, LABCTL_NET), 5986)
        state = json.loads(subprocess.run(labctl + ['state', '--dir', str(tmp_path)], capture_output=True, text=True, timeout=60,
                                          check=True).stdout)
        assert sorted(state['hosts']) == ['web1', 'web2']
        built = json.loads(subprocess.run(labctl + ['build', '7', '--dir', str(tmp_path), '--error-rate', '0.2'], capture_output=True,
                                          text=True, timeout=60, check=True).stdout)
        assert built['checksum'].startswith('sha256:') and built['manifest']['error_rate'] == 0.2
        fired = json.loads(subprocess.run(labctl + ['fault', 'alarm', 'app-target-p99', '--dir', str(tmp_path)], capture_output=True,
                                          text=True, timeout=60, check=True).stdout)
        assert fired == {'faults': ['alarm@app-target-p99']}
        refused = subprocess.run(labctl + ['fault', 'alarm', '--dir', str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1 and 'fault alarm needs the name of a lab alarm; got None' in refused.stdout
    finally:
        down = subprocess.run(labctl + ['down', '--dir', str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 0 and json.loads(down.stdout)['stopped']
    with pytest.raises(ProcessLookupError):
        os.kill(info['pid'], 0)
    control_port = int(info['control_url'].rsplit(':', 1)[1])
    alb_port = int(info['alb_url'].rsplit(':', 1)[1])
    assert not any([listening(host_address(0, LABCTL_NET), 443), listening(host_address(1, LABCTL_NET), 5986), listening('127.0.0.1', control_port),
                    listening('127.0.0.1', alb_port)])
