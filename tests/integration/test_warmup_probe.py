"""warmup_probe through real ansible-playbook against loopback HTTPS stand-ins."""

from __future__ import annotations

import re
import subprocess

import pytest

from doubles.https_app import App, late_app, serving_app
from support.ansible_runner import BIN, ansible_env, run_module
from support.tls import TestCA

PUBLIC = 'app.example.com'
URL_KEYS = {'url', 'status', 'samples_ms', 'p50_ms', 'p90_ms', 'p95_ms', 'max_ms', 'connect_ms', 'tls_ms'}
RESULT_KEYS = {'changed', 'ready', 'elapsed', 'first_response_ms', 'attempts', 'rounds', 'urls'}


@pytest.fixture(scope='module')
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp('ca'))


@pytest.fixture(scope='module')
def good_cert(ca):
    return ca.issue([PUBLIC])


def args(ca, port, **extra):
    values = {'url': 'https://%s/health' % PUBLIC, 'address': '127.0.0.1', 'port': port, 'ca_path': str(ca.ca_path),
              'samples': 3, 'latency_threshold_ms': 250, 'first_request_timeout': 10, 'timeout': 20}
    values.update(extra)
    return values


def test_check_then_real_then_again_never_changes(ca, good_cert):
    app = App(first_delay=0.4)
    # ansible-playbook needs a few seconds to start the module (more on a
    # busy machine); refuse for much longer than that, within the timeout.
    with late_app(app, good_cert, refuse_for=12.0) as port:
        module_args = args(ca, port, urls=['https://%s/' % PUBLIC, 'https://%s/api/ping' % PUBLIC], headers_match={'X-App-Version': '3457'},
                           first_request_timeout=25, timeout=40)
        del module_args['url']
        runs = [run_module('warmup_probe', module_args, check=check) for check in (True, False, True, False)]
    for run in runs:
        assert run.rc == 0 and not run.failed, run.stdout + run.stderr
        result = run.result
        assert RESULT_KEYS <= set(result)
        assert result['changed'] is False and result['ready'] is True
        assert [u['url'] for u in result['urls']] == ['https://app.example.com/', 'https://app.example.com/api/ping']
        assert all(set(u) == URL_KEYS and len(u['samples_ms']) == 3 and u['status'] == 200 for u in result['urls'])
    # The first run met the cold start (refused, then one slow answer); check mode still probes.
    assert runs[0].result['attempts'] >= 2 and runs[0].result['first_response_ms'] >= 400
    assert runs[1].result['attempts'] == 1
    assert {r['host'] for r in app.requests} == {PUBLIC} and set(app.sni) == {PUBLIC}
    assert sum(r['path'] in ('/', '/api/ping') for r in app.requests) >= 4 * 2 * 3


def test_failure_names_the_expectation_with_numbers(ca, good_cert):
    with serving_app(App(delay=0.1), good_cert) as srv:
        run = run_module('warmup_probe', args(ca, srv.port, samples=2, latency_threshold_ms=40, timeout=1.2, latency_statistic='max'))
    assert run.rc != 0 and run.failed
    result = run.result
    assert re.fullmatch(r'Failed to warm up app\.example\.com at 127\.0\.0\.1:%d: max \d+ ms > 40 ms on /health after \d+ rounds in 1\.\d s'
                        % srv.port, result['msg']), result['msg']
    assert result['changed'] is False and result['ready'] is False
    assert result['rounds'] >= 2 and result['urls'][0]['max_ms'] >= 100


def test_wrong_version_header_fails_naming_it(ca, good_cert):
    with serving_app(App(version='1'), good_cert) as srv:
        run = run_module('warmup_probe', args(ca, srv.port, headers_match={'X-App-Version': '3457'}))
    assert run.failed
    assert re.fullmatch(r"Failed to warm up app\.example\.com at 127\.0\.0\.1:\d+: X-App-Version is '1', expected '3457' on /health "
                        r'after 1 attempt in \d\.\d s', run.result['msg']), run.result['msg']


def test_wrong_certificate_name_and_validate_certs_false_warns(ca):
    other = ca.issue(['other.example.com'])
    with serving_app(App(), other) as srv:
        strict = run_module('warmup_probe', args(ca, srv.port))
        relaxed = run_module('warmup_probe', args(ca, srv.port, validate_certs=False))
    assert strict.failed
    assert 'certificate for other.example.com does not match app.example.com' in strict.result['msg']
    assert relaxed.rc == 0 and relaxed.result['ready'] is True
    # ansible-core 2.18 wraps warnings at 80 columns.
    shown = ' '.join((relaxed.stdout + relaxed.stderr).split())
    assert '[WARNING]: validate_certs is false: the certificate of 127.0.0.1 is not checked' in shown


def test_secret_header_value_never_shown_even_at_vvv(ca, good_cert):
    secret = 'Bearer s3cr3t-warmup-t0ken'
    app = App(require_header=('Authorization', secret))
    with serving_app(app, good_cert) as srv:
        good = run_module('warmup_probe', args(ca, srv.port, secret_headers={'Authorization': secret}), verbosity=3)
        bad = run_module('warmup_probe', args(ca, srv.port, secret_headers={'Authorization': secret + 'x'}), verbosity=3)
    assert good.rc == 0 and good.result['ready'] is True
    assert {r['headers'].get('Authorization') for r in app.requests} == {secret, secret + 'x'}
    assert bad.failed and 'status 401 from /health' in bad.result['msg']
    for run in (good, bad):
        assert 's3cr3t' not in run.stdout + run.stderr + repr(run.records)


@pytest.mark.parametrize('module_args, message', [
    ({'url': 'ftp://app.example.com/'}, "Invalid url 'ftp://app.example.com/': the scheme must be https or http"),
    ({'url': 'https://app.example.com/', 'samples': 0}, 'Invalid samples 0: must be an integer >= 1'),
    ({'url': 'https://app.example.com/', 'latency_statistic': 'p99'}, 'value of latency_statistic must be one of: max, p50, p90, p95'),
    ({'url': 'https://app.example.com/', 'urls': ['https://app.example.com/']}, 'parameters are mutually exclusive: url|urls'),
    ({}, 'one of the following is required: url, urls'),
])
def test_bad_input_through_the_module(good_cert, module_args, message):
    app = App()
    with serving_app(app, good_cert) as srv:
        run = run_module('warmup_probe', dict(module_args, address='127.0.0.1', port=srv.port))
    assert run.failed and message in run.result['msg'], run.result['msg']
    assert app.requests == [] and app.sni == []


def test_ansible_doc_renders():
    proc = subprocess.run([str(BIN / 'ansible-doc'), 'immune.canary.warmup_probe'], capture_output=True, text=True, env=ansible_env(),
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for word in ('latency_threshold_ms', 'secret_headers', 'first_request_timeout', 'RETURN VALUES', 'p95_ms'):
        assert word in proc.stdout
    assert 'WARNING' not in proc.stderr
