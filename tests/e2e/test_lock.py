"""One rollout at a time, end to end: a second run is refused naming the holder; rollback takes the lock over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from support.ansible_runner import BIN, ansible_env
from support.e2e import PLAYBOOKS, Scenario, applied_scripts, assert_fleet_converged, running_lab

SITE = 'app.example.com-%s'
APP = 'app.example.com'


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-safety'), 2, '127.0.51', region='sa-east-1') as lab:
        yield lab


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
                              '-e', '@%s' % lab.vars_path, '-e', '@%s' % variables], env=ansible_env({'PYTHONUNBUFFERED': '1'}),
                             start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        # The first run holds the lock from its preflight on; once it bakes its
        # first host (120 s) it changes nothing more for a while, so whatever
        # changes after this point was done by the second run.
        deadline = time.monotonic() + 300
        while 'Bake in production and let Elasticsearch decide' not in (tmp_path / 'first.log').read_text(encoding='utf-8') \
                and time.monotonic() < deadline and first.poll() is None:
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
