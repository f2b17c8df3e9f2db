"""The Elasticsearch connection layer against the double, over real sockets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import elasticsearch
import pytest

from ansible_collections.immune.canary.plugins.module_utils import _elasticsearch as elasticsearch_layer
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._deploy_event import EventWriter, build_event
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from ansible_collections.immune.canary.plugins.module_utils._gate import selection_filter
from doubles.es_double import EsDouble
from support.servers import dead_url, server_tls_context
from support.tls import TestCA

MARKER = 'c2VjcmV0LWFwaS1rZXktTUFSS0VSLTQyMQ=='
PERSONALITIES = ['es7', 'es8', 'es9', 'opensearch2']


@pytest.fixture(params=PERSONALITIES)
def double(request):
    with EsDouble(request.param) as running:
        yield running


@pytest.fixture
def es8():
    with EsDouble('es8') as running:
        yield running


def client_for(double, **params):
    base = dict(es_hosts=[double.url], es_max_retries=3, es_request_timeout=5)
    base.update(params)
    return EsClient(base)


EXPECTED_MEDIA = {
    'es7': 'application/json',
    'es8': 'application/vnd.elasticsearch+json; compatible-with=8',
    'es9': 'application/vnd.elasticsearch+json; compatible-with=9',
    'opensearch2': 'application/json',
}


def test_every_personality_works_with_the_media_type_it_accepts(double):
    client = client_for(double)
    info = client.info()
    assert info.as_dict()['distribution'] == ('opensearch' if double.personality == 'opensearch2' else 'elasticsearch')
    double.index_docs('logs-a', [{'@timestamp': '2026-05-01T12:00:00Z', 'host': {'name': 'web-01'}, 'response': 200}] * 3)
    response = client.search('logs-*', {'size': 0, 'query': {'term': {'host.name': 'web-01'}}})
    assert response['hits']['total']['value'] == 3
    assert double.last_headers['accept'] == EXPECTED_MEDIA[double.personality]
    assert double.last_headers['content-type'] == EXPECTED_MEDIA[double.personality]
    assert client.create_document('deploy-events-2026.05', 'run-1-started', {'phase': 'started'}) is True
    assert client.create_document('deploy-events-2026.05', 'run-1-started', {'phase': 'started'}) is False
    assert client.document_exists('deploy-events-2026.05', 'run-1-started') is True
    assert client.document_exists('deploy-events-2026.05', 'other') is False
    assert client.count('deploy-events-*', {'query': {'match_all': {}}}) == 1


def test_the_double_behaves_like_each_server_for_the_official_client():
    """elasticsearch-py 9 itself: accepted by 9.x, rejected by 8.x (media type) and by OpenSearch (product check)."""
    with EsDouble('es9') as es9, EsDouble('es8') as es8, EsDouble('opensearch2') as opensearch:
        assert elasticsearch.Elasticsearch(es9.url).info()['version']['number'].startswith('9.')
        with pytest.raises(elasticsearch.BadRequestError) as info:
            elasticsearch.Elasticsearch(es8.url).info()
        assert info.value.error == 'media_type_header_exception'
        with pytest.raises(elasticsearch.UnsupportedProductError):
            elasticsearch.Elasticsearch(opensearch.url).info()
        # Explicit compatible-with=8 headers on perform_request are accepted by 8.x.
        vnd8 = 'application/vnd.elasticsearch+json; compatible-with=8'
        body = elasticsearch.Elasticsearch(es8.url).perform_request('GET', '/', headers={'accept': vnd8}).body
        assert body['version']['number'].startswith('8.')


def test_503s_are_retried_within_bounds(es8):
    client = client_for(es8)
    client.info()
    es8.reset_counters()
    es8.index_docs('logs', [])
    es8.fail_next = 2
    assert client.search('logs', {'size': 0})['hits']['total']['value'] == 0
    assert es8.requests == 3
    es8.reset_counters()
    es8.fail_next = 10
    with pytest.raises(CanaryError) as info:
        client.search('logs', {'size': 0})
    assert es8.requests == 4  # one try plus three retries, then it stops
    assert info.value.message == 'Failed to search index logs: HTTP 503 unavailable_shards_exception: the double was told to fail'


def test_a_dead_host_fails_over_to_the_next(es8):
    client = EsClient(dict(es_hosts=[dead_url(), es8.url], es_max_retries=3, es_request_timeout=5))
    assert client.info().major == 8


def test_all_hosts_down_is_a_clear_error():
    client = EsClient(dict(es_hosts=[dead_url()], es_max_retries=1, es_request_timeout=2))
    with pytest.raises(CanaryError) as info:
        client.info()
    assert info.value.message.startswith('Failed to read server information from Elasticsearch: ConnectionError')
    assert '(after 2 attempts)' in info.value.message


def test_api_key_is_sent_and_never_appears_in_errors(es8):
    es8.require_auth = 'ApiKey ' + MARKER
    assert client_for(es8, es_api_key=MARKER).info().major == 8
    with pytest.raises(CanaryError) as info:
        client_for(es8, es_api_key='wrong-' + MARKER).info()
    assert info.value.message.startswith('Failed to read server information from Elasticsearch: HTTP 401 security_exception')
    assert MARKER not in info.value.message
    assert MARKER not in repr(info.value.details)


def test_basic_and_bearer_auth(es8):
    es8.require_auth = 'Basic dXNlcjpwYXNz'  # base64("user:pass")
    assert client_for(es8, es_username='user', es_password='pass').info().major == 8
    es8.require_auth = 'Bearer token-1'
    assert client_for(es8, es_bearer_token='token-1').info().major == 8


def test_sigv4_signs_every_request(monkeypatch):
    for name in ('AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'):
        monkeypatch.delenv(name, raising=False)
    with EsDouble('opensearch2') as double:
        double.require_sigv4 = ('eu-west-1', 'es')
        params = dict(es_aws_sigv4=True, es_aws_region='eu-west-1', es_aws_service='es',
                      es_aws_access_key='AKIDEXAMPLE', es_aws_secret_key='wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY')
        client = client_for(double, **params)
        assert client.info().is_opensearch
        client.search('logs-*', {'size': 0})
        auth = double.last_headers['authorization']
        assert auth.startswith('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/')
        assert '/eu-west-1/es/aws4_request' in auth
        assert 'x-amz-content-sha256' in auth.split('SignedHeaders=')[1]
        with pytest.raises(CanaryError, match='HTTP 403 security_exception'):
            client_for(double).info()
        # aoss signs with its own service name
        double.require_sigv4 = ('eu-west-1', 'aoss')
        params['es_aws_service'] = 'aoss'
        assert client_for(double, **params).info().is_opensearch


def test_sigv4_without_credentials_is_a_clear_error(monkeypatch, tmp_path):
    for name in ('AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_CONFIG_FILE', str(tmp_path / 'none'))
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    with pytest.raises(CanaryError, match='Failed to set up SigV4 signing: no AWS credentials found'):
        EsClient(dict(es_hosts=['https://127.0.0.1:1'], es_aws_sigv4=True, es_aws_region='eu-west-1'))


def test_sigv4_does_not_mix_with_other_authentication():
    with pytest.raises(CanaryError) as info:
        EsClient(dict(es_hosts=['https://127.0.0.1:1'], es_aws_sigv4=True, es_aws_region='eu-west-1', es_api_key=MARKER))
    assert info.value.message == 'Invalid authentication: es_aws_sigv4 signs every request itself and cannot be combined with es_api_key'


@pytest.mark.parametrize('host, message', [
    ('https://user:secret@es.example.com', "Invalid es_hosts entry for host 'es.example.com': it must not carry credentials"),
    ('ftp://es.example.com', "Invalid es_hosts entry 'es.example.com': expected a URL"),
])
def test_bad_hosts(host, message):
    with pytest.raises(CanaryError) as info:
        EsClient(dict(es_hosts=[host]))
    assert info.value.message.startswith(message)
    assert 'secret' not in info.value.message


def test_server_errors_carry_their_cause(es8):
    client = client_for(es8)
    with pytest.raises(CanaryError) as info:
        client.search('missing-index', {'size': 0})
    assert info.value.message == 'Failed to search index missing-index: HTTP 404 index_not_found_exception: no such index [missing-index]'
    es8.index_docs('logs', [{'a': 1}])
    with pytest.raises(CanaryError) as info:
        client.search('logs', {'query': {'query_string': {'query': 'a:1'}}})
    assert info.value.message == 'Failed to search index logs: HTTP 400 parsing_exception: unknown query [query_string]'


HOSTILE = ['app "quoted"', 'app:colon', 'app with spaces', '*', 'OR', 'back\\slash', 'app) OR (x', 'app\\"*']
LOOKALIKES = ['app', 'quoted', 'app quoted', 'colon', 'app colon', 'app', 'with', 'spaces', 'x', 'backslash', 'back', 'slash',
              'or', 'Or', 'app*', '"app"', 'app\\', 'app:', 'appcolon', '']


def test_hostile_names_select_exactly_their_own_documents(double):
    docs = []
    for i, name in enumerate(HOSTILE):
        docs += [{'@timestamp': '2026-05-01T12:00:00Z', 'application_name': name}] * (i + 2)
    for name in LOOKALIKES:
        docs += [{'@timestamp': '2026-05-01T12:00:00Z', 'application_name': name}] * 50
    double.index_docs('iis-2026.05', docs)
    client = client_for(double)
    for i, name in enumerate(HOSTILE):
        query = {'query': selection_filter({'application_name': name}, 'canary')}
        assert client.count('iis-*', query) == i + 2, name
    both = {'query': selection_filter({'application_name': HOSTILE[:2]}, 'canary')}
    assert client.count('iis-*', both) == 2 + 3


def test_deploy_events_are_idempotent_with_an_id_and_check_mode_writes_nothing(es8):
    client = client_for(es8)
    index, event = build_event(dict(app='app.example.com', version='3457', phase='admitted', host='web-01', event_id='run-9-admitted',
                                    timestamp='2026-05-01T12:00:00Z', data={'verdict': 'pass'}))
    assert index == 'deploy-events-2026.05'
    assert event == {'@timestamp': '2026-05-01T12:00:00.000Z', 'app': 'app.example.com', 'version': '3457', 'host': 'web-01',
                     'phase': 'admitted', 'event_id': 'run-9-admitted', 'data': {'verdict': 'pass'}}
    writer = EventWriter(client)
    assert writer.write(index, event, 'run-9-admitted', check_mode=True) == dict(changed=True, id='run-9-admitted', result='skipped')
    assert es8.count('deploy-events-*') == 0
    assert writer.write(index, event, 'run-9-admitted') == dict(changed=True, id='run-9-admitted', result='created')
    assert writer.write(index, event, 'run-9-admitted', check_mode=True) == dict(changed=False, id='run-9-admitted', result='exists')
    assert writer.write(index, event, 'run-9-admitted') == dict(changed=False, id='run-9-admitted', result='exists')
    assert es8.count('deploy-events-*') == 1
    assert writer.write(index, event, None, check_mode=True)['changed'] is True
    assert es8.count('deploy-events-*') == 1
    written = writer.write(index, event, None)
    assert written['changed'] is True and written['id']
    assert es8.count('deploy-events-*') == 2


@pytest.mark.parametrize('params, message', [
    (dict(phase='launched'), "Invalid phase 'launched': valid phases are started, drained"),
    (dict(phase='failed', data={'db': {'Password': 'x'}}), 'Invalid data: key(s) db.Password look like secrets'),
    (dict(phase='failed', data={'api_key': 'x', 'token': 'y'}), 'Invalid data: key(s) api_key, token look like secrets'),
    (dict(phase='failed', index='Deploy Events'), "Invalid index 'Deploy Events': index names are lower case"),
    (dict(phase='failed', timestamp='soon'), "Invalid timestamp 'soon'"),
])
def test_bad_events_are_refused(params, message):
    with pytest.raises(CanaryError) as info:
        build_event(dict(app='app', **params))
    assert info.value.message.startswith(message)


def test_tls_with_a_private_ca_and_the_verify_certs_warning(tmp_path):
    ca = TestCA(tmp_path)
    cert, key = ca.issue(['127.0.0.1'])
    with EsDouble('es9', tls_context=server_tls_context(cert, key)) as double:
        client = client_for(double, es_ca_certs=str(ca.ca_path))
        assert double.url.startswith('https://') and client.info().major == 9
        assert client.warnings == []
        with pytest.raises(CanaryError, match='Failed to read server information from Elasticsearch: TlsError'):
            client_for(double, es_max_retries=0).info()
        insecure = client_for(double, es_verify_certs=False)
        assert insecure.info().major == 9
        assert insecure.warnings == ['es_verify_certs is false: the Elasticsearch server certificate is not verified']


def test_loading_the_layer_leaves_the_async_http_libraries_alone():
    """A module never runs async code: elastic_transport is loaded without
    aiohttp (0.3 CPU s), and aiohttp stays importable for anything else."""
    pytest.importorskip('aiohttp')
    build = Path(elasticsearch_layer.__file__).resolve().parents[5]  # the directory that holds ansible_collections/
    code = ('import sys\n'
            'from ansible_collections.immune.canary.plugins.module_utils import _elasticsearch as es\n'
            'assert es.HAS_ELASTICSEARCH, es.ELASTICSEARCH_IMPORT_ERROR\n'
            'loaded = "aiohttp" in sys.modules\n'
            'import aiohttp\n'
            'print(loaded, aiohttp.__name__)\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False, timeout=60,
                          env={'PYTHONPATH': str(build), 'PATH': '/usr/bin:/bin'})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['False', 'aiohttp']
