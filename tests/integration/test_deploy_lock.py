"""immune.canary.deploy_lock through real ansible-playbook against the Elasticsearch double."""

from __future__ import annotations

import pytest

from doubles.es_double import EsDouble
from support.ansible_runner import run_module

MARKER = 'TE9DSy1LRVktTUFSS0VSLTQ0NA=='


@pytest.fixture
def double():
    with EsDouble('es8') as running:
        running.require_auth = 'ApiKey ' + MARKER
        yield running


def lock_args(double, run_id, **extra):
    return dict(dict(es_hosts=[double.url], es_api_key=MARKER, app='app.example.com', run_id=run_id, ttl=600,
                     holder={'playbook': 'deploy.yml'}), **extra)


def test_check_real_idempotent_then_refused_then_taken_over_then_released(double):
    expected = [(True, True, 'acquired'), (False, True, 'acquired'), (True, False, 'held'), (False, False, 'held')]
    for check, changed, outcome in expected:
        run = run_module('deploy_lock', lock_args(double, 'run-1'), check=check, diff=True, verbosity=3)
        assert not run.failed, run.result
        assert (run.result['changed'], run.result['result']) == (changed, outcome)
        assert run.result['lock']['holder']['run_id'] == 'run-1'
        assert MARKER not in run.stdout + run.stderr
        if changed and not check:
            assert run.result['diff'] == {'before': {}, 'after': double.get_source('canary-locks', 'app.example.com')}
    writes = list(double.mutations)
    assert writes == ['PUT /canary-locks/_create/app.example.com']

    refused = run_module('deploy_lock', lock_args(double, 'run-2'))
    assert refused.failed
    assert refused.result['msg'].startswith('Failed to acquire the deploy lock of app.example.com: held by run run-1 (user ')
    assert 'playbook deploy.yml) since ' in refused.result['msg'] and 'force=true' in refused.result['msg']
    assert refused.result['holder']['run_id'] == 'run-1'
    assert double.mutations == writes

    taken = run_module('deploy_lock', lock_args(double, 'rollback-1', force=True, holder={'playbook': 'rollback.yml'}))
    assert taken.result['result'] == 'taken_over' and taken.result['displaced']['run_id'] == 'run-1'
    assert 'taken from run run-1' in taken.stdout + taken.stderr  # the warning, as ansible-playbook shows it

    not_ours = run_module('deploy_lock', lock_args(double, 'run-1', state='absent'))
    assert not_ours.failed and 'held by run rollback-1' in not_ours.result['msg'] and 'not by this run (run-1)' in not_ours.result['msg']
    released = run_module('deploy_lock', lock_args(double, 'rollback-1', state='absent'), diff=True, verbosity=3)
    assert released.result['changed'] is True and released.result['result'] == 'released'
    assert released.result['diff']['after'] == {}
    assert double.get_source('canary-locks', 'app.example.com') is None
