"""Bad input, one table per module: a clear error naming the option, and nothing sent to any system.

Most rows run the module's real ``main()`` in this process (the real argument
spec, the real validation, the real clients) against the wire-level doubles,
which count every request they receive; a few rows go through real
ansible-playbook to prove the same holds as users run it.
"""

from __future__ import annotations

import pytest

from doubles.es_double import EsDouble
from doubles.https_app import App, serving_app
from doubles.moto_alb import MotoALB
from doubles.winrm_double import client_params
from support.ansible_runner import run_module
from support.module_main import run_main
from support.tls import TestCA

SHA = 'sha256:' + 'a' * 64


@pytest.fixture(scope='module')
def es():
    with EsDouble('es8') as running:
        yield running


@pytest.fixture(scope='module')
def alb():
    with MotoALB(initial_seconds=0.0, region='ap-south-1') as harness:
        harness.made = harness.seed(instances=2, deregistration_delay=1)
        yield harness


@pytest.fixture(scope='module')
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp('ca-bad-input'))


@pytest.fixture(scope='module')
def app(ca):
    served = App()
    with serving_app(served, ca.issue(['app.example.com'])) as running:
        served.port = running.port
        yield served


def winrm_args(winrm, **extra):
    values = {k: v for k, v in client_params(winrm, winrm.running).items() if v is not None}
    values.update(extra)
    return values


ES_TABLE = [
    # module, bad options, the message must contain
    ('es_health_gate', {'metrics': [{'name': 'x', 'kind': 'saturation', 'max': 1}]}, "Invalid kind 'saturation' for metric x"),
    ('es_health_gate', {'metrics': []}, 'Invalid metrics: give at least one metric'),
    ('es_health_gate', {'metrics': [{'name': 'x', 'kind': 'custom', 'aggs': {'a': {'max': {'field': 'f'}}}, 'value': 'a..b', 'max': 1}]},
     "Invalid value 'a..b' for metric x: not a valid JMESPath expression"),
    ('es_health_gate', {'metrics': [{'name': 'p', 'kind': 'latency', 'percentile': 101, 'max_ms': 5}]}, 'Invalid percentile 101.0 for metric p'),
    ('es_health_gate', {'metrics': [{'name': 'e', 'kind': 'error_rate', 'max': 1.5}]}, 'Invalid max 1.5 for metric e'),
    ('es_health_gate', {'metrics': [{'name': 'e', 'kind': 'error_rate', 'max': 0.1, 'min_samples': -1}]}, 'Invalid min_samples -1 for metric e'),
    ('es_health_gate', {'metrics': 'errors'}, 'metrics'),
    ('es_health_gate', {'interval': 0}, 'Invalid timing: bake_time >= 0, interval > 0'),
    ('es_health_gate', {'bake_time': -1}, 'Invalid timing: bake_time >= 0'),
    ('es_health_gate', {'confidence': 1.5}, 'Invalid confidence 1.5'),
    ('es_health_gate', {'canary': {}}, 'Invalid canary: expected a non-empty mapping'),
    ('es_health_gate', {'since': 'yesterday'}, "Invalid since 'yesterday'"),
    ('es_health_gate', {'no_data': 'maybe'}, 'value of no_data must be one of: fail, pass, warn'),
    ('es_health_gate', {'es_hosts': []}, 'Invalid es_hosts: give at least one URL'),
    ('es_health_gate', {'es_hosts': ['https://']}, "Invalid es_hosts entry 'https://'"),
    ('es_health_gate', {'es_hosts': ['https://user:pw@es.example.com:0']}, "Invalid es_hosts entry 'es.example.com:0'"),
    ('es_health_gate', {'es_hosts': ['https://es.example.com:99999']}, 'Invalid es_hosts entry'),
    ('es_health_gate', {'es_hosts': ['https://es.example.com:port']}, 'Invalid es_hosts entry'),
    ('es_health_gate', {'es_hosts': ['ftp://es.example.com']}, 'Invalid es_hosts entry'),
    ('es_health_gate', {'es_request_timeout': 0}, 'Invalid es_request_timeout 0'),
    ('es_health_gate', {'es_max_retries': -1}, 'Invalid es_max_retries -1'),
    ('deploy_event', {'phase': 'exploded'}, 'value of phase must be one of: started'),
    ('deploy_event', {'app': ''}, "Invalid app ''"),
    ('deploy_event', {'index': 'Deploy-Events'}, "Invalid index 'Deploy-Events'"),
    ('deploy_event', {'timestamp': 'last tuesday'}, "Invalid timestamp 'last tuesday'"),
    ('deploy_event', {'duration': 'slow'}, 'duration'),
    ('deploy_event', {'duration': -3}, 'Invalid duration -3'),
    ('deploy_event', {'data': {'api_key': 'x'}}, 'Invalid data: key(s) api_key look like secrets'),
    ('deploy_event', {'data': 'text'}, 'data'),
    ('deploy_event_info', {'limit': 0}, 'Invalid limit 0: expected a whole number from 1 to 100'),
    ('deploy_event_info', {'limit': 101}, 'Invalid limit 101'),
    ('deploy_event_info', {'app': ''}, "Invalid app ''"),
    ('deploy_event_info', {'keyword_suffix': 'keyword'}, "Invalid keyword_suffix 'keyword'"),
    ('deploy_event_info', {'index': 'a b'}, "Invalid index 'a b'"),
    ('deploy_lock', {'ttl': 0}, 'Invalid ttl 0'),
    ('deploy_lock', {'ttl': -60}, 'Invalid ttl -60'),
    ('deploy_lock', {'ttl': 'an hour'}, 'ttl'),
    ('deploy_lock', {'app': ''}, "Invalid app ''"),
    ('deploy_lock', {'run_id': ''}, "Invalid run_id ''"),
    ('deploy_lock', {'holder': {'host': 'x'}}, 'Invalid holder: unknown key(s) host'),
    ('deploy_lock', {'index': 'locks*'}, "Invalid index 'locks*'"),
    ('deploy_lock', {'state': 'locked'}, 'value of state must be one of: present, absent'),
]

