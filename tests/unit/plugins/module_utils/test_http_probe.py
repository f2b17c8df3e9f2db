from __future__ import annotations

import re

import pytest

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._http_probe import probe
from doubles.https_app import App, late_app, reserve_port, serving_app
from support.tls import TestCA

PUBLIC = 'app.example.com'


@pytest.fixture(scope='module')
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp('ca'))


@pytest.fixture(scope='module')
def good_cert(ca):
    return ca.issue([PUBLIC])


@pytest.fixture(scope='module')
def other_cert(ca):
    return ca.issue(['other.example.com'])


def params(ca, port, **overrides):
    """The module's options as main() passes them, with short timeouts."""
    values = dict(url='https://%s/health' % PUBLIC, urls=None, address='127.0.0.1', port=port, method='GET', headers={},
                  secret_headers={}, body=None, status_codes=[200], body_regex=None, headers_match={},
                  first_request_timeout=5.0, timeout=10.0, samples=3, latency_statistic='p90', latency_threshold_ms=250.0,
                  validate_certs=True, ca_path=str(ca.ca_path), client_cert=None, client_key=None, concurrency=4)
    values.update(overrides)
    return values


def failure(ca, port, **overrides):
    with pytest.raises(CanaryError) as info:
        probe(params(ca, port, **overrides), log=lambda message: None)
    assert info.value.details['ready'] is False
    return info.value


def test_cold_start_refused_then_slow_then_fast_is_ready(ca, good_cert):
    app = App(first_delay=0.6)
    with late_app(app, good_cert, refuse_for=1.0) as port:
        result, warnings = probe(params(ca, port, first_request_timeout=10.0, timeout=20.0, samples=4))
    assert warnings == []
    assert result['ready'] is True
    assert result['attempts'] >= 3  # refused at least twice within the first second (0.2 s + 0.3 s backoff)
    assert result['first_response_ms'] >= 600
    assert result['rounds'] >= 1
    (url,) = result['urls']
    assert url['url'] == 'https://app.example.com/health'
    assert url['status'] == 200
    assert len(url['samples_ms']) == 4
    assert url['p90_ms'] <= 250
    assert url['connect_ms'] is not None and url['tls_ms'] > 0
    assert url['p50_ms'] <= url['p90_ms'] <= url['p95_ms'] <= url['max_ms'] == max(url['samples_ms'])
    # One good cold-start request plus every timed sample, all presenting the public name.
    assert len(app.requests) == 1 + 4 * result['rounds']
    assert {r['host'] for r in app.requests} == {PUBLIC}
    assert set(app.sni) == {PUBLIC}


def test_connection_refused_until_first_request_timeout(ca):
    holder, port = reserve_port()
    try:
        error = failure(ca, port, first_request_timeout=0.6)
    finally:
        holder.close()
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:%d: connection refused by 127\.0\.0\.1:%d '
                        r'until first_request_timeout 0\.6 s ran out after \d+ attempts in 0\.6 s' % (port, port), error.message)
    assert error.details['attempts'] >= 3
    assert error.details['rounds'] == 0
    assert error.details['first_response_ms'] is None


def test_overall_timeout_shorter_than_first_request_timeout_is_named(ca):
    holder, port = reserve_port()
    try:
        error = failure(ca, port, first_request_timeout=60.0, timeout=0.4)
    finally:
        holder.close()
    assert 'connection refused by 127.0.0.1:%d until timeout 0.4 s ran out' % port in error.message


def test_latency_that_never_drops_fails_with_the_numbers(ca, good_cert):
    with serving_app(App(delay=0.12), good_cert) as srv:
        error = failure(ca, srv.port, url='https://app.example.com/slow', samples=2, latency_threshold_ms=50.0, timeout=1.5)
    match = re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: p90 (\d+) ms > 50 ms on /slow '
                         r'after (\d+) rounds in 1\.\d s', error.message)
    assert match, error.message
    assert 120 <= int(match.group(1)) < 1000
    assert int(match.group(2)) == error.details['rounds'] >= 2
    (url,) = error.details['urls']
    assert len(url['samples_ms']) == 2 and min(url['samples_ms']) >= 120
    assert url['p90_ms'] == pytest.approx(int(match.group(1)), abs=1)


