"""The secrets audit, end to end: a good and a failing rollout at -vvvv with marker secrets (WinRM password, AWS secret
key, Elasticsearch API key, webhook token); no marker may show in any output, report, event, notification or lab record.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from support.e2e import Scenario, WebhookReceiver, assert_fleet_converged, running_lab

SITE = 'app.example.com-%s'


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-secrets'), 2, '127.0.52', region='sa-east-1') as lab:
        yield lab


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
    # ansible-core 2.21 adds the (masked) module arguments to results only when asked; earlier releases always do.
    shown = {'ANSIBLE_INJECT_INVOCATION': 'true'}
    try:
        try:
            good = scenario.play('deploy.yml', dict(scenario.release(2), **secrets), args=['-vvvv'], timeout=1200, env=shown)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError('the run did not end: %s' % (exc.stdout or '')[-5000:]) from None
        assert good.rc == 0, good.stdout[-3000:]
        bad = scenario.play('deploy.yml', dict(scenario.release(3, error_rate=0.3), **secrets), args=['-vvvv'], timeout=1200, env=shown)
        assert bad.rc != 0 and bad.report['result'] == 'aborted'
    finally:
        lab.inventory_path, lab.winrm.password, lab.es.require_auth = saved
        hook.stop()
    assert_fleet_converged(lab, SITE % 2)
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
