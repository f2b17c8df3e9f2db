"""Reading deploy events: the query (pure) and the reader against the double, over real sockets."""

from __future__ import annotations

import json

import pytest

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._deploy_event import EventReader, build_event_query
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from doubles.es_double import EsDouble

SORT = [{'@timestamp': {'order': 'desc', 'unmapped_type': 'date'}}]


@pytest.mark.parametrize('params, index, filters, size', [
    (dict(app='app.example.com'), 'deploy-events-*', [{'term': {'app.keyword': 'app.example.com'}}], 1),
    (dict(app='a', phase='started', run_id='run-7', host='web-01', limit=5, index='deploy-events-2026.05'), 'deploy-events-2026.05',
     [{'term': {'app.keyword': 'a'}}, {'term': {'phase.keyword': 'started'}}, {'term': {'run_id.keyword': 'run-7'}},
      {'term': {'host.keyword': 'web-01'}}], 5),
    (dict(app='a', host='web-01', keyword_suffix='', limit=100), 'deploy-events-*', [{'term': {'app': 'a'}}, {'term': {'host': 'web-01'}}], 100),
    (dict(app='a', phase=None, run_id=None, host=None, index=None, limit=1, keyword_suffix=None), 'deploy-events-*',
     [{'term': {'app.keyword': 'a'}}], 1),
    (dict(app='a', index='deploy-events-2026.04,deploy-events-2026.05'), 'deploy-events-2026.04,deploy-events-2026.05',
     [{'term': {'app.keyword': 'a'}}], 1),
])
def test_query_is_term_filters_sorted_newest_first(params, index, filters, size):
    got_index, body = build_event_query(params)
    assert got_index == index
    assert body == {'query': {'bool': {'filter': filters}}, 'sort': SORT, 'size': size}


@pytest.mark.parametrize('value', ['app" OR app:*', 'app:x', 'app*', '*', 'a OR b', 'C:\\sites\\app', 'ap?', '(app)', 'app\\"', ' app '])
def test_hostile_values_travel_as_data(value):
    _index, body = build_event_query(dict(app=value, host=value, run_id=value))
    assert body['query']['bool']['filter'] == [{'term': {'app.keyword': value}}, {'term': {'run_id.keyword': value}},
                                               {'term': {'host.keyword': value}}]
    text = json.dumps({k: v for k, v in body.items() if k != 'query'})
    assert json.dumps(value)[1:-1] not in text


@pytest.mark.parametrize('params, message', [
    (dict(app=''), "Invalid app '': expected a non-empty string"),
    (dict(app=None), 'Invalid app None: expected a non-empty string'),
    (dict(app='a', host=''), "Invalid host '': expected a non-empty string or leave it unset"),
    (dict(app='a', phase='exploded'), "Invalid phase 'exploded': valid phases are started, drained, deployed, warmed, admitted, promoted, "
                                      'reverted, aborted, succeeded, failed'),
    (dict(app='a', limit=0), 'Invalid limit 0: expected a whole number from 1 to 100'),
    (dict(app='a', limit=101), 'Invalid limit 101: expected a whole number from 1 to 100'),
    (dict(app='a', limit=True), 'Invalid limit True: expected a whole number from 1 to 100'),
    (dict(app='a', index='Deploy-Events'), "Invalid index 'Deploy-Events': index names and patterns are lower case without "
                                           '\\ / ? " < > | # : or spaces'),
    (dict(app='a', index='events/_delete_by_query'), "Invalid index 'events/_delete_by_query': index names and patterns are lower case "
                                                     'without \\ / ? " < > | # : or spaces'),
    (dict(app='a', keyword_suffix='keyword'), "Invalid keyword_suffix 'keyword': expected an empty string or a sub-field suffix such as .keyword"),
])
def test_bad_input_is_refused_naming_option_and_value(params, message):
    with pytest.raises(CanaryError) as info:
        build_event_query(params)
    assert info.value.message == message


HOSTILE = ['app" OR app:*', 'app:x', 'app*', 'a OR b', 'C:\\sites\\app', 'app\\"']
LOOKALIKES = ['app', 'app x', 'appx', 'a', 'b', 'a b', 'C:\\\\sites\\\\app', 'C:sitesapp', 'app\\', 'app"', 'App:X', 'x']


