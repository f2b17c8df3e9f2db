"""TLS: certificate validation is on by default everywhere; turning it off is explicit and warned about, once per run."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import ES_ARGUMENT_SPEC
from ansible_collections.immune.canary.plugins.module_utils._winrm import winrm_argument_spec
from doubles.es_double import EsDouble
from doubles.https_app import App, serving_app
from doubles.winrm_double import WinRMDouble, client_params
from support.module_main import run_main
from support.servers import server_tls_context
from support.tls import TestCA

ROLE = Path(__file__).resolve().parents[2] / 'roles' / 'rollout'


def documented_default(module, option):
    code = importlib.import_module('ansible_collections.immune.canary.plugins.modules.' + module)
    return yaml.safe_load(code.DOCUMENTATION)['options'][option]['default']


def test_every_certificate_check_is_on_by_default():
    assert winrm_argument_spec()['winrm_server_cert_validation']['default'] == 'validate'
    assert ES_ARGUMENT_SPEC['es_verify_certs']['default'] is True
    assert importlib.import_module('ansible_collections.immune.canary.plugins.modules.warmup_probe').ARGUMENT_SPEC['validate_certs']['default']
    assert documented_default('iis_package', 'validate_certs') is True
    assert documented_default('warmup_probe', 'validate_certs') is True
    assert yaml.safe_load((ROLE / 'defaults' / 'main.yml').read_text())['rollout_warmup_validate_certs'] is True
    winrm_vars = yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text())['__rollout_winrm']
    assert winrm_vars['winrm_server_cert_validation'] == "{{ ansible_winrm_server_cert_validation | default('validate') }}"


@pytest.fixture(scope='module')
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp('ca-tls'))


def only(warnings, option):
    named = [w for w in warnings if option in w]
    assert len(named) == 1, warnings
    return named[0]


def test_winrm_and_package_download_checks_off_are_warned_once(ca):
    with WinRMDouble() as double:
        double.add_host('web1')
        running = double.listen('web1', tls_context=server_tls_context(*ca.issue(['127.0.0.1'])))
        params = {k: v for k, v in client_params(double, running, winrm_server_cert_validation='ignore').items() if v is not None}
        failed, result, warnings = run_main('iis_package', dict(params, url='https://artifacts.example.com/app.zip', checksum='sha256:' + 'c' * 64,
                                                                dest='D:\\sites\\app-2', validate_certs=False), check=True)
        assert not failed, result
        assert only(warnings, 'winrm_server_cert_validation').startswith('winrm_server_cert_validation is ignore: the certificate of the WinRM')
        assert only(warnings, 'validate_certs is false').startswith('validate_certs is false: the host does not check the certificate of the '
                                                                    'package download server')
        failed, result, warnings = run_main('iis_site_swap', dict(params, app='app', state='query'))
        assert not failed, result
        only(warnings, 'winrm_server_cert_validation is ignore')
        validated = {k: v for k, v in client_params(double, running, winrm_ca_trust_path=str(ca.ca_path)).items() if v is not None}
        failed, result, warnings = run_main('iis_site_swap', dict(validated, app='app', state='query'))
        assert not failed and warnings == [], (result, warnings)


def test_elasticsearch_check_off_is_warned_once(ca):
    with EsDouble('es8', tls_context=server_tls_context(*ca.issue(['127.0.0.1']))) as es:
        base = dict(es_hosts=[es.url], app='app.example.com')
        for module, extra in (('deploy_event_info', {}), ('deploy_lock', {'run_id': 'r', 'ttl': 60}),
                              ('deploy_event', {'phase': 'started'})):
            failed, result, warnings = run_main(module, dict(base, es_verify_certs=False, **extra))
            assert not failed, result
            assert only(warnings, 'es_verify_certs') == 'es_verify_certs is false: the Elasticsearch server certificate is not verified'
        failed, result, warnings = run_main('deploy_event_info', dict(base, es_ca_certs=str(ca.ca_path)))
        assert not failed and warnings == [], (result, warnings)
        failed, result, _warnings = run_main('deploy_event_info', base)
        assert failed and 'CERTIFICATE_VERIFY_FAILED' in result['msg'], result['msg']


def test_warmup_and_aws_checks_off_are_warned_once(ca):
    app = App()
    with serving_app(app, ca.issue(['app.example.com'])) as running:
        failed, result, warnings = run_main('warmup_probe', dict(url='https://app.example.com/health', address='127.0.0.1', port=running.port,
                                                                 samples=2, validate_certs=False))
        assert not failed, result
        assert only(warnings, 'validate_certs').startswith('validate_certs is false: the certificate of')
    # Warned before anything is called: a run refused for its input shows it too, with no AWS endpoint needed.
    failed, result, warnings = run_main('alb_target', dict(validate_certs=False, region='eu-west-1', target_id='i-1', target_groups=[' ']))
    assert failed and result['msg'].startswith('Invalid value for option target_groups'), result
    assert only(warnings, 'validate_certs') == 'validate_certs is false: the TLS certificate of the AWS endpoint is not checked'
