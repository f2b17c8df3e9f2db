"""Hostile values (quotes, backticks, $(), ;, newlines, Lucene operators, unicode) through the modules' real main():
never executed, never widening a query, coming back exactly as written."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.immune.canary.plugins.module_utils._iis_scripts import PACKAGE
from doubles.es_double import EsDouble, iis_log_docs
from doubles.winrm_double import client_params
from support.module_main import run_main

HOSTILE = [
    "it's",
    'dq"quote',
    'back`tick',
    'semi;colon Remove-Item C:*',
    '$(Stop-Computer -Force)',
    'new\nline\r\nand more',
    'app-*',
    'app-1 OR app-2',
    'application_name:app-1',
    '*',
    'ünïcødé-网站-🚀',
]
IDS = ['quote', 'dquote', 'backtick', 'semicolon', 'subexpr', 'newline', 'wildcard', 'or', 'field', 'star', 'unicode']


@pytest.fixture(scope='module')
def es():
    with EsDouble('es8') as running:
        now = datetime.datetime.now(datetime.timezone.utc)
        for app in ('app-1', 'app-2'):
            running.index_docs('iis-logs-hostile', iis_log_docs(40, 'web1', app, now - datetime.timedelta(seconds=50), now, error_rate=0.5))
        yield running


@pytest.mark.parametrize('value', HOSTILE, ids=IDS)
def test_package_inputs_arrive_exactly_as_data_and_the_script_is_the_constant(winrm, value):
    host = winrm.hosts['web1']
    before = len(host.scripts)
    dest = 'D:\\sites\\' + value.replace('\n', ' ').replace('\r', ' ').strip()
    url = 'http://127.0.0.1:9/' + value.replace('\n', '%0A').replace('\r', '%0D').replace(' ', '%20') + '.zip'
    params = {k: v for k, v in client_params(winrm, winrm.running).items() if v is not None}
    failed, result, _warnings = run_main('iis_package', dict(params, url=url, dest=dest, checksum='sha256:' + 'b' * 64,
                                                             headers={'X-Label': value.replace('\n', ' ').replace('\r', ' ')}),
                                         check=True)
    assert not failed, result
    sent = host.scripts[before:]
    assert len(sent) == 1
    _header, script, doc = sent[0]
    assert script == PACKAGE
    assert (doc['url'], doc['dest'], doc['headers']) == (url, dest, {'X-Label': value.replace('\n', ' ').replace('\r', ' ')})
    assert winrm.violations == []


@pytest.mark.parametrize('value', HOSTILE, ids=IDS)
def test_gate_selection_is_one_term_filter_and_never_widens(es, value):
    es.reset_counters()
    failed, result, _warnings = run_main('es_health_gate', dict(
        es_hosts=[es.url], index='iis-logs-hostile', canary={'application_name': value}, bake_time=0, interval=1, no_data='pass',
        metrics=[{'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'min_samples': 1}]))
    assert not failed, result
    canary_filters = [body['aggs']['groups']['filters']['filters']['canary'] for body in es.searches if 'aggs' in body]
    assert canary_filters and all(f == {'bool': {'filter': [{'term': {'application_name': value}}]}} for f in canary_filters)
    # 80 documents of app-1 and app-2 (half of them errors) are there; none is the canary's.
    assert result['metrics'][0]['samples'] == 0, result['metrics'][0]
    assert es.mutations == []


@pytest.mark.parametrize('value', HOSTILE, ids=IDS)
def test_events_round_trip_exactly_and_reads_match_only_the_exact_value(es, value):
    es.reset_counters()
    common = dict(es_hosts=[es.url], index='deploy-events-hostile')
    event = dict(app=value, version=value, from_version=value, host=value, reason=value, run_id=value, phase='failed', outcome='failure',
                 data={'note': value, value: value})
    failed, written, _warnings = run_main('deploy_event', dict(common, event_id='ev-' + value, **event))
    assert not failed, written
    failed, read, _warnings = run_main('deploy_event_info', dict(common, app=value, run_id=value, host=value, limit=100))
    assert not failed, read
    assert len(read['events']) == 1
    got = read['events'][0]
    assert {k: got[k] for k in event} == event
    assert es.searches[-1]['query'] == {'bool': {'filter': [{'term': {'app.keyword': value}}, {'term': {'run_id.keyword': value}},
                                                            {'term': {'host.keyword': value}}]}}
    # The other apps' events are there and stay out.
    failed, other, _warnings = run_main('deploy_event_info', dict(common, app=value + '-not', limit=100))
    assert not failed and other['events'] == []


@pytest.mark.parametrize('value', HOSTILE, ids=IDS)
def test_lock_ids_are_the_exact_app_and_never_touch_another_apps_lock(es, value):
    common = dict(es_hosts=[es.url], index='locks-hostile', ttl=60)
    failed, neighbour, _warnings = run_main('deploy_lock', dict(common, app='app-1', run_id='neighbour'))
    assert not failed, neighbour
    failed, result, _warnings = run_main('deploy_lock', dict(common, app=value.replace('\n', ' ').replace('\r', ' '), run_id=value))
    if value.strip() and '\n' not in value:
        assert not failed, result
        assert result['result'] == 'acquired' and result['lock']['holder']['run_id'] == value
        assert es.get_source('locks-hostile', value)['holder']['run_id'] == value
        failed, released, _warnings = run_main('deploy_lock', dict(common, app=value, run_id=value, state='absent'))
        assert not failed and released['result'] == 'released'
    assert es.get_source('locks-hostile', 'app-1')['holder']['run_id'] == 'neighbour'
    run_main('deploy_lock', dict(common, app='app-1', run_id='neighbour', state='absent'))