def event(app, second, **extra):
    doc = {'@timestamp': '2026-05-01T12:00:%02d.000Z' % second, 'app': app, 'phase': 'started', 'run_id': 'run-%d' % second}
    doc.update(extra)
    return doc


@pytest.fixture(params=['es8', 'es9', 'opensearch2'])
def double(request):
    with EsDouble(request.param) as running:
        yield running


@pytest.fixture
def client(double):
    es = EsClient(dict(es_hosts=[double.url], es_max_retries=1, es_request_timeout=5))
    yield es
    es.close()


def read(client, **params):
    index, body = build_event_query(params)
    return EventReader(client).read(index, body)


def test_hostile_values_select_exactly_their_own_documents(double, client):
    docs, second = [], 0
    for app in HOSTILE + LOOKALIKES:
        for _copy in range(2):
            docs.append(event(app, second))
            second += 1
    double.index_docs('deploy-events-2026.05', docs)
    for app in HOSTILE + LOOKALIKES:
        found = read(client, app=app, limit=100)
        assert [e['app'] for e in found] == [app, app], app
        assert found[0]['@timestamp'] > found[1]['@timestamp']


def test_newest_first_limit_and_filters_across_monthly_indices(double, client):
    fallbacks = {'web-01.example.com': '3456', '10.0.0.7': '3455'}
    double.index_docs('deploy-events-2026.04', [event('app.example.com', 1, data={'fallbacks': {'web-01.example.com': '3455'}}),
                                                event('app.example.com', 5, phase='failed', host='web-01')])
    double.index_docs('deploy-events-2026.05', [event('app.example.com', 3, data={'fallbacks': fallbacks}),
                                                event('other.example.com', 9),
                                                event('app.example.com', 7, phase='promoted', host='web-01')])
    double.index_docs('unrelated', [event('app.example.com', 59)])
    newest = read(client, app='app.example.com')
    assert [e['run_id'] for e in newest] == ['run-7']
    started = read(client, app='app.example.com', phase='started')
    assert started == [event('app.example.com', 3, data={'fallbacks': fallbacks})]
    assert [e['run_id'] for e in read(client, app='app.example.com', limit=100)] == ['run-7', 'run-5', 'run-3', 'run-1']
    assert [e['run_id'] for e in read(client, app='app.example.com', limit=2)] == ['run-7', 'run-5']
    assert [e['run_id'] for e in read(client, app='app.example.com', host='web-01', limit=10)] == ['run-7', 'run-5']
    assert [e['run_id'] for e in read(client, app='app.example.com', run_id='run-1', limit=10)] == ['run-1']
    assert read(client, app='app.example.com', phase='aborted') == []
    assert read(client, app='nobody') == []
    assert read(client, app='app.example.com', index='nothing-*') == []
    searches = [s for s in double.searches if s.get('size')]
    assert all(set(s) == {'query', 'sort', 'size'} for s in searches)


def test_a_missing_named_index_is_a_clear_error(client):
    with pytest.raises(CanaryError) as info:
        read(client, app='a', index='deploy-events-1999.01')
    assert info.value.message == ('Failed to search index deploy-events-1999.01: HTTP 404 index_not_found_exception: '
                                  'no such index [deploy-events-1999.01]')


class Answer:
    """A client whose search answers a fixed body, for shapes the double never produces."""

    def __init__(self, body):
        self.body = body

    def search(self, _index, _body):
        return self.body


@pytest.mark.parametrize('answer, message', [
    ({'hits': {'total': {'value': 1}}}, 'Failed to read deploy events from index ev: the search answer has no hits list'),
    ({'hits': {'hits': [{'_id': 'x1', '_index': 'ev'}]}},
     'Failed to read deploy events from index ev: hit x1 has no _source (is _source disabled in the mapping?)'),
])
def test_odd_answers_are_clear_errors(answer, message):
    with pytest.raises(CanaryError) as info:
        EventReader(Answer(answer)).read('ev', {})
    assert info.value.message == message
