"""Safety, end to end: one rollout at a time, and no secret anywhere a run leaves traces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from support.ansible_runner import BIN, ansible_env
from support.e2e import PLAYBOOKS, Scenario, WebhookReceiver, applied_scripts, assert_fleet_converged, start_lab

SITE = 'app.example.com-%s'
APP = 'app.example.com'


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    lab = start_lab(tmp_path_factory.mktemp('lab-safety'), 2, '127.0.51', region='sa-east-1')
    try:
        yield lab
    finally:
        lab.stop()


def events_in(lab):
    return lab.es.count('deploy-events') if 'deploy-events' in lab.es.indices else 0


def lock_of(lab):
    return lab.es.get_source('canary-locks', APP)


def test_a_second_deploy_is_refused_while_the_first_holds_the_lock_and_rollback_takes_it_over(lab, tmp_path):
    scenario = Scenario(lab, tmp_path)
    release = scenario.release(2)
    variables = tmp_path / 'first.json'
    variables.write_text(json.dumps(dict(release, rollout_run_id='first-run', rollout_bake_seconds=120)), encoding='utf-8')
    log = (tmp_path / 'first.log').open('w', encoding='utf-8')
    first = subprocess.Popen([str(BIN / 'ansible-playbook'), str(PLAYBOOKS / 'deploy.yml'), '-i', str(lab.inventory_path),
                              '-e', '@%s' % lab.vars_path, '-e', '@%s' % variables], env=ansible_env(), start_new_session=True,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while lock_of(lab) is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert lock_of(lab)['holder']['run_id'] == 'first-run', (tmp_path / 'first.log').read_text(encoding='utf-8')[-3000:]
        before = {h: applied_scripts(lab, h) for h in lab.hosts}
        events = events_in(lab)

        second = scenario.play('deploy.yml', dict(scenario.release(3), rollout_run_id='second-run'), rps=0)
        assert second.rc != 0
        assert 'Failed to acquire the deploy lock of app.example.com: held by run first-run (user ' in second.stdout
        assert 'playbook deploy.yml) since ' in second.stdout
        assert {h: applied_scripts(lab, h) for h in lab.hosts} == before
        assert events_in(lab) == events
        assert lock_of(lab)['holder']['run_id'] == 'first-run'
        assert first.poll() is None, 'the first run ended while the second ran; it must still hold the lock'
    finally:
        # The first run dies mid-rollout (its lock stays live): rollback.yml is the way out.
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        log.close()
    assert lock_of(lab)['holder']['run_id'] == 'first-run'
    rollback = scenario.play('rollback.yml', {'rollback_to': '1', 'rollout_run_id': 'rescue-run'}, rps=0)
    assert rollback.rc == 0, rollback.stdout[-3000:]
    assert 'The deploy lock of app.example.com was taken from run first-run' in rollback.stdout + rollback.stderr
    assert lock_of(lab) is None
    assert_fleet_converged(lab, SITE % 1)


def test_a_refused_preflight_releases_its_lock(lab, tmp_path):
    scenario = Scenario(lab, tmp_path)
    run = scenario.play('deploy.yml', dict(scenario.release(5), rollout_min_healthy=2, rollout_run_id='refused-run'), rps=0)
    assert run.rc != 0 and 'min_healthy=2 would be violated' in run.stdout
    assert any(r['task'].endswith('Take or release the deploy lock of the application') and r['result'].get('result') == 'released'
               for r in run.records), [r['task'] for r in run.records]
    assert lock_of(lab) is None


MARKERS = {
    'winrm password': 'WinRM-PW-MARK-7f3a1c',
    'aws secret key': 'AWS-SECRET-MARK-2b9c4e',
    'es api key': 'RVMtQVBJLUtFWS1NQVJLLTVkOGU=',
    'webhook token': 'HOOK-TOKEN-MARK-9e1d0a',
}


def lab_traces(lab):
    """Everything the lab recorded: stored documents, requests, scripts and their inputs, downloads."""
    traces = []
    with lab.es.lock:
        for index in lab.es.indices.values():
            traces.extend(json.dumps(index.source(row)) for row in range(index.size) if row not in index.deleted)
        traces.extend(lab.es.paths)
        traces.extend(json.dumps(body) for body in lab.es.searches)
    for host in lab.hosts.values():
        traces.extend(json.dumps([header, script, doc], default=str) for header, script, doc in host['sim'].scripts)
    traces.extend(lab.artifacts.downloads)
    return traces


def test_no_secret_in_any_output_event_notification_or_lab_record_at_vvvv(lab, tmp_path):
    """A good and a failing run at -vvvv with marker secrets: none of them shows anywhere."""
    scenario = Scenario(lab, tmp_path)
    hook = WebhookReceiver(MARKERS['webhook token'])
    inventory = json.loads(lab.inventory_path.read_text(encoding='utf-8'))
    for host in inventory['all']['children']['web']['hosts'].values():
        host['ansible_password'] = MARKERS['winrm password']
    marked_inventory = tmp_path / 'inventory.json'
    marked_inventory.write_text(json.dumps(inventory), encoding='utf-8')
    saved = (lab.inventory_path, lab.winrm.password, lab.es.require_auth)
    lab.inventory_path, lab.winrm.password = marked_inventory, MARKERS['winrm password']
    lab.es.require_auth = 'ApiKey ' + MARKERS['es api key']
    secrets = dict(rollout_aws=dict(lab.alb.aws_options, secret_key=MARKERS['aws secret key']),
                   rollout_es_options={'es_api_key': MARKERS['es api key']}, rollout_notify_webhook_url=hook.url)
    try:
        try:
            good = scenario.play('deploy.yml', dict(scenario.release(6), **secrets), args=['-vvvv'])
        except subprocess.TimeoutExpired as exc:
            raise AssertionError('the run did not end: %s' % (exc.stdout or '')[-5000:]) from None
        assert good.rc == 0, good.stdout[-3000:]
        bad = scenario.play('deploy.yml', dict(scenario.release(7, error_rate=0.3), **secrets), args=['-vvvv'])
        assert bad.rc != 0 and bad.report['result'] == 'aborted'
    finally:
        lab.inventory_path, lab.winrm.password, lab.es.require_auth = saved
        hook.stop()
    assert_fleet_converged(lab, SITE % 6)
    assert len(hook.messages) >= 5  # start and end of both runs, the revert
    places = {
        'stdout': good.stdout + bad.stdout,
        'stderr': good.stderr + bad.stderr,
        'task results': json.dumps(good.records + bad.records, default=str),
        'report': json.dumps([good.report, bad.report]),
        'notifications': json.dumps(hook.messages),
        'lab records': '\n'.join(lab_traces(lab)),
    }
    # The audit looks where the secrets would be: the events are there, -vvvv shows module invocations.
    assert '"phase": "started"' in places['lab records'] and 'module_args' in places['stdout'] + places['task results']
    leaks = {(name, place) for name, marker in MARKERS.items() for place, text in places.items() if marker in text}
    assert leaks == set()
