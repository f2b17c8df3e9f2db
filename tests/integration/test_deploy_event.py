"""immune.canary.deploy_event through real ansible-playbook against the double."""

from __future__ import annotations

import datetime

import pytest

from doubles.es_double import EsDouble
from support.ansible_runner import run_module

MARKER = 'REVQTE9ZLUtFWS1NQVJLRVItOTk5'


@pytest.fixture(params=['es8', 'opensearch2'])
def double(request):
    with EsDouble(request.param) as running:
        running.require_auth = 'ApiKey ' + MARKER
        yield running


def event_args(double, **extra):
    base = dict(es_hosts=[double.url], es_api_key=MARKER, app='app.example.com', version='3457', from_version='3456',
                host='web-01', phase='admitted', run_id='run-7', duration=12.5, data={'verdict': 'pass'})
    base.update(extra)
    return base


def test_check_real_idempotent_check_idempotent(double):
    params = event_args(double, event_id='run-7-web-01-admitted')
    month = datetime.datetime.now(datetime.timezone.utc).strftime('deploy-events-%Y.%m')
    expected = [(True, True, 'skipped', 0), (False, True, 'created', 1), (True, False, 'exists', 1), (False, False, 'exists', 1)]
    for check, changed, outcome, stored in expected:
        run = run_module('deploy_event', params, check=check, diff=True, verbosity=3)
        assert not run.failed, run.result
        assert run.result['changed'] is changed
        assert run.result['result'] == outcome
        assert run.result['index'] == month
        assert run.result['id'] == 'run-7-web-01-admitted'
        assert double.count('deploy-events-*') == stored
        assert MARKER not in run.stdout + run.stderr
    event = run.result['event']
    assert set(event) == {'@timestamp', 'app', 'version', 'from_version', 'host', 'phase', 'run_id', 'duration', 'data', 'event_id'}
    assert event['@timestamp'].endswith('Z')
    assert MARKER not in repr(event)


def test_without_event_id_every_run_writes_and_check_mode_writes_nothing(double):
    run = run_module('deploy_event', event_args(double, phase='failed', outcome='failure', reason='errors 0.2 > 0.01'), check=True)
    assert run.result['changed'] is True and run.result['id'] is None
    assert double.count('deploy-events-*') == 0 if double.indices else True
    for _attempt in range(2):
        run = run_module('deploy_event', event_args(double, phase='failed', index='deploy-events-test'))
        assert run.result['changed'] is True and run.result['result'] == 'created'
    assert double.count('deploy-events-test') == 2


def test_bad_phase_and_secret_data_are_refused(double):
    run = run_module('deploy_event', event_args(double, phase='exploded'))
    assert run.failed
    assert run.result['msg'].startswith('value of phase must be one of: started, drained, deployed')
    run = run_module('deploy_event', event_args(double, data={'db_password': 'hunter2'}))
    assert run.failed
    assert run.result['msg'] == 'Invalid data: key(s) db_password look like secrets; deploy events must never carry secrets'
    assert double.requests == 0