@pytest.mark.parametrize('statistic, ready', [('p50', True), ('p90', True), ('p95', False), ('max', False)])
def test_latency_statistic_choice(ca, good_cert, statistic, ready):
    # One request in ten takes 300 ms; the cold start (request 0) is one of them, and the tenth sample of each round.
    app = App(delay=lambda index: 0.3 if index % 10 == 0 else 0.0)
    with serving_app(app, good_cert) as srv:
        args = params(ca, srv.port, samples=10, latency_statistic=statistic, latency_threshold_ms=150.0, timeout=2.5)
        if ready:
            result, _warnings = probe(args)
            assert result['ready'] is True and result['rounds'] == 1
            assert result['urls'][0]['max_ms'] >= 300
        else:
            with pytest.raises(CanaryError) as info:
                probe(args)
            assert re.search(r': %s \d+ ms > 150 ms on /health after \d+ rounds' % statistic, info.value.message), info.value.message


@pytest.mark.parametrize('expected, ready', [('3457', True), ('34\\d\\d', True), ('345', False), ('3.57', True)])
def test_headers_match_is_a_full_regular_expression_match(ca, good_cert, expected, ready):
    with serving_app(App(version='3457'), good_cert) as srv:
        args = params(ca, srv.port, headers_match={'x-app-version': expected})
        if ready:
            assert probe(args)[0]['ready'] is True
        else:
            with pytest.raises(CanaryError, match="x-app-version is '3457', expected '345' on /health after 1 attempt in"):
                probe(args)


def test_wrong_version_header_fails_at_once_naming_it(ca, good_cert):
    app = App(version='1')
    with serving_app(app, good_cert) as srv:
        error = failure(ca, srv.port, headers_match={'X-App-Version': '3457'}, timeout=30.0)
    assert re.fullmatch(r"Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: X-App-Version is '1', expected '3457' on /health "
                        r"after 1 attempt in 0\.\d s", error.message), error.message
    assert len(app.requests) == 1  # an answer waiting cannot fix is not retried


def test_missing_header_and_body_regex(ca, good_cert):
    with serving_app(App(version=None, body=b'{"status": "starting"}'), good_cert) as srv:
        error = failure(ca, srv.port, headers_match={'X-App-Version': '3457'})
        assert "X-App-Version is missing, expected '3457' on /health" in error.message
        error = failure(ca, srv.port, body_regex='"status": "ok"')
        assert 'body from /health does not match \'"status": "ok"\' (22 bytes)' in error.message
        assert probe(params(ca, srv.port, body_regex='start'))[0]['ready'] is True


def test_wrong_certificate_name_fails_with_validation_and_passes_without(ca, other_cert):
    app = App()
    with serving_app(app, other_cert) as srv:
        error = failure(ca, srv.port)
        assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: certificate for other\.example\.com '
                            r'does not match app\.example\.com after 1 attempt in 0\.\d s', error.message), error.message
        assert app.requests == []
        result, warnings = probe(params(ca, srv.port, validate_certs=False))
    assert result['ready'] is True
    assert warnings == ['validate_certs is false: the certificate of 127.0.0.1 is not checked, so the probe cannot prove '
                        'that the server holds the certificate for the public name']
    assert {r['host'] for r in app.requests} == {PUBLIC}


def test_untrusted_certificate_fails(ca, good_cert, tmp_path):
    stranger = TestCA(tmp_path / 'other-ca', name='another CA')
    with serving_app(App(), good_cert) as srv:
        error = failure(ca, srv.port, ca_path=str(stranger.ca_path))
    assert 'certificate of 127.0.0.1:%d for app.example.com is not valid: self-signed certificate in certificate chain' % srv.port in error.message


