"""The Elasticsearch double itself: DSL subset, aggregations, bulk, threads, faults."""

from __future__ import annotations

import datetime
import json
import threading
import urllib.error
import urllib.request

import elasticsearch
import pytest

from doubles.es_double import EsDouble, parse_date


@pytest.fixture
def double():
    with EsDouble('es9') as running:
        yield running


def call(double, method, path, body=None, ndjson=False):
    data = None
    headers = {'Accept': 'application/json'}
    if body is not None:
        data = body.encode() if ndjson else json.dumps(body).encode()
        headers['Content-Type'] = 'application/x-ndjson' if ndjson else 'application/json'
    request = urllib.request.Request(double.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b'null')
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b'null')


def search(double, body, index='logs'):
    status, response = call(double, 'POST', '/%s/_search' % index, body)
    assert status == 200, response
    return response


def docs():
    """Log documents with times relative to now (date math in queries is relative to now too)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return [
        {'@timestamp': (now - datetime.timedelta(seconds=10)).isoformat(), 'host': {'name': 'a'}, 'response': 200, 'time_taken': 10, 'tags': ['x', 'y']},
        {'@timestamp': (now - datetime.timedelta(seconds=20)).isoformat(), 'host': {'name': 'a'}, 'response': 500, 'time_taken': 20},
        {'@timestamp': (now - datetime.timedelta(seconds=40)).isoformat(), 'host': {'name': 'b'}, 'response': 503, 'time_taken': 30},
        {'@timestamp': (now - datetime.timedelta(minutes=5)).isoformat(), 'host.name': 'b', 'response': '200', 'time_taken': 40},
        {'@timestamp': (now - datetime.timedelta(minutes=5)).isoformat(), 'host': {'name': 'c'}},
    ]


@pytest.mark.parametrize('query, expected', [
    ({'match_all': {}}, 5),
    ({'term': {'host.name': 'a'}}, 2),
    ({'term': {'host.name.keyword': 'b'}}, 2),
    ({'term': {'response': '200'}}, 2),
    ({'terms': {'host.name': ['a', 'c']}}, 3),
    ({'term': {'tags': 'y'}}, 1),
    ({'range': {'@timestamp': {'gte': 'now-30s'}}}, 2),
    ({'range': {'@timestamp': {'gt': 'now-1m', 'lte': 'now'}}}, 3),
    ({'range': {'response': {'gte': 500}}}, 2),
    ({'range': {'time_taken': {'gt': 10, 'lt': 40}}}, 2),
    ({'exists': {'field': 'time_taken'}}, 4),
    ({'bool': {'filter': [{'term': {'host.name': 'b'}}], 'must_not': [{'range': {'response': {'gte': 500}}}]}}, 1),
    ({'bool': {'should': [{'term': {'host.name': 'a'}}, {'term': {'host.name': 'c'}}], 'minimum_should_match': 1}}, 3),
    ({'bool': {'must': {'term': {'host.name': 'a'}}, 'should': [{'term': {'response': 500}}]}}, 2),
    ({'bool': {'should': [{'term': {'host.name': 'a'}}, {'range': {'response': {'gte': 500}}}], 'minimum_should_match': 2}}, 1),
])
def test_query_subset(double, query, expected):
    double.index_docs('logs', docs())
    assert search(double, {'size': 0, 'query': query})['hits']['total']['value'] == expected
    status, count = call(double, 'POST', '/logs/_count', {'query': query})
    assert status == 200 and count['count'] == expected


def test_aggregations(double):
    double.index_docs('logs', docs())
    aggs = {
        'by_host': {'terms': {'field': 'host.name', 'size': 2}},
        'groups': {'filters': {'filters': {'a': {'term': {'host.name': 'a'}}, 'b': {'term': {'host.name': 'b'}}}},
                   'aggs': {'p50': {'percentiles': {'field': 'time_taken', 'percents': [50]}}, 'n': {'value_count': {'field': 'time_taken'}},
                            'bad': {'filter': {'range': {'response': {'gte': 500}}}}}},
        'avg': {'avg': {'field': 'time_taken'}}, 'sum': {'sum': {'field': 'time_taken'}},
        'min': {'min': {'field': 'time_taken'}}, 'max': {'max': {'field': 'time_taken'}},
        'hist': {'date_histogram': {'field': '@timestamp', 'fixed_interval': '1m', 'min_doc_count': 1}},
    }
    result = search(double, {'size': 0, 'aggs': aggs})['aggregations']
    assert [(b['key'], b['doc_count']) for b in result['by_host']['buckets']] == [('a', 2), ('b', 2)]
    assert result['by_host']['sum_other_doc_count'] == 1
    a, b = result['groups']['buckets']['a'], result['groups']['buckets']['b']
    assert (a['doc_count'], a['p50']['values']['50.0'], a['n']['value'], a['bad']['doc_count']) == (2, 15.0, 2, 1)
    assert (b['doc_count'], b['p50']['values']['50.0'], b['bad']['doc_count']) == (2, 35.0, 1)
    assert (result['avg']['value'], result['sum']['value'], result['min']['value'], result['max']['value']) == (25.0, 100.0, 10.0, 40.0)
    assert sum(bucket['doc_count'] for bucket in result['hist']['buckets']) == 5
    assert all(bucket['key'] % 60000 == 0 for bucket in result['hist']['buckets'])


def test_empty_groups_give_null_values(double):
    double.index_docs('logs', docs())
    aggs = {'g': {'filter': {'term': {'host.name': 'nobody'}},
                  'aggs': {'p': {'percentiles': {'field': 'time_taken', 'percents': [95]}}, 'avg': {'avg': {'field': 'time_taken'}}}}}
    result = search(double, {'size': 0, 'aggs': aggs})['aggregations']['g']
    assert result == {'doc_count': 0, 'p': {'values': {'95.0': None}}, 'avg': {'value': None}}


def test_index_create_bulk_create_refresh_and_errors(double):
    assert call(double, 'PUT', '/events', {'mappings': {'properties': {'when': {'type': 'date'}}}})[0] == 200
    status, body = call(double, 'PUT', '/events', {})
    assert status == 400 and body['error']['type'] == 'resource_already_exists_exception'
    lines = '\n'.join([json.dumps({'index': {'_index': 'events'}}), json.dumps({'when': '2026-05-01T12:00:00Z', 'n': 1}),
                       json.dumps({'create': {'_index': 'events', '_id': 'one'}}), json.dumps({'when': '2026-05-01T12:01:00Z', 'n': 2}),
                       json.dumps({'create': {'_index': 'events', '_id': 'one'}}), json.dumps({'n': 3})]) + '\n'
    status, body = call(double, 'POST', '/_bulk', lines, ndjson=True)
    assert status == 200 and body['errors'] is True
    assert [item[next(iter(item))]['status'] for item in body['items']] == [201, 201, 409]
    assert call(double, 'POST', '/events/_refresh')[0] == 200
    assert call(double, 'PUT', '/events/_create/two', {'n': 4})[0] == 201
    status, body = call(double, 'PUT', '/events/_create/two', {'n': 4})
    assert status == 409 and body['error']['type'] == 'version_conflict_engine_exception'
    assert call(double, 'POST', '/events/_doc', {'n': 5})[0] == 201
    hits = search(double, {'query': {'range': {'when': {'gte': '2026-05-01T12:00:30Z'}}}}, index='events')
    assert hits['hits']['total']['value'] == 1
    status, body = call(double, 'POST', '/nothing/_search', {})
    assert status == 404 and body['error']['type'] == 'index_not_found_exception'
    assert search(double, {}, index='nothing-*')['hits']['total']['value'] == 0
    status, body = call(double, 'PUT', '/Bad%20Name', {})
    assert status == 400 and body['error']['type'] == 'invalid_index_name_exception'


def test_media_type_rules_per_personality():
    vnd = 'application/vnd.elasticsearch+json; compatible-with=%d'
    for personality, good, bad in (('es7', 7, 8), ('es8', 8, 9), ('es9', 9, 7)):
        with EsDouble(personality) as double:
            client = elasticsearch.Elasticsearch(double.url)
            assert client.perform_request('GET', '/', headers={'accept': vnd % good}).meta.status == 200
            with pytest.raises(elasticsearch.BadRequestError) as info:
                client.perform_request('GET', '/', headers={'accept': vnd % bad})
            assert info.value.error == 'media_type_header_exception'


def test_writes_from_many_threads_while_searching(double):
    def writer(n):
        lines = ''.join(json.dumps({'index': {'_index': 'iis'}}) + '\n' + json.dumps({'host': {'name': 'w%d' % n}, 'i': i}) + '\n'
                        for i in range(500))
        for _batch in range(4):
            assert call(double, 'POST', '/_bulk', lines, ndjson=True)[1]['errors'] is False

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert double.count('iis') == 4 * 4 * 500
    assert search(double, {'query': {'term': {'host.name': 'w3'}}}, index='iis')['hits']['total']['value'] == 2000


def test_fault_switches_and_counters(double):
    double.fail_next = 1
    assert call(double, 'GET', '/')[0] == 503
    assert call(double, 'GET', '/')[0] == 200
    assert double.requests == 2 and double.response_bytes > 0
    double.down = True
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(double, 'GET', '/')


def test_date_math():
    now = parse_date('2026-05-01T12:00:00Z')
    assert parse_date('now-30s', now) == now - 30000
    assert parse_date('now+1h', now) == now + 3600000
    assert parse_date('now/d', now) == parse_date('2026-05-01T00:00:00Z')
    assert parse_date(1714564800000) == 1714564800000.0


def events():
    return [
        {'@timestamp': '2026-05-01T12:00:02.000Z', 'app': 'a', 'n': 2, 'data': {'fallbacks': {'web-01.example.com': '3456'}}},
        {'@timestamp': '2026-05-01T12:00:01.000Z', 'app': 'a', 'n': 1, 'data': {'host': {'name': 'x'}, 'tags': ['p', 'q'], 'none': None}},
        {'@timestamp': '2026-05-01T12:00:03+00:00', 'app': 'a', 'n': 3, 'empty': {}},
        {'app': 'a', 'n': 0},
        {'@timestamp': 1777636804000, 'app': 'b', 'n': 4},
    ]


def test_hits_honour_size_and_default_to_ten(double):
    double.index_docs('many', [{'i': i} for i in range(25)])
    assert len(search(double, {}, index='many')['hits']['hits']) == 10
    assert [h['_source']['i'] for h in search(double, {'size': 3, 'from': 4}, index='many')['hits']['hits']] == [4, 5, 6]
    result = search(double, {'size': 0}, index='many')['hits']
    assert result['hits'] == [] and result['total'] == {'value': 25, 'relation': 'eq'}
    status, body = call(double, 'POST', '/many/_search', {'size': -1})
    assert status == 400 and body['error']['type'] == 'illegal_argument_exception'


@pytest.mark.parametrize('sort, expected', [
    ([{'@timestamp': {'order': 'desc', 'unmapped_type': 'date'}}], [3, 2, 1, 0]),
    ({'@timestamp': 'asc'}, [1, 2, 3, 0]),
    ('@timestamp', [1, 2, 3, 0]),
    ([{'n': 'desc'}], [3, 2, 1, 0]),
    ([{'nothing': 'desc'}], [2, 1, 3, 0]),  # no such field: index order
])
def test_sort_on_one_field_missing_last(double, sort, expected):
    double.index_docs('ev', events())
    body = {'query': {'term': {'app': 'a'}}, 'sort': sort, 'size': 10}
    assert [h['_source']['n'] for h in search(double, body, index='ev')['hits']['hits']] == expected


def test_sort_errors_are_es_errors(double):
    double.index_docs('ev', events())
    for sort in ([{'n': 'asc'}, {'app': 'asc'}], [{'n': 'up'}], [{'n': {'order': 'asc', 'mode': 'max'}}]):
        status, body = call(double, 'POST', '/ev/_search', {'sort': sort})
        assert status == 400, sort
        assert body['error']['type'] in ('parsing_exception', 'illegal_argument_exception')


def test_source_comes_back_as_written_with_index_and_id(double):
    written = events()
    double.index_docs('ev-a', written[:3])
    double.index_docs('ev-b', written[3:])
    assert call(double, 'PUT', '/ev-b/_create/kept', {'@timestamp': '2026-05-01T12:00:09.500Z', 'app': 'c', 'n': 9})[0] == 201
    hits = search(double, {'size': 10, 'sort': [{'n': 'asc'}]}, index='ev-*')['hits']['hits']
    by_n = {h['_source']['n']: h for h in hits}
    for doc in written + [{'@timestamp': '2026-05-01T12:00:09.500Z', 'app': 'c', 'n': 9}]:
        assert by_n[doc['n']]['_source'] == doc
    assert [(h['_index'], h['_id']) for h in hits] == [('ev-b', 'seeded-0'), ('ev-a', 'seeded-1'), ('ev-a', 'seeded-0'),
                                                       ('ev-a', 'seeded-2'), ('ev-b', 'seeded-1'), ('ev-b', 'kept')]
    assert [h['sort'] for h in hits] == [[0], [1], [2], [3], [4], [9]]
    assert call(double, 'GET', '/ev-b/_doc/kept')[1]['_source']['app'] == 'c'


def test_rewriting_an_id_replaces_the_whole_document(double):
    assert call(double, 'PUT', '/ev/_doc/one', {'app': 'a', 'old': {'x': 1}, 'n': 1})[0] == 201
    assert call(double, 'PUT', '/ev/_doc/one', {'app': 'a', 'n': 2})[0] == 200
    hits = search(double, {}, index='ev')['hits']['hits']
    assert [h['_source'] for h in hits] == [{'app': 'a', 'n': 2}]


def test_official_client_reads_hits():
    with EsDouble('es9') as running:
        running.index_docs('ev', events())
        client = elasticsearch.Elasticsearch(running.url)
        query = {'bool': {'filter': [{'term': {'app': 'a'}}]}}
        response = client.search(index='ev', query=query, sort=[{'@timestamp': {'order': 'desc'}}], size=2)
        assert [h['_source']['n'] for h in response['hits']['hits']] == [3, 2]
        assert response['hits']['total']['value'] == 4


def test_optimistic_concurrency_on_one_document(double):
    """if_seq_no/if_primary_term as Elasticsearch does them: a stale pair loses with 409."""
    status, created = call(double, 'PUT', '/locks/_create/app', {'holder': 'a'})
    assert status == 201 and created['_version'] == 1
    status, got = call(double, 'GET', '/locks/_doc/app')
    assert status == 200 and got['_source'] == {'holder': 'a'}
    seq, term = got['_seq_no'], got['_primary_term']
    assert (seq, term) == (created['_seq_no'], 1)
    status, won = call(double, 'PUT', '/locks/_doc/app?if_seq_no=%d&if_primary_term=%d' % (seq, term), {'holder': 'b'})
    assert status == 200 and won['_seq_no'] > seq and won['_version'] == 2
    status, lost = call(double, 'PUT', '/locks/_doc/app?if_seq_no=%d&if_primary_term=%d' % (seq, term), {'holder': 'c'})
    assert status == 409 and lost['error']['type'] == 'version_conflict_engine_exception'
    assert 'required seqNo [%d]' % seq in lost['error']['reason']
    assert double.get_source('locks', 'app') == {'holder': 'b'}
    status, body = call(double, 'PUT', '/locks/_doc/other?if_seq_no=0&if_primary_term=1', {'holder': 'x'})
    assert status == 409 and 'no document was found' in body['error']['reason']
    status, body = call(double, 'PUT', '/locks/_create/app2?if_seq_no=0&if_primary_term=1', {'holder': 'x'})
    assert status == 400
    status, body = call(double, 'PUT', '/locks/_doc/app?if_seq_no=%d' % won['_seq_no'], {'holder': 'x'})
    assert status == 400 and 'if_primary_term' in body['error']['reason']


def test_delete_a_document_conditionally(double):
    call(double, 'PUT', '/locks/_create/app', {'holder': 'a'})
    call(double, 'PUT', '/locks/_create/keep', {'holder': 'k'})
    seq = call(double, 'GET', '/locks/_doc/app')[1]['_seq_no']
    status, body = call(double, 'DELETE', '/locks/_doc/app?if_seq_no=%d&if_primary_term=1' % (seq + 5))
    assert status == 409
    status, body = call(double, 'DELETE', '/locks/_doc/app?if_seq_no=%d&if_primary_term=1' % seq)
    assert status == 200 and body['result'] == 'deleted'
    assert call(double, 'GET', '/locks/_doc/app')[0] == 404
    status, body = call(double, 'DELETE', '/locks/_doc/app')
    assert status == 404 and body['result'] == 'not_found'
    assert double.count('locks') == 1
    assert [h['_id'] for h in search(double, {}, index='locks')['hits']['hits']] == ['keep']
    assert search(double, {}, index='lock*')['hits']['total']['value'] == 1
    # a re-created id continues its version, as in Elasticsearch
    status, body = call(double, 'PUT', '/locks/_create/app', {'holder': 'b'})
    assert status == 201 and body['_version'] == 3
    assert double.get_source('locks', 'app') == {'holder': 'b'}


def test_mutations_are_counted_and_reads_are_not(double):
    call(double, 'PUT', '/locks/_create/app', {'holder': 'a'})
    call(double, 'GET', '/locks/_doc/app')
    call(double, 'POST', '/locks/_search', {})
    call(double, 'POST', '/locks/_count', {})
    call(double, 'DELETE', '/locks/_doc/app')
    assert double.mutations == ['PUT /locks/_create/app', 'DELETE /locks/_doc/app']