ES_BASE = {
    'es_health_gate': dict(index='iis-logs-*', canary={'application_name': 'app-2'}, bake_time=0, interval=1,
                           metrics=[{'name': 'errors', 'kind': 'error_rate', 'max': 0.05}]),
    'deploy_event': dict(app='app.example.com', phase='started', version='2'),
    'deploy_event_info': dict(app='app.example.com'),
    'deploy_lock': dict(app='app.example.com', run_id='run-1', ttl=60),
}


@pytest.mark.parametrize('module, bad, message', ES_TABLE, ids=['%s-%s' % (row[0], '-'.join(row[1])) for row in ES_TABLE])
def test_elasticsearch_modules_refuse_bad_input_before_any_request(es, module, bad, message):
    es.reset_counters()
    args = dict(ES_BASE[module], es_hosts=[es.url])
    args.update(bad)
    failed, result, _warnings = run_main(module, args)
    assert failed, result
    assert message in result['msg'], result['msg']
    assert es.requests == 0 and es.mutations == []


ALB_TABLE = [
    ({'target_groups': []}, 'Invalid value for option target_groups'),
    ({'target_groups': ['  ']}, 'Invalid value for option target_groups'),
    ({'target_id': ' '}, 'Invalid value for option target_id'),
    ({'target_port': 70000}, 'Invalid value for option target_port: 70000'),
    ({'target_port': 0}, 'Invalid value for option target_port: 0'),
    ({'wait_timeout': 0}, 'Invalid value for option wait_timeout: 0.0'),
    ({'wait_timeout': -5}, 'Invalid value for option wait_timeout: -5.0'),
    ({'poll_interval': 0}, 'Invalid value for option poll_interval'),
    ({'min_healthy': '150%'}, 'min_healthy'),
    ({'min_healthy': -1}, 'min_healthy'),
    ({'min_healthy': 'lots'}, 'min_healthy'),
    ({'state': 'gone'}, 'value of state must be one of: present, absent'),
    ({'wait': 'maybe'}, 'wait'),
    ({'endpoint_url': 'http://'}, "Invalid value for option endpoint_url: 'http://'"),
]


@pytest.mark.parametrize('bad, message', ALB_TABLE, ids=['-'.join(row[0]) for row in ALB_TABLE])
def test_alb_target_refuses_bad_input_before_any_change(alb, bad, message):
    before = list(alb.mutations)
    args = dict(alb.aws_options, target_id=alb.made['instances'][0], target_groups=['web-https'], state='absent')
    args.update(bad)
    failed, result, _warnings = run_main('alb_target', args)
    assert failed, result
    assert message in result['msg'], result['msg']
    assert alb.mutations == before