def test_sni_and_host_carry_the_public_name_and_url_port(ca, good_cert):
    app = App()
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port, url='https://app.example.com:8443/api/ping?deep=1', samples=2))
    assert result['ready'] is True
    assert set(app.sni) == {PUBLIC}
    assert {(r['host'], r['path']) for r in app.requests} == {('app.example.com:8443', '/api/ping?deep=1')}
    assert {r['headers']['User-Agent'] for r in app.requests} == {'immune.canary-warmup_probe/0.1.0'}


def test_http_url_sends_host_without_tls(ca):
    app = App()
    with serving_app(app) as srv:
        result, _warnings = probe(params(ca, srv.port, url='http://app.example.com/', samples=2, ca_path=None))
    assert result['ready'] is True and result['urls'][0]['tls_ms'] == 0
    assert {r['host'] for r in app.requests} == {PUBLIC}
    assert app.sni == []


def test_method_headers_and_body_are_sent(ca, good_cert):
    app = App(require_header=('Authorization', 'Bearer t0ken'))
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port, method='post', body='{"warm": true}', samples=1,
                                         headers={'X-Trace': 'warmup', 'Authorization': 'visible'},
                                         secret_headers={'authorization': 'Bearer t0ken'}))
    assert result['ready'] is True
    request = app.requests[-1]
    assert (request['method'], request['body'], request['headers']['X-Trace']) == ('POST', b'{"warm": true}', 'warmup')
    assert request['headers']['authorization'] == 'Bearer t0ken'


def test_status_500_fails_at_once(ca, good_cert):
    app = App(status=500)
    with serving_app(app, good_cert) as srv:
        error = failure(ca, srv.port, url='https://app.example.com/api/ping', timeout=30.0)
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: status 500 from /api/ping after 1 attempt in 0\.\d s',
                        error.message), error.message
    assert error.details['urls'][0]['status'] == 500
    assert len(app.requests) == 1


def test_status_500_during_the_rounds(ca, good_cert):
    app = App(status=lambda index: 200 if index < 3 else 500)
    with serving_app(app, good_cert) as srv:
        error = failure(ca, srv.port, url='https://app.example.com/api/ping', samples=4)
    assert re.search(r': status 500 from /api/ping after 1 round in 0\.\d s$', error.message), error.message
    assert error.details['urls'][0]['status'] == 500
    assert len(error.details['urls'][0]['samples_ms']) == 3


def test_503_while_starting_is_retried(ca, good_cert):
    app = App(status=lambda index: 503 if index < 2 else 200)
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port))
    assert (result['ready'], result['attempts']) == (True, 3)


def test_expected_status_list(ca, good_cert):
    with serving_app(App(status=204, body=b''), good_cert) as srv:
        assert probe(params(ca, srv.port, status_codes=[200, 204]))[0]['urls'][0]['status'] == 204
        assert 'status 204 from /health' in failure(ca, srv.port).message


# A reset right after part of the headers reaches the client before or after
# what was sent (Python 3.13's TLS layer often reports the reset first).
@pytest.mark.parametrize('mode, reason', [
    ('reset', r'(response from /health cut off inside the headers|connection reset by 127\.0\.0\.1:\d+ during the response from /health)'),
    ('cut', re.escape('response from /health cut off after 10 bytes of the body')),
])
def test_connection_cut_mid_response(ca, good_cert, mode, reason):
    with serving_app(App(mode=mode), good_cert) as srv:
        error = failure(ca, srv.port, first_request_timeout=0.6)
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: %s until first_request_timeout 0\.6 s ran out '
                        r'after \d+ attempts in 0\.\d s' % reason, error.message), error.message
    app = App(mode=lambda index: mode if index < 2 else None)
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port))
    assert (result['ready'], result['attempts']) == (True, 3)


