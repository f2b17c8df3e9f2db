"""Guards of the rollout, end to end: capacity, batches and bad input are
handled before or around any change. Each test has a lab of its own size."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import pytest

from lab.fleet import LAB_ALARMS, LAB_ASG
from support.ansible_runner import BIN, ansible_env
from support.e2e import FAST, PLAYBOOKS, Scenario, Watcher, applied_scripts, assert_fleet_converged, outcomes, running, running_lab, start_lab

SITE = 'app.example.com-%s'


@pytest.fixture(scope='module')
def lab2(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab2'), 2, '127.0.21', region='eu-west-2') as lab:
        yield lab


def test_two_hosts_with_min_healthy_2_are_refused_before_any_change(lab2, tmp_path):
    scenario = Scenario(lab2, tmp_path)
    run = scenario.play('deploy.yml', dict(scenario.release(2), rollout_min_healthy=2), rps=0)
    assert run.rc != 0
    assert 'min_healthy=2 would be violated' in run.stdout
    assert {h: applied_scripts(lab2, h) for h in lab2.hosts} == {'web1': 0, 'web2': 0}
    assert lab2.artifacts.downloads == []
    assert_fleet_converged(lab2, SITE % 1)

    # One host per zone: each would leave its zone empty, though the other zone keeps serving.
    run = scenario.play('deploy.yml', dict(scenario.release(2), rollout_min_healthy_per_az=1), rps=0)
    assert run.rc != 0
    text = ' '.join(run.stdout.split())
    assert 'min_healthy_per_az=1 would be violated, nothing was deregistered; app-https has 0 healthy other target(s) in eu-west-2a' in text
    assert 'in eu-west-2b, needs 1' in text, run.stdout[-3000:]
    assert {h: applied_scripts(lab2, h) for h in lab2.hosts} == {'web1': 0, 'web2': 0}
    # Nothing was left suspended by the refused run.
    assert lab2.asg.suspended(LAB_ASG) == []
    assert_fleet_converged(lab2, SITE % 1)


def test_serial_one_then_half_on_four_hosts(tmp_path):
    lab = start_lab(tmp_path / 'lab', 4, '127.0.22', region='eu-west-3')
    try:
        scenario = Scenario(lab, tmp_path)
        run = scenario.play('deploy.yml', dict(scenario.release(2), rollout_serial=[1, '50%']), rps=16)
        assert run.rc == 0, run.stdout[-3000:]
        assert set(outcomes(run).values()) == {'promoted'}
        assert run.customers['failures'] == 0, run.customers
        # Batches: web1 alone, then web2 and web3 together (50 % of 4), then web4.
        drained = {r['host']: r['started'] for r in run.records if r['task'].endswith('Drain the host from the load balancer')}
        promoted = {r['host']: r['ended'] for r in run.records if r['task'].endswith('Record the promotion')}
        assert promoted['web1'] <= min(drained['web2'], drained['web3'])
        assert max(drained['web2'], drained['web3']) < min(promoted['web2'], promoted['web3'])  # at the same time
        assert max(promoted['web2'], promoted['web3']) <= drained['web4']
        assert_fleet_converged(lab, SITE % 2)

        # Zone by zone (web1 and web3 in zone a, web2 and web4 in b): the first batch of two lies in one zone.
        run = scenario.play('deploy.yml', dict(scenario.release(3), rollout_serial=2, rollout_order='az'), rps=16)
        assert run.rc == 0, run.stdout[-3000:]
        zones = run.report['availability_zones']
        assert zones == {'web1': 'eu-west-3a', 'web2': 'eu-west-3b', 'web3': 'eu-west-3a', 'web4': 'eu-west-3b'}, zones
        assert 'Zone by zone: eu-west-3a web1, eu-west-3a web3, eu-west-3b web2, eu-west-3b web4' in run.stdout
        drained = {r['host']: r['started'] for r in run.records if r['task'].endswith('Drain the host from the load balancer')}
        promoted = {r['host']: r['ended'] for r in run.records if r['task'].endswith('Record the promotion')}
        assert max(promoted['web1'], promoted['web3']) <= min(drained['web2'], drained['web4'])
        assert run.customers['failures'] == 0, run.customers
        # Each promotion event names the host's zone.
        event = lab.es.get_source('deploy-events', '%s-web2-promoted' % run.report['run_id'])
        assert event['data']['availability_zone'] == 'eu-west-3b', event
        assert_fleet_converged(lab, SITE % 3)
    finally:
        lab.stop()


@pytest.fixture(scope='module')
def lab_alarms(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-alarms'), 2, '127.0.25', region='ap-southeast-1') as lab:
        yield lab


def test_an_alarm_that_fires_during_the_bake_reverts_the_canary_at_once(lab_alarms, tmp_path):
    lab = lab_alarms
    scenario = Scenario(lab, tmp_path)
    release = scenario.release(4)     # a good build: only the team's alarm stops it

    def baking(lab):
        web1 = lab.state()['hosts']['web1']
        return web1['running'] == [SITE % 4] and web1['routed']

    def fire(lab):
        lab.fault('alarm', alarm='app-target-p99')

    try:
        with Watcher(lab, baking, fire) as watcher:
            run = scenario.play('deploy.yml', dict(release, rollout_bake_seconds=30))
        assert watcher.fired.is_set()
    finally:
        lab.fault('alarm', alarm='app-target-p99', off=True)
    assert run.rc != 0
    assert outcomes(run) == {'web1': 'reverted', 'web2': 'untouched'}, run.stdout[-3000:]
    assert ('CloudWatch alarm fired: 1 CloudWatch alarm(s) in ALARM: app-target-p99 (Threshold Crossed: lab fault)'
            in run.report['hosts']['web1']['reason'])
    assert run.report['alarms'] == {'watched': list(LAB_ALARMS), 'preexisting': []}
    gate = [r for r in run.records if r['host'] == 'web1' and r['task'].endswith('Bake in production and let Elasticsearch decide')]
    assert gate[0]['ended'] - gate[0]['started'] < 20        # at the next look, not at the end of the 30 s bake
    assert run.customers['failures'] == 0, run.customers
    assert applied_scripts(lab, 'web2') == 0
    assert_fleet_converged(lab, SITE % 1)


def test_an_alarm_firing_at_the_start_refuses_the_run_unless_let_pass(lab_alarms, tmp_path):
    lab = lab_alarms
    scenario = Scenario(lab, tmp_path)
    release = scenario.release(5)
    before = {h: applied_scripts(lab, h) for h in lab.hosts}
    lab.fault('alarm', alarm='app-target-5xx')
    try:
        refused = scenario.play('deploy.yml', release, rps=0)
        assert refused.rc != 0
        assert ('Refusing to start: 1 CloudWatch alarm(s) of rollout_alarms in ALARM: app-target-5xx (Threshold Crossed: lab fault)'
                in refused.stdout), refused.stdout[-3000:]
        assert {h: applied_scripts(lab, h) for h in lab.hosts} == before and 'app-5.zip' not in lab.artifacts.downloads
        # Let pass: the run starts and the gates ignore that alarm while it stays in the same ALARM.
        run = scenario.play('deploy.yml', dict(release, rollout_alarms_preexisting='ignore'))
    finally:
        lab.fault('alarm', alarm='app-target-5xx', off=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert set(outcomes(run).values()) == {'promoted'}
    assert [a['name'] for a in run.report['alarms']['preexisting']] == ['app-target-5xx']
    assert {h: (v['group'], v['lifecycle_state']) for h, v in run.report['autoscaling']['hosts'].items()} == {
        'web1': (LAB_ASG, 'InService'), 'web2': (LAB_ASG, 'InService')}
    assert run.customers['failures'] == 0, run.customers
    assert_fleet_converged(lab, SITE % 5)


def test_an_instance_refresh_in_the_hosts_group_refuses_the_run_before_any_change(lab_alarms, tmp_path):
    lab = lab_alarms
    scenario = Scenario(lab, tmp_path)
    release = scenario.release(6)
    before = {h: applied_scripts(lab, h) for h in lab.hosts}
    refresh = lab.asg.client().start_instance_refresh(AutoScalingGroupName=LAB_ASG)['InstanceRefreshId']
    try:
        lab.asg.set_refresh(LAB_ASG, 'InProgress', percentage=10)
        run = scenario.play('deploy.yml', release, rps=0)
    finally:
        lab.asg.set_refresh(LAB_ASG, 'Cancelled')
    assert run.rc != 0
    assert ('Refusing to start: Auto Scaling group %s has an instance refresh InProgress (%s, 10%% complete)' % (LAB_ASG, refresh)
            in run.stdout), run.stdout[-3000:]
    assert {h: applied_scripts(lab, h) for h in lab.hosts} == before and 'app-6.zip' not in lab.artifacts.downloads


def test_the_group_cannot_replace_the_canary_while_it_is_deployed(lab_alarms, tmp_path):
    lab = lab_alarms
    scenario = Scenario(lab, tmp_path)
    before = len(lab.state()['autoscaling_actions'])

    def baking(lab):
        web1 = lab.state()['hosts']['web1']
        return web1['running'] == [SITE % 7] and web1['routed']

    def fails_the_groups_health_check(lab):
        lab.fault('asg-replace', host='web1')

    try:
        with Watcher(lab, baking, fails_the_groups_health_check) as watcher:
            run = scenario.play('deploy.yml', scenario.release(7))
        assert watcher.fired.is_set()
    finally:
        lab.fault('asg-replace', host='web1', off=True)
    assert run.rc == 0, run.stdout[-3000:]
    # The run had suspended HealthCheck and ReplaceUnhealthy: the group kept the host (outside a run it
    # terminates it: tests/integration/test_lab.py), and resumed them at the end.
    actions = lab.state()['autoscaling_actions'][before:]
    assert [a['action'] for a in actions] == ['kept: HealthCheck suspended, not marked Unhealthy'], actions
    assert set(outcomes(run).values()) == {'promoted'}
    assert lab.asg.suspended(LAB_ASG) == []
    assert run.customers['failures'] == 0, run.customers
    assert_fleet_converged(lab, SITE % 7)


def test_standby_drains_each_host_through_its_group_and_is_refused_below_the_minimum(lab_alarms, tmp_path):
    lab = lab_alarms
    scenario = Scenario(lab, tmp_path)
    client = lab.asg.client()
    seen = []

    def in_standby(lab):
        return lab.asg.lifecycle(lab.hosts['web1']['instance_id']) == 'Standby'

    def note(lab):
        group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[LAB_ASG])['AutoScalingGroups'][0]
        seen.append((group['DesiredCapacity'], lab.state()['hosts']['web1']['target_state']['app-https']))

    with Watcher(lab, in_standby, note) as watcher:
        run = scenario.play('deploy.yml', dict(scenario.release(8), rollout_drain_mode='standby'))
    assert watcher.fired.is_set(), run.stdout[-3000:]
    assert run.rc == 0, run.stdout[-3000:]
    assert set(outcomes(run).values()) == {'promoted'}
    # In Standby the group wanted one instance fewer (no replacement) and the host was out of the target group.
    assert seen[0][0] == 1 and seen[0][1] in ('draining', 'unused'), seen
    group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[LAB_ASG])['AutoScalingGroups'][0]
    assert group['DesiredCapacity'] == 2 and {i['LifecycleState'] for i in group['Instances']} == {'InService'}
    assert run.customers['failures'] == 0, run.customers
    assert_fleet_converged(lab, SITE % 8)

    # A group whose minimum is its size cannot give a host to Standby: refused before any change.
    before = {h: applied_scripts(lab, h) for h in lab.hosts}
    client.update_auto_scaling_group(AutoScalingGroupName=LAB_ASG, MinSize=2)
    try:
        run = scenario.play('deploy.yml', dict(scenario.release(9), rollout_drain_mode='standby'), rps=0)
    finally:
        client.update_auto_scaling_group(AutoScalingGroupName=LAB_ASG, MinSize=1)
    assert run.rc != 0
    text = ' '.join(run.stdout.split())
    assert 'Refusing rollout_drain_mode=standby for web1: Failed to put instance' in text, run.stdout[-3000:]
    assert 'Auto Scaling group %s would keep 1 InService instance(s), below its MinSize 2' % LAB_ASG in text
    assert {h: applied_scripts(lab, h) for h in lab.hosts} == before
    assert lab.asg.suspended(LAB_ASG) == []
    assert_fleet_converged(lab, SITE % 8)


@pytest.mark.parametrize('bad, message', [
    ({'rollout_package_checksum': 'md5:abc'}, 'Invalid rollout_package_checksum'),
    ({'rollout_version': 'a/b'}, 'Invalid rollout_version'),
    ({'rollout_public_url': 'app.example.com/health'}, 'Invalid rollout_public_url'),
    ({'rollout_warmup_statistic': 'p99'}, 'rollout_warmup_statistic'),
    ({'rollout_false_abort_rate': 0}, 'Invalid rollout_false_abort_rate'),
    # What only the module can judge, in preflight (the deploy step in check mode), before any host is drained.
    ({'rollout_app_pool_identity': 'gmsa', 'rollout_app_pool_username': 'LAB\\svc-app'},
     "a group Managed Service Account is DOMAIN\\\\name$"),
    ({'rollout_site_sections': [{'section': 'system.webServer/windowsAuthentication', 'attributes': {'enabled': True}}]},
     "not a section of IIS's configuration"),
])
def test_bad_input_is_refused_before_any_host_is_touched(lab2, tmp_path, bad, message):
    lab = lab2
    scenario = Scenario(lab, tmp_path)
    before = {h: applied_scripts(lab, h) for h in lab.hosts}
    run = scenario.play('deploy.yml', dict(scenario.release(9), **bad), rps=0)
    assert run.rc != 0
    assert message in run.stdout, run.stdout[-3000:]
    assert {h: applied_scripts(lab, h) for h in lab.hosts} == before
    assert lab.artifacts.downloads == []
    assert_fleet_converged(lab, SITE % 1)  # nothing drained


def test_stop_after_first_then_continue_reverts_the_first_host_on_failure(tmp_path):
    """The AWX form of a human approval: run 1 stops after the first batch;
    run 2 continues with rollout_allow_mixed. When run 2 fails, the host of
    run 1 is reverted too."""
    lab = start_lab(tmp_path / 'lab', 2, '127.0.23', region='us-east-1')
    try:
        scenario = Scenario(lab, tmp_path)
        release = scenario.release(2, host_latency_ms={'web2': 400})
        first = scenario.play('deploy.yml', dict(release, rollout_stop_after_first=True))
        assert first.rc == 0, first.stdout[-3000:]
        assert first.report['result'] == 'stopped_after_first'
        assert outcomes(first) == {'web1': 'promoted', 'web2': 'untouched'}
        assert {h: s['running'] for h, s in lab.state()['hosts'].items()} == {'web1': [SITE % 2], 'web2': [SITE % 1]}
        refused = scenario.play('deploy.yml', release, rps=0)
        assert refused.rc != 0 and 'The hosts run different sites' in refused.stdout
        second = scenario.play('deploy.yml', dict(release, rollout_allow_mixed=True))
        assert second.rc != 0
        assert outcomes(second) == {'web1': 'reconciled', 'web2': 'reverted'}
        assert second.customers['failures'] == 0, second.customers
        assert_fleet_converged(lab, SITE % 1)
    finally:
        lab.stop()


def test_pause_after_first_waits_at_the_prompt_on_a_terminal(tmp_path):
    lab = start_lab(tmp_path / 'lab', 2, '127.0.24', region='us-west-2')
    master, slave = pty.openpty()
    try:
        scenario = Scenario(lab, tmp_path)
        variables = tmp_path / 'pause.json'
        # No customers here: the gate counts the lab's health checks (the
        # role leaves them out by default) so that the bake has samples.
        variables.write_text(json.dumps(dict(FAST, rollout_pause_after_first=True, rollout_gate_exclude={}, **scenario.release(2))),
                             encoding='utf-8')
        env = ansible_env({'ANSIBLE_NOCOLOR': '1'})
        # setsid --ctty: a session of its own whose controlling terminal is the pty, as in a shell.
        proc = subprocess.Popen(['setsid', '--ctty', '--wait', str(BIN / 'ansible-playbook'), str(PLAYBOOKS / 'deploy.yml'),
                                 '-i', str(lab.inventory_path), '-e', '@%s' % lab.vars_path, '-e', '@%s' % variables],
                                stdin=slave, stdout=slave, stderr=slave, env=env)
        output = read_until(master, b'Press Enter to continue', proc, 300)
        # At the prompt the first host is promoted and the second untouched.
        assert {h: s['running'] for h, s in lab.state()['hosts'].items()} == {'web1': [SITE % 2], 'web2': [SITE % 1]}
        time.sleep(1)
        assert proc.poll() is None  # it waits
        waiting = lab.es.get_source('canary-locks', 'app.example.com')
        os.write(master, b'\r')
        # After the wait the run extends its deploy lock before it goes on.
        deadline = time.monotonic() + 60
        lock = waiting
        while lock is not None and lock['expires_at'] == waiting['expires_at'] and time.monotonic() < deadline:
            time.sleep(0.05)
            lock = lab.es.get_source('canary-locks', 'app.example.com')
        assert lock is not None and lock['holder'] == waiting['holder'], (waiting, lock)
        assert lock['expires_at'] > waiting['expires_at'] and lock['acquired_at'] == waiting['acquired_at']
        assert running(lab)['web2'] == [SITE % 1]  # before the next host is touched
        output += read_until(master, None, proc, 300)
        assert proc.wait(30) == 0, output.decode(errors='replace')[-3000:]
        assert_fleet_converged(lab, SITE % 2)
    finally:
        os.close(master)
        os.close(slave)
        lab.stop()


def read_until(fd, marker, proc, timeout):
    """Read a terminal until marker shows (or, without one, until the process ends)."""
    seen = b''
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _w, _x = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b''
            seen += chunk
            if marker is not None and marker in seen:
                return seen
        elif proc.poll() is not None and marker is None:
            return seen
        if proc.poll() is not None and not ready and marker is not None:
            raise AssertionError('ansible-playbook ended before %r:\n%s' % (marker, seen.decode(errors='replace')[-3000:]))
    raise AssertionError('timed out waiting for %r:\n%s' % (marker, seen.decode(errors='replace')[-3000:]))


@pytest.fixture(scope='module')
def lab_scale(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-scale'), 2, '127.0.26', region='af-south-1') as lab:
        yield lab


def _inventory_with(lab, tmp_path, names):
    """The lab's inventory, plus the hosts ``names`` reached like web1 (as an operator adds instances a scale-out launched)."""
    inventory = json.loads(lab.inventory_path.read_text(encoding='utf-8'))
    hosts = inventory['all']['children']['web']['hosts']
    for name in names:
        hosts[name] = dict(hosts['web1'], ansible_host=lab.hosts[name]['address'])
    path = tmp_path / ('inventory-%s.json' % '-'.join(names))
    path.write_text(json.dumps(inventory), encoding='utf-8')
    return path


