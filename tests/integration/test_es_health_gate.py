"""immune.canary.es_health_gate through real ansible-playbook against the double."""

from __future__ import annotations

import datetime
import random
import re

import pytest

from doubles.es_double import EsDouble, iis_log_docs
from support.ansible_runner import run_module

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
                                             'baseline_samples', 'p_value', 'reason'}


def test_bad_canary_fails_fast_with_one_line_per_failing_metric(double):
    seed(double, 0.2)
    run = run_module('es_health_gate', args(double, bake_time=60, interval=5))
    assert run.failed
    result = run.result
    assert result['changed'] is False and result['verdict'] == 'fail' and result['evaluations'] == 1
    lines = result['msg'].splitlines()
    assert lines[0] == 'Health gate failed after 1 evaluation(s):'
    assert len(lines) == 2
    assert re.fullmatch(r'errors 0\.\d+ > 0\.01 \(n=800; baseline 0\.00\d+, p<0\.001\)', lines[1]), lines[1]


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
