"""immune.canary.es_health_gate through real ansible-playbook against the double."""

from __future__ import annotations

import datetime
import json
import random
import re
import urllib.request

import pytest
from osmem_server import OsmemServer

from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from ansible_collections.immune.canary.plugins.module_utils._gate import DEFAULT_FIELDS, Judge, build_query, load_catalog, selection_filter
from doubles.es_double import EsDouble, iis_log_docs
from doubles.moto_alb import FAKE_SECRET_KEY, MotoALB
from doubles.moto_asg import MotoASG
from support.ansible_runner import run_module, run_playbook

MARKER = 'QVBJLUtFWS1NQVJLRVItNzc3LXNlY3JldA=='
NOW = datetime.datetime.now(datetime.timezone.utc)
SINCE = NOW - datetime.timedelta(seconds=120)
METRICS = [
    {'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'max_ratio': 2},
    {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 500, 'max_ratio': 1.5},
]


@pytest.fixture
def double():
    with EsDouble('es9') as running:
        running.require_auth = 'ApiKey ' + MARKER
        yield running


def seed(double, canary_errors):
    rnd = random.Random(5)
    docs = list(iis_log_docs(800, 'web-01', 'app.example.com-3457', SINCE, NOW, canary_errors, 50.0, rnd))
    for host in ('web-02', 'web-03'):
        docs += iis_log_docs(3000, host, 'app.example.com-3456', SINCE, NOW, 0.002, 50.0, rnd)
    double.index_docs('iis-logs-2026.05', docs)


def args(double, **extra):
    base = dict(
        es_hosts=[double.url], es_api_key=MARKER, index='iis-logs-*', since=SINCE.isoformat(),
        canary={'host': 'web-01', 'application_name': 'app.example.com-3457'},
        baseline={'host': ['web-02', 'web-03'], 'application_name': 'app.example.com-3456'},
        metrics=METRICS, bake_time=1.5, interval=0.5)
    base.update(extra)
    return base


def file_args(base, catalog):
    base.pop('metrics')
    base['metrics_file'] = str(catalog)
    return base


def test_good_canary_passes_check_mode_too_and_never_changes(double):
    seed(double, 0.002)
    for check in (True, False):
        run = run_module('es_health_gate', args(double), check=check)
        assert not run.failed, run.result
        result = run.result
        assert result['changed'] is False
        assert result['verdict'] == 'pass'
        assert result['evaluations'] >= 3
        assert result['elapsed'] >= 1.5
        assert [m['status'] for m in result['metrics']] == ['pass', 'pass']
        assert result['query']['size'] == 0
        assert set(result['window']) == {'from', 'to'}
        assert set(result['metrics'][0]) == {'name', 'kind', 'value', 'baseline_value', 'threshold', 'status', 'samples',
                                             'baseline_samples', 'p_value', 'reason', 'effect', 'allowed_effect', 'e_value',
                                             'e_threshold', 'alpha', 'tests'}
        assert result['false_fail_rate'] == pytest.approx(0.02)  # 1 - confidence
        assert [t['test'] for t in result['metrics'][1]['tests']] == ['max', 'baseline']


def test_bad_canary_fails_fast_with_one_line_per_failing_metric(double):
    seed(double, 0.2)
    run = run_module('es_health_gate', args(double, bake_time=60, interval=5, false_fail_rate=0.0005))
    assert run.failed
    result = run.result
    assert result['changed'] is False and result['verdict'] == 'fail' and result['evaluations'] == 1
    lines = result['msg'].splitlines()
    assert lines[0] == 'Health gate failed after 1 evaluation(s):'
    assert len(lines) == 2
    assert re.fullmatch(r'errors 0\.\d+ > 0\.01 \(n=800; baseline 0\.00\d+; e=\S+ >= 8e\+04\)', lines[1]), lines[1]
    errors = result['metrics'][0]
    assert errors['alpha'] == pytest.approx(0.0005 / 2) and errors['e_value'] >= errors['e_threshold']


def test_false_fail_rate_sets_the_budget_and_is_checked_before_any_request(double):
    seed(double, 0.002)
    run = run_module('es_health_gate', args(double, false_fail_rate=0.001, bake_time=0))
    assert not run.failed, run.result
    assert run.result['false_fail_rate'] == 0.001
    assert sum(t['alpha'] for m in run.result['metrics'] for t in m['tests']) == pytest.approx(0.001)
    double.reset_counters()
    bad = run_module('es_health_gate', args(double, false_fail_rate=0.7))
    assert bad.failed
    assert bad.result['msg'] == 'Invalid false_fail_rate 0.7: must be in (0, 0.5], e.g. 0.005 (the first host of a rollout whose budget is 0.01)'
    assert double.requests == 0


@pytest.mark.parametrize('position, budget', [(1, 0.01 / 2), (3, 0.01 / 12), (20, 0.01 / 420)])
def test_the_rollout_option_gives_the_host_its_share_of_the_rollout_budget(double, position, budget):
    seed(double, 0.002)
    run = run_module('es_health_gate', args(double, rollout={'false_abort_rate': 0.01, 'position': position}, bake_time=0))
    assert not run.failed, run.result
    assert run.result['verdict'] == 'pass'
    assert run.result['false_fail_rate'] == pytest.approx(budget, rel=1e-12)
    assert sum(t['alpha'] for m in run.result['metrics'] for t in m['tests']) == pytest.approx(budget, rel=1e-5)


@pytest.mark.parametrize('extra, message', [
    ({'rollout': {'false_abort_rate': 1.5, 'position': 1}},
     'Invalid rollout.false_abort_rate 1.5: must be in (0, 1], the share of rollouts that may stop a release as good as the '
     'running one, e.g. 0.01'),
    ({'rollout': {'false_abort_rate': 0.01, 'position': 0}},
     "Invalid rollout.position 0: must be a whole number >= 1, the host's place in the rollout (1 for the first host to take "
     'the new version)'),
    ({'rollout': {'false_abort_rate': 0.01}}, 'missing required arguments: position found in rollout'),
    ({'rollout': {'false_abort_rate': 0.01, 'position': 1}, 'false_fail_rate': 0.001},
     'parameters are mutually exclusive: false_fail_rate|rollout'),
])
def test_a_bad_rollout_option_is_refused_before_any_request(double, extra, message):
    run = run_module('es_health_gate', args(double, **extra))
    assert run.failed
    assert run.result['msg'] == message
    assert double.requests == 0


def test_report_only_never_fails(double):
    seed(double, 0.2)
    run = run_module('es_health_gate', args(double, report_only=True, bake_time=0))
    assert not run.failed
    assert run.result['verdict'] == 'fail'
    assert 'report_only: Health gate failed after 1 evaluation(s)' in run.stdout + run.stderr


def test_unreachable_elasticsearch_fails_closed(double):
    seed(double, 0.002)
    double.down = True
    run = run_module('es_health_gate', args(double, es_max_retries=1))
    assert run.failed
    assert run.result['msg'].startswith('Health gate failed: could not evaluate: Failed to read server information from Elasticsearch: ConnectionError')


def test_secret_never_shows_even_at_vvv(double):
    seed(double, 0.2)
    run = run_module('es_health_gate', args(double, bake_time=0), verbosity=3)
    assert run.failed
    assert MARKER not in run.stdout + run.stderr
    assert MARKER not in repr(run.records)
    wrong = run_module('es_health_gate', args(double, es_api_key='x' + MARKER, bake_time=0), verbosity=3)
    assert wrong.failed and 'HTTP 401 security_exception' in wrong.result['msg']
    assert MARKER not in wrong.stdout + wrong.stderr


def test_bad_catalog_is_refused_before_any_request(double, tmp_path):
    run = run_module('es_health_gate', args(double, metrics=[{'name': 'apdex', 'kind': 'apdex'}]))
    assert run.failed
    assert run.result['msg'] == "Invalid kind 'apdex' for metric apdex: valid kinds are error_rate, latency, throughput, count, custom"
    catalog = tmp_path / 'metrics.yml'
    catalog.write_text('- {name: odd, kind: custom, value: "a[", max: 1}\n')
    run = run_module('es_health_gate', file_args(args(double), catalog))
    assert run.failed
    assert run.result['msg'].startswith("Invalid value 'a[' for metric odd: not a valid JMESPath expression")
    assert double.requests == 0


def test_metrics_file_catalog(double, tmp_path):
    seed(double, 0.002)
    catalog = tmp_path / 'metrics.yml'
    catalog.write_text('metrics:\n'
                       '  - {name: errors, kind: error_rate, max: 0.01}\n'
                       '  - {name: traffic, kind: count, min: 100}\n'
                       '  - name: slow\n    kind: custom\n    aggs: {slow: {filter: {range: {time_taken: {gte: 2000}}}}}\n'
                       '    value: slow.doc_count\n    max: 5\n')
    run = run_module('es_health_gate', file_args(args(double, bake_time=0), catalog))
    assert not run.failed, run.result
    assert [(m['name'], m['status']) for m in run.result['metrics']] == [('errors', 'pass'), ('traffic', 'pass'), ('slow', 'pass')]
    assert run.result['metrics'][1]['value'] == 800


def test_exclude_leaves_the_load_balancers_health_checks_out(double):
    rnd = random.Random(9)
    customers = list(iis_log_docs(60, 'web-01', 'app.example.com-3457', SINCE, NOW, 0.2, 50.0, rnd))
    checks = [dict(doc, response=200, cs_uri_stem='/health', user_agent={'original': 'ELB-HealthChecker/2.0'})
              for doc in iis_log_docs(600, 'web-01', 'app.example.com-3457', SINCE, NOW, 0.0, 5.0, rnd)]
    double.index_docs('iis-logs-2026.05', customers + checks)
    errors = sum(1 for d in customers if d['response'] == 500)
    metrics = [{'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'min_samples': 10}]
    base = dict(args(double, metrics=metrics, bake_time=0), baseline=None)
    base.pop('baseline')

    diluted = run_module('es_health_gate', base)
    assert not diluted.failed, diluted.result  # 600 health checks hide the canary's errors
    assert diluted.result['metrics'][0]['samples'] == 660

    left_out = run_module('es_health_gate', dict(base, exclude={'user_agent.original': 'ELB-HealthChecker/2.0'}))
    assert left_out.failed
    assert left_out.result['metrics'][0]['samples'] == 60
    assert left_out.result['metrics'][0]['value'] == pytest.approx(errors / 60, abs=1e-4)
    assert left_out.result['query']['query']['bool']['filter'][1]['bool']['should'][0]['bool']['must_not'] == [
        {'term': {'user_agent.original': 'ELB-HealthChecker/2.0'}}]

    bad = run_module('es_health_gate', dict(base, exclude={'url.path': {'prefix': '/health'}}))
    assert bad.failed and 'Invalid exclude value for field url.path' in bad.result['msg']


# -- the same queries on a second engine: osmem-server, an in-memory OpenSearch-compatible server -----------

MAPPINGS = {'properties': {
    '@timestamp': {'type': 'date'}, 'host': {'properties': {'name': {'type': 'keyword'}}}, 'application_name': {'type': 'keyword'},
    'response': {'type': 'integer'}, 'time_taken': {'type': 'integer'}, 'cs_method': {'type': 'keyword'}, 'cs_uri_stem': {'type': 'keyword'},
}}
CATALOG = METRICS + [{'name': 'p99', 'kind': 'latency', 'percentile': 99, 'max_ms': 150, 'max_ratio': 2}]


def _send(url, method, path, body=None, ndjson=False):
    data = None
    if body is not None:
        data = (''.join(json.dumps(line) + '\n' for line in body) if ndjson else json.dumps(body)).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={'Content-Type': 'application/x-ndjson' if ndjson else 'application/json'})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b'{}')


@pytest.fixture(scope='module')
def engines():
    """osmem-server and the double, holding the same documents: a good canary (web-01) and a slow, failing one (web-09)."""
    rnd = random.Random(21)
    docs = list(iis_log_docs(400, 'web-01', 'app.example.com-3457', SINCE, NOW, 0.002, 50.0, rnd))
    docs += iis_log_docs(400, 'web-09', 'app.example.com-3457', SINCE, NOW, 0.2, 150.0, rnd)
    for host in ('web-02', 'web-03'):
        docs += iis_log_docs(2000, host, 'app.example.com-3456', SINCE, NOW, 0.002, 50.0, rnd)
    server = OsmemServer.start(japanese=False)
    try:
        assert server.url.startswith('http://127.0.0.1:')
        _send(server.url, 'PUT', '/iis-logs-2026.05', {'mappings': MAPPINGS})
        for start in range(0, len(docs), 1000):
            lines = []
            for doc in docs[start:start + 1000]:
                lines += [{'index': {'_index': 'iis-logs-2026.05'}}, doc]
            assert _send(server.url, 'POST', '/_bulk', lines, ndjson=True)['errors'] is False
        _send(server.url, 'POST', '/iis-logs-2026.05/_refresh')
        with EsDouble('opensearch2') as double:
            double.index_docs('iis-logs-2026.05', docs)
            yield {'osmem': server.url, 'double': double.url}
    finally:
        server.close()


def _gate_query(canary_host):
    catalog = load_catalog(CATALOG)
    body = build_query(catalog, '@timestamp', DEFAULT_FIELDS,
                       selection_filter({'host': canary_host, 'application_name': 'app.example.com-3457'}, 'canary', DEFAULT_FIELDS),
                       selection_filter({'host': ['web-02', 'web-03'], 'application_name': 'app.example.com-3456'}, 'baseline', DEFAULT_FIELDS),
                       SINCE, NOW)
    return catalog, body


@pytest.mark.parametrize('canary_host', ['web-01', 'web-09'])
def test_the_gates_aggregations_answer_the_same_on_osmem_and_on_the_double(engines, canary_host):
    catalog, body = _gate_query(canary_host)
    answers = {}
    for name, url in engines.items():
        client = EsClient(dict(es_hosts=[url], es_request_timeout=30))
        try:
            assert client.info().is_opensearch
            answers[name] = client.search('iis-logs-*', body)['aggregations']['groups']['buckets']
        finally:
            client.close()
    for group in ('canary', 'baseline'):
        osmem, double = answers['osmem'][group], answers['double'][group]
        assert osmem['doc_count'] == double['doc_count'] > 0
        assert osmem['m0']['doc_count'] == double['m0']['doc_count']
        for key in ('m1', 'm2'):
            counts = [b['doc_count'] for b in osmem[key]['buckets']]
            assert counts == [b['doc_count'] for b in double[key]['buckets']]
            assert len(counts) == len(catalog[int(key[1:])].edges) + 1 and sum(counts) == osmem['doc_count']
            asked = body['aggs']['groups']['aggs'][key]['range']['ranges']
            assert [(b.get('from'), b.get('to')) for b in osmem[key]['buckets']] == [(r.get('from'), r.get('to')) for r in asked]
    # and the judge reads both answers the same way
    verdicts = {name: Judge(catalog, 0.0005).evaluate({'aggregations': {'groups': {'buckets': answer}}}, 120.0, True)
                for name, answer in answers.items()}
    assert verdicts['osmem'] == verdicts['double']
    assert verdicts['osmem'][0] == ('pass' if canary_host == 'web-01' else 'fail')


@pytest.mark.parametrize('canary_host, verdict', [('web-01', 'pass'), ('web-09', 'fail')])
def test_the_module_decides_on_osmem(engines, canary_host, verdict):
    base = dict(es_hosts=[engines['osmem']], index='iis-logs-*', since=SINCE.isoformat(),
                canary={'host': canary_host, 'application_name': 'app.example.com-3457'},
                baseline={'host': ['web-02', 'web-03'], 'application_name': 'app.example.com-3456'},
                metrics=CATALOG, bake_time=1, interval=0.5, false_fail_rate=0.0005)
    run = run_module('es_health_gate', base)
    assert run.result['verdict'] == verdict, run.result
    assert run.failed is (verdict == 'fail')
    metrics = {m['name']: m for m in run.result['metrics']}
    assert metrics['errors']['samples'] == 400 and metrics['errors']['baseline_samples'] == 4000
    if verdict == 'fail':
        # 20 % errors and 3x the latency: errors and both latency metrics fail, each with the test that crossed
        assert {name for name, m in metrics.items() if m['status'] == 'fail'} == {'errors', 'p95', 'p99'}
        assert all(any(t['crossed'] for t in m['tests']) for m in metrics.values())
        assert run.result['evaluations'] == 1


def test_an_alarm_fails_the_gate_with_the_aws_options_from_the_aws_group(double, tmp_path):
    seed(double, 0.002)      # a good canary: only the alarm can fail it
    with MotoALB(region='eu-north-1') as alb, MotoASG(alb) as fleet:
        fleet.alarm('web-5xx', 'ALARM', 'Threshold Crossed: 14 > 10')
        fleet.alarm('web-latency')
        gate = dict(args(double), alarms=['web-5xx', 'web-latency'])
        play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local',
                 'module_defaults': {'group/immune.canary.aws': alb.aws_options},
                 'tasks': [
                     {'name': 'Firing', 'immune.canary.es_health_gate': gate, 'ignore_errors': True},
                     {'name': 'Read', 'immune.canary.cloudwatch_alarms': {'names': ['web-5xx']}, 'register': 'seen'},
                     {'name': 'Let pass', 'immune.canary.es_health_gate': dict(gate, alarms_preexisting='{{ seen.alarms }}')},
                 ]}]
        (tmp_path / 'play.yml').write_text(json.dumps(play), encoding='utf-8')
        run = run_playbook(tmp_path / 'play.yml', args=['-vvv'], env={'ANSIBLE_INJECT_INVOCATION': 'true'})
    by_task = {r['task']: r for r in run.records}
    firing, passed = by_task['Firing'], by_task['Let pass']
    assert firing['status'] == 'failed', run.stdout[-3000:]
    assert firing['result']['msg'] == 'Health gate failed: CloudWatch alarm fired: 1 CloudWatch alarm(s) in ALARM: web-5xx (Threshold Crossed: 14 > 10)'
    assert [(a['name'], a['state']) for a in firing['result']['alarms']] == [('web-5xx', 'ALARM'), ('web-latency', 'OK')]
    assert firing['result']['evaluations'] == 0       # failed at the first look, before Elasticsearch was asked
    assert passed['status'] == 'ok' and passed['result']['verdict'] == 'pass', passed['result'].get('msg')
    assert FAKE_SECRET_KEY not in run.stdout + run.stderr and MARKER not in run.stdout + run.stderr