def test_instances_a_scale_out_adds_mid_rollout_are_reported_deployed_or_ignored(lab_scale, tmp_path):
    # Five rollouts with traffic; customers' failures are not counted here: the other end-to-end tests do, and
    # over five runs on a loaded machine a request in flight longer than the lab's 1 s drain may fail (a 502, once in CI).
    lab = lab_scale
    scenario = Scenario(lab, tmp_path)
    inventory = lab.inventory_path

    def baking(version):
        def check(lab):
            web1 = lab.state()['hosts']['web1']
            return web1['running'] == [SITE % version] and web1['routed']
        return check

    def scale_out(lab):
        lab.fault('scale-out', host='web2')       # the new instance runs what web2 runs: the old version

    def play(version, names=(), **extra):
        lab.inventory_path = _inventory_with(lab, tmp_path, names) if names else inventory
        try:
            return scenario.play('deploy.yml', dict(scenario.release(version), **extra))
        finally:
            lab.inventory_path = inventory

    # report (the default): every host of the run promoted, but the fleet is mixed: the run says so and fails.
    with Watcher(lab, baking(2), scale_out) as watcher:
        run = play(2)
    assert watcher.fired.is_set(), run.stdout[-3000:]
    assert run.rc != 0
    assert run.report['result'] == 'outdated', run.stdout[-3000:]
    assert set(outcomes(run).values()) == {'promoted'}
    new = run.report['new_instances']
    assert list(new) == ['web3'], new           # named by its Name tag, as the lab's logs name it
    entry = new['web3']
    assert entry['instance_id'] == lab.hosts['web3']['instance_id']
    assert (entry['outcome'], entry['site'], entry['autoscaling_group']) == ('outdated', SITE % 1, LAB_ASG), entry
    assert entry['availability_zone'] == 'af-south-1a'
    text = ' '.join(run.stdout.split())
    assert '1 instance(s) joined the target groups of app.example.com during the rollout and do not run app.example.com-2' in text
    assert 'web3 runs app.example.com-1' in text
    assert run.customers['requests'] > 0, run.customers
    assert running(lab)['web3'] == [SITE % 1]
    # As the failure says: the same release with web3 in the inventory and rollout_allow_mixed makes the fleet whole.
    run = play(2, ['web3'], rollout_allow_mixed=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert outcomes(run) == {'web1': 'untouched', 'web2': 'untouched', 'web3': 'promoted'}
    assert_fleet_converged(lab, SITE % 2)

    # deploy: an instance that joins during the run takes the new version in the same run.
    with Watcher(lab, baking(3), scale_out) as watcher:
        run = play(3, ['web3'], rollout_new_instances='deploy')
    assert watcher.fired.is_set()
    assert run.rc == 0, run.stdout[-3000:]
    assert run.report['result'] == 'promoted'
    entry = run.report['new_instances']['web4']
    assert entry['instance_id'] == lab.hosts['web4']['instance_id']
    assert (entry['outcome'], entry['site'], entry['fallback']) == ('promoted', SITE % 3, SITE % 2), entry
    assert entry['availability_zone'] == 'af-south-1b'
    assert run.customers['requests'] > 0, run.customers
    assert_fleet_converged(lab, SITE % 3)

    # ignore: the report lists the instance, and the run succeeds; the next run with it in the inventory takes it.
    with Watcher(lab, baking(4), scale_out) as watcher:
        run = play(4, ['web3', 'web4'], rollout_new_instances='ignore')
    assert watcher.fired.is_set()
    assert run.rc == 0, run.stdout[-3000:]
    assert run.report['result'] == 'promoted'
    assert {name: entry['outcome'] for name, entry in run.report['new_instances'].items()} == {'web5': 'ignored'}
    assert 'rollout_new_instances=ignore: left as they are' in run.stdout
    assert running(lab)['web5'] == [SITE % 3]
    run = play(4, ['web3', 'web4', 'web5'], rollout_allow_mixed=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert outcomes(run)['web5'] == 'promoted'
    assert run.customers['requests'] > 0, run.customers
    assert_fleet_converged(lab, SITE % 4)