SITE = {'physical_path': 'D:\\sites\\app.example.com-2', 'bindings': [{'protocol': 'http', 'port': 80}]}
WINRM_TABLE = [
    ('iis_site_swap', {'active': 'other-2'}, "Invalid active 'other-2': a site of app 'app.example.com'"),
    ('iis_site_swap', {'active': None}, 'state is started but all of the following are missing: active'),
    ('iis_site_swap', {'wait_timeout': 0}, 'Invalid wait_timeout 0'),
    ('iis_site_swap', {'wait_timeout': -1}, 'Invalid wait_timeout -1'),
    ('iis_site_swap', {'keep': 'app.example.com-1'}, None),  # a string is one keep entry: accepted by Ansible, checked below
    ('iis_site_swap', {'app': ''}, "Invalid app ''"),
    ('iis_site_swap', {'site': dict(SITE, app_pool={'identity': 'gmsa', 'username': 'CORP\\svc-app'})},
     "Invalid site.app_pool.username 'CORP\\\\svc-app': a group Managed Service Account is DOMAIN\\name$"),
    ('iis_site_swap', {'site': dict(SITE, app_pool={'identity': 'specific_user', 'username': 'svc app'})},
     "Invalid site.app_pool.username 'svc app': use DOMAIN\\name"),
    ('iis_site_swap', {'site': dict(SITE, app_pool={'identity': 'gmsa', 'username': 'CORP\\svc-app$', 'password': 'Gm5a-Pa55'})},
     'Invalid site.app_pool.password: a group Managed Service Account has no password'),
    ('iis_site_swap', {'site': dict(SITE, sections=[{'section': 'system.webServer/windowsAuthentication', 'attributes': {'enabled': True}}])},
     "Invalid site.sections[0].section 'system.webServer/windowsAuthentication': not a section of IIS's configuration"),
    ('iis_site_swap', {'site': SITE, 'copy': {'exclude_sections': ['system.webServer/nosuch']}},
     "Invalid copy.exclude_sections[0] 'system.webServer/nosuch'"),
    ('iis_site_swap', {'site': SITE, 'copy': {'shared_paths': ['shared\\uploads']}}, "Invalid copy.shared_paths[0] 'shared\\\\uploads'"),
    ('iis_site_swap', {'site': dict(SITE, physical_path='D:\\sites\\..\\other')}, "Invalid site.physical_path 'D:\\\\sites\\\\..\\\\other'"),
    ('iis_site_swap', {'site': {'physical_path': 'D:\\sites\\x', 'bindings': [{'protocol': 'https', 'port': 70000}]}},
     'Invalid site.bindings[0].port 70000'),
    ('iis_site_swap', {'site': {'physical_path': 'relative\\x', 'bindings': [{'protocol': 'https', 'port': 443}]}},
     "Invalid site.physical_path 'relative\\\\x'"),
    ('iis_site_swap', {'package': {'url': 'https://a.example.com/r.zip', 'checksum': SHA}},
     'Invalid package: it is unpacked into site.physical_path, so it needs the site option'),
    ('iis_site_swap', {'site': SITE, 'package': {'url': 'https://a.example.com/r.zip', 'checksum': 'md5:1'}},
     "Invalid package.checksum 'md5:1': use sha256:<64 hex digits>"),
    ('iis_site_swap', {'site': SITE, 'package': {'url': 'https:///r.zip', 'checksum': SHA}}, "Invalid package.url 'https:///r.zip'"),
    ('iis_site_swap', {'site': SITE, 'package': {'url': 'https://a.example.com/r.zip', 'checksum': SHA, 'timeout': 0}},
     'Invalid package.timeout 0'),
    ('iis_site_swap', {'site': SITE, 'package': {'checksum': SHA}}, 'missing required arguments: url found in package'),
    ('iis_site_swap', {'site': SITE, 'state': 'query', 'package': {'url': 'https://a.example.com/r.zip', 'checksum': SHA}},
     'so it needs state=started (not query)'),
    ('iis_site_swap', {'winrm_port': 0}, 'Invalid winrm_port 0'),
    ('iis_site_swap', {'winrm_port': 65536}, 'Invalid winrm_port 65536'),
    ('iis_site_swap', {'winrm_host': ''}, "Invalid winrm_host ''"),
    ('iis_site_swap', {'winrm_operation_timeout': 0}, 'Invalid winrm_operation_timeout 0'),
    ('iis_package', {'checksum': 'md5:abc'}, "Invalid checksum 'md5:abc': use sha256:<64 hex digits>"),
    ('iis_package', {'checksum': 'sha256:' + 'g' * 64}, 'Invalid checksum'),
    ('iis_package', {'checksum': 'sha256:abc'}, "Invalid checksum 'sha256:abc'"),
    ('iis_package', {'url': 'ftp://artifacts.example.com/app.zip'}, "Invalid url 'ftp://artifacts.example.com/app.zip'"),
    ('iis_package', {'url': 'https:///app.zip'}, "Invalid url 'https:///app.zip'"),
    ('iis_package', {'url': 'https://artifacts.example.com:99999/app.zip'}, 'Invalid url'),
    ('iis_package', {'dest': 'sites\\app'}, "Invalid dest 'sites\\\\app'"),
    ('iis_package', {'timeout': 0}, 'Invalid timeout 0'),
    ('iis_package', {'timeout': -10}, 'Invalid timeout -10'),
    ('iis_package', {'headers': {'Authorization': 'Bearer x\r\nX-Evil: 1'}}, "Invalid headers: header 'Authorization'"),
    ('iis_package', {'url': None}, 'state is present but all of the following are missing: url'),
]