def test_plain_http_reset_is_retried(ca):
    app = App(mode=lambda index: 'reset' if index < 1 else None)
    with serving_app(app) as srv:
        result, _warnings = probe(params(ca, srv.port, url='http://app.example.com/health', ca_path=None))
    assert (result['ready'], result['attempts']) == (True, 2)


def test_a_reset_in_a_round_fails_that_round_only(ca, good_cert):
    # Request 0 is the cold start, 1-2 the first round (2 is reset), 3-5 the second round.
    app = App(mode=lambda index: 'reset' if index == 2 else None)
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port))
    assert (result['ready'], result['rounds']) == (True, 2)
    assert len(app.requests) == 6  # a round stops at its first failure


@pytest.mark.parametrize('concurrency, overlap', [(3, 3), (1, 1)])
def test_concurrency_samples_several_urls_at_once(ca, good_cert, concurrency, overlap):
    app = App(delay=0.15)
    urls = ['https://app.example.com/', 'https://app.example.com/api/ping', 'https://app.example.com/health']
    with serving_app(app, good_cert) as srv:
        result, _warnings = probe(params(ca, srv.port, url=None, urls=urls, samples=2, concurrency=concurrency))
    assert result['ready'] is True
    assert [u['url'] for u in result['urls']] == urls
    assert all(len(u['samples_ms']) == 2 for u in result['urls'])
    assert app.max_inflight == overlap
    assert sorted(r['path'] for r in app.requests[1:]) == sorted(['/', '/api/ping', '/health'] * 2 * result['rounds'])


def test_one_slow_url_among_several_is_named(ca, good_cert):
    app = App(delay=lambda index: 0.12 if app.requests[index]['path'] == '/api/ping' else 0.0)
    urls = ['https://app.example.com/', 'https://app.example.com/api/ping']
    with serving_app(app, good_cert) as srv:
        error = failure(ca, srv.port, url=None, urls=urls, samples=2, latency_threshold_ms=60.0, latency_statistic='max', timeout=1.0)
    assert re.search(r': max \d+ ms > 60 ms on /api/ping after \d+ rounds in 1\.\d s$', error.message), error.message
    fast, slow = error.details['urls']
    assert fast['max_ms'] < 60 and slow['max_ms'] >= 120


def test_client_certificate_is_presented(ca, good_cert):
    client_cert, client_key = ca.issue(['warmup-client'], client=True)
    with serving_app(App(), good_cert, client_ca=ca.ca_path) as srv:
        result, _warnings = probe(params(ca, srv.port, client_cert=str(client_cert), client_key=str(client_key)))
        assert result['ready'] is True
        error = failure(ca, srv.port, first_request_timeout=5.0)
    # TLS 1.3 sends the server's refusal after the handshake: the client may first see a reset (retried), then the alert,
    # which fails at once instead of after first_request_timeout.
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: TLS error from 127\.0\.0\.1:\d+ for /health: '
                        r'TLSV13_ALERT_CERTIFICATE_REQUIRED after \d+ attempts? in [0-4]\.\d s', error.message), error.message
    assert error.details['first_response_ms'] is None


