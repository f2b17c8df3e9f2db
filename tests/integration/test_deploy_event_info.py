"""immune.canary.deploy_event_info through real ansible-playbook: events written by deploy_event, read back."""

from __future__ import annotations

import subprocess

import pytest

from doubles.es_double import EsDouble
from support.ansible_runner import BIN, ansible_env, run_module
from support.servers import dead_url

MARKER = 'SU5GTy1LRVktTUFSS0VSLTEyMw=='
APP = 'app.example.com'
FALLBACKS = {'web-01.example.com': '3456', '10.0.0.7': '3455'}


@pytest.fixture(params=['es8', 'opensearch2'])
def double(request):
    with EsDouble(request.param) as running:
        running.require_auth = 'ApiKey ' + MARKER
        yield running


def connection(double):
    return dict(es_hosts=[double.url], es_api_key=MARKER)


def write(double, **event):
    run = run_module('deploy_event', dict(connection(double), app=APP, version='3457', run_id='run-9', **event))
    assert not run.failed and run.result['changed'] is True, run.result
    return run.result['event']


def read(double, check=False, **selection):
    run = run_module('deploy_event_info', dict(connection(double), app=APP, **selection), check=check)
    assert MARKER not in run.stdout + run.stderr
    return run


def test_events_written_by_deploy_event_read_back_newest_first(double):
    started = write(double, phase='started', timestamp='2026-04-30T23:59:58Z', event_id='run-9-started', data={'fallbacks': FALLBACKS})
    deployed = write(double, phase='deployed', host='web-01.example.com', timestamp='2026-05-01T00:00:03Z', from_version='3456')
    failed = write(double, phase='failed', host='web-01.example.com', timestamp='2026-05-01T00:00:07Z', outcome='failure',
                   reason='error rate 0.2 > 0.01')
    assert sorted(double.indices) == ['deploy-events-2026.04', 'deploy-events-2026.05']
    # Lookalike apps must never be selected.
    double.index_docs('deploy-events-2026.05', [{'@timestamp': '2026-05-01T00:00:09.000Z', 'app': name, 'phase': 'started'}
                                                for name in ('app.example.com*', 'app.example.co', 'APP.EXAMPLE.COM', '*')])
    for check in (True, False):
        run = read(double, check=check)
        assert not run.failed, run.result
        assert run.result['changed'] is False
        assert run.result['events'] == [failed]
        assert run.result['elapsed'] >= 0
    run = read(double, limit=10)
    assert run.result['events'] == [failed, deployed, started]
    run = read(double, limit=2)
    assert run.result['events'] == [failed, deployed]
    run = read(double, phase='started', limit=5)
    assert run.result['events'] == [started]
    assert run.result['events'][0]['data']['fallbacks'] == FALLBACKS
    run = read(double, host='web-01.example.com', index='deploy-events-2026.05', limit=10)
    assert run.result['events'] == [failed, deployed]


def test_nothing_matching_is_an_empty_list_not_an_error(double):
    for check in (True, False):
        run = read(double, check=check, phase='aborted', run_id='run-1')
        assert not run.failed, run.result
        assert run.result['changed'] is False
        assert run.result['events'] == []


def test_elasticsearch_unreachable_is_a_clear_failure():
    run = run_module('deploy_event_info', dict(es_hosts=[dead_url()], es_api_key=MARKER, es_max_retries=1, es_request_timeout=2, app=APP))
    assert run.failed
    assert run.result['changed'] is False
    assert run.result['msg'].startswith('Failed to read server information from Elasticsearch: ConnectionError')
    assert '(after 2 attempts)' in run.result['msg']
    assert MARKER not in run.stdout + run.stderr


def test_bad_input_is_refused_before_any_request():
    with EsDouble('es9') as double:
        run = run_module('deploy_event_info', dict(es_hosts=[double.url], app=APP, limit=0))
        assert run.failed
        assert run.result['msg'] == 'Invalid limit 0: expected a whole number from 1 to 100'
        run = run_module('deploy_event_info', dict(es_hosts=[double.url], app=APP, phase='exploded'))
        assert run.failed
        assert run.result['msg'].startswith('value of phase must be one of: started, drained, deployed')
        assert double.requests == 0


def test_ansible_doc_renders():
    proc = subprocess.run([str(BIN / 'ansible-doc'), 'immune.canary.deploy_event_info'], capture_output=True, text=True,
                          env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'Read the newest deploy events' in proc.stdout or 'newest event documents' in proc.stdout
    for option in ('app', 'phase', 'run_id', 'host', 'limit', 'keyword_suffix', 'es_hosts'):
        assert option in proc.stdout
    assert 'RETURN VALUES' in proc.stdout and 'events' in proc.stdout