WINRM_BASE = {
    'iis_site_swap': dict(app='app.example.com', active='app.example.com-2'),
    'iis_package': dict(url='https://artifacts.example.com/app.zip', checksum=SHA, dest='D:\\sites\\app.example.com-2'),
}


@pytest.mark.parametrize('module, bad, message', [row for row in WINRM_TABLE if row[2]],
                         ids=['%s-%s' % (row[0], '-'.join(row[1])) for row in WINRM_TABLE if row[2]])
def test_winrm_modules_refuse_bad_input_before_any_request(winrm, module, bad, message):
    before = winrm.requests
    scripts = len(winrm.hosts['web1'].scripts)
    args = winrm_args(winrm, **WINRM_BASE[module])
    args.update(bad)
    failed, result, _warnings = run_main(module, {k: v for k, v in args.items() if v is not None})
    assert failed, result
    assert message in result['msg'], result['msg']
    assert winrm.requests == before
    assert len(winrm.hosts['web1'].scripts) == scripts


PROBE_TABLE = [
    ({'url': 'https:///health'}, "Invalid url 'https:///health': the URL has no host name"),
    ({'url': 'ftp://app.example.com/health'}, "Invalid url 'ftp://app.example.com/health': the scheme must be https or http"),
    ({'url': 'https://app.example.com:99999/health'}, "Invalid url 'https://app.example.com:99999/health'"),
    ({'url': 'https://user:pw@app.example.com/health'}, 'Invalid url: credentials in the URL are not allowed'),
    ({'port': 0}, 'Invalid port 0'),
    ({'port': 70000}, 'Invalid port 70000'),
    ({'address': 'https://10.0.0.1/'}, "Invalid address 'https://10.0.0.1/'"),
    ({'samples': 0}, 'Invalid samples 0'),
    ({'timeout': -1}, 'Invalid timeout -1'),
    ({'first_request_timeout': 0}, 'Invalid first_request_timeout 0'),
    ({'latency_threshold_ms': -5}, 'Invalid latency_threshold_ms -5'),
    ({'concurrency': 0}, 'Invalid concurrency 0'),
    ({'status_codes': [99]}, 'Invalid status_codes [99]'),
    ({'status_codes': []}, 'Invalid status_codes []'),
    ({'body_regex': '('}, "Invalid body_regex '(': not a regular expression"),
    ({'latency_statistic': 'p99'}, 'value of latency_statistic must be one of: max, p50, p90, p95'),
    ({'url': None, 'urls': []}, 'Invalid url/urls'),
    ({'method': 'GET /x'}, "Invalid method 'GET /x'"),
    ({'headers': {'Host': 'evil.example.com'}}, 'Invalid headers: Host may not be set'),
    ({'samples': 'six'}, 'samples'),
]


@pytest.mark.parametrize('bad, message', PROBE_TABLE, ids=['-'.join(row[0]) for row in PROBE_TABLE])
def test_warmup_probe_refuses_bad_input_before_any_request(app, ca, bad, message):
    before = len(app.requests)
    args = dict(url='https://app.example.com/health', address='127.0.0.1', port=app.port, ca_path=str(ca.ca_path), samples=2)
    args.update(bad)
    failed, result, _warnings = run_main('warmup_probe', {k: v for k, v in args.items() if v is not None})
    assert failed, result
    assert message in result['msg'], result['msg']
    assert len(app.requests) == before


def test_the_same_refusals_through_ansible_playbook(es, winrm):
    """A few rows as users run them: the message and no request, through real ansible-playbook."""
    es.reset_counters()
    run = run_module('deploy_lock', dict(ES_BASE['deploy_lock'], es_hosts=[es.url], ttl=-1))
    assert run.failed and run.result['msg'].startswith('Invalid ttl -1')
    before = winrm.requests
    run = run_module('iis_package', dict(winrm_args(winrm, **WINRM_BASE['iis_package']), checksum='md5:abc'))
    assert run.failed and run.result['msg'].startswith("Invalid checksum 'md5:abc'")
    assert es.requests == 0 and winrm.requests == before