@pytest.mark.parametrize('overrides, message', [
    ({'url': 'ftp://app.example.com/'}, "Invalid url 'ftp://app.example.com/': the scheme must be https or http"),
    ({'url': 'app.example.com/health'}, "Invalid url 'app.example.com/health': the scheme must be https or http"),
    ({'url': 'https:///health'}, "Invalid url 'https:///health': the URL has no host name"),
    ({'url': 'https://app.example.com:99999/'}, "Invalid url 'https://app.example.com:99999/': Port out of range 0-65535"),
    ({'url': 'https://user:pw@app.example.com/'}, 'Invalid url: credentials in the URL are not allowed; send them with secret_headers'),
    ({'url': None, 'urls': ['https://app.example.com/', 'gopher://x/']}, "Invalid urls[1] 'gopher://x/': the scheme must be https or http"),
    ({'url': None, 'urls': []}, 'Invalid url/urls: give one public URL in url, or a non-empty list in urls'),
    ({'address': ''}, "Invalid address '': give the server host name or IP address to connect to"),
    ({'address': 'https://10.0.0.1/'}, "Invalid address 'https://10.0.0.1/'"),
    ({'port': 0}, 'Invalid port 0: must be between 1 and 65535'),
    ({'method': 'GET /'}, "Invalid method 'GET /': must be an HTTP method"),
    ({'headers': {'Bad Name': 'x'}}, "Invalid headers: 'Bad Name' is not a valid header name"),
    ({'headers': {'X-A': 'a\r\nInjected: 1'}}, "Invalid headers: X-A value 'a\\r\\nInjected: 1' contains a line break"),
    ({'secret_headers': {'Authorization': 'x\nY: z'}}, 'Invalid secret_headers: the value of Authorization contains a line break'),
    ({'headers': {'Host': 'evil.example.com'}}, 'Invalid headers: Host may not be set; it comes from the URL'),
    ({'status_codes': [200, 700]}, 'Invalid status_codes [200, 700]: each must be an HTTP status between 100 and 599'),
    ({'body_regex': '(unclosed'}, "Invalid body_regex '(unclosed': not a regular expression"),
    ({'headers_match': {'X-App-Version': '[34'}}, "Invalid headers_match[X-App-Version] '[34': not a regular expression"),
    ({'first_request_timeout': 0.0}, 'Invalid first_request_timeout 0.0: must be a number > 0'),
    ({'timeout': -1.0}, 'Invalid timeout -1.0: must be a number > 0'),
    ({'samples': 0}, 'Invalid samples 0: must be an integer >= 1'),
    ({'concurrency': 0}, 'Invalid concurrency 0: must be an integer >= 1'),
    ({'latency_threshold_ms': 0.0}, 'Invalid latency_threshold_ms 0.0: must be a number > 0'),
    ({'latency_statistic': 'p99'}, "Invalid latency_statistic 'p99': must be one of max, p50, p90, p95"),
    ({'ca_path': '/nonexistent/ca.pem'}, "Invalid ca_path '/nonexistent/ca.pem': cannot load CA certificates: No such file or directory"),
    ({'client_cert': '/nonexistent/c.pem'}, "Invalid client_cert '/nonexistent/c.pem' / client_key: cannot load the client certificate"),
    ({'client_key': '/k.pem'}, 'Invalid client_key: client_cert is required with it'),
])
def test_bad_input_is_rejected_before_any_traffic(ca, good_cert, overrides, message):
    app = App()
    with serving_app(app, good_cert) as srv:
        with pytest.raises(CanaryError) as info:
            probe(dict(params(ca, srv.port), **overrides))
    assert info.value.message.startswith(message), info.value.message
    assert app.requests == [] and app.sni == []


def test_secret_header_value_never_in_a_message(ca, good_cert):
    with serving_app(App(status=500), good_cert) as srv:
        error = failure(ca, srv.port, secret_headers={'Authorization': 'Bearer very-secret'})
    assert 'very-secret' not in error.message and 'very-secret' not in repr(error.details)


def test_a_server_that_stops_answering_in_the_rounds_is_cut_by_the_deadline(ca, good_cert):
    app = App(delay=lambda index: 0.0 if index == 0 else 3.0)
    with serving_app(app, good_cert) as srv:
        error = failure(ca, srv.port, timeout=0.8)
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: no answer from 127\.0\.0\.1:\d+ for /health within 0\.\d s '
                        r'after 1 round in 0\.[89] s', error.message), error.message
    assert error.details['first_response_ms'] is not None and error.details['urls'][0]['samples_ms'] == []
