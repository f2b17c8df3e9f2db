"""Health gate logic without a server: catalog, query shape, verdicts."""

from __future__ import annotations

import datetime
import json
import random

import pytest

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._gate import (
    DEFAULT_FIELDS,
    build_query,
    evaluate_response,
    load_catalog,
    parse_since,
    selection_filter,
)
from ansible_collections.immune.canary.plugins.module_utils._stats import percentile

ERRORS = {'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'max_ratio': 2}
P95 = {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 500, 'max_ratio': 1.5}


@pytest.mark.parametrize('metrics, message', [
    ([{'name': 'x', 'kind': 'apdex'}], "Invalid kind 'apdex' for metric x: valid kinds are error_rate, latency, throughput, count, custom"),
    ([{'kind': 'latency'}], 'Invalid metrics entry 1: name is required'),
    ([{'name': 'p', 'kind': 'latency', 'percentile': 0, 'max_ms': 1}], 'Invalid percentile 0.0 for metric p: must be in (0, 100]'),
    ([{'name': 'p', 'kind': 'latency', 'percentile': 100.5, 'max_ms': 1}], 'Invalid percentile 100.5 for metric p: must be in (0, 100]'),
    ([{'name': 'p', 'kind': 'latency'}], 'Invalid metric p: latency needs max_ms or max_ratio'),
    ([{'name': 'e', 'kind': 'error_rate', 'max': 5}], 'Invalid max 5.0 for metric e: an error rate limit is a share between 0 and 1'),
    ([{'name': 'e', 'kind': 'error_rate', 'max_ms': 5}], 'Invalid key max_ms for metric e (kind error_rate): valid keys are'),
    ([{'name': 'c', 'kind': 'custom', 'value': 'a.[', 'max': 1}], "Invalid value 'a.[' for metric c: not a valid JMESPath expression"),
    ([{'name': 'c', 'kind': 'custom', 'max': 1}], 'Invalid metric c: custom needs value'),
    ([{'name': 'c', 'kind': 'count', 'min': 1, 'query': 'status:500'}], 'Invalid query for metric c: expected an Elasticsearch query DSL dict'),
    ([{'name': 'c', 'kind': 'count', 'min': 'lots'}], "Invalid min 'lots' for metric c: expected a number"),
    ([{'name': 'c', 'kind': 'count', 'min': 1, 'min_samples': -1}], 'Invalid min_samples -1 for metric c: must be >= 0'),
    ([ERRORS, ERRORS], 'Invalid metrics: duplicate metric name(s) errors'),
    ([], 'Invalid metrics: give at least one metric'),
])
def test_catalog_rejects_bad_metrics_with_a_clear_message(metrics, message):
    with pytest.raises(CanaryError) as info:
        load_catalog(metrics)
    assert info.value.message.startswith(message)


def test_catalog_from_yaml_file(tmp_path):
    path = tmp_path / 'metrics.yml'
    path.write_text('metrics:\n  - {name: errors, kind: error_rate, max: 0.01}\n  - name: p99\n    kind: latency\n    percentile: 99\n    max_ms: 800\n')
    catalog = load_catalog(metrics_file=str(path))
    assert [(m.name, m.kind, m.percentile) for m in catalog] == [('errors', 'error_rate', None), ('p99', 'latency', 99.0)]


def test_catalog_file_errors_name_the_file(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('metrics: [unclosed\n')
    with pytest.raises(CanaryError, match='Failed to read metrics_file .*bad.yml: invalid YAML'):
        load_catalog(metrics_file=str(bad))
    with pytest.raises(CanaryError, match='Failed to read metrics_file .*missing.yml: No such file'):
        load_catalog(metrics_file=str(tmp_path / 'missing.yml'))


@pytest.mark.parametrize('name', ['app "quoted"', 'app:colon', 'app with spaces', '*', 'OR', 'back\\slash', 'a) OR (b'])
def test_selections_are_term_filters_carrying_the_value_verbatim(name):
    query = selection_filter({'application_name': name, 'host': ['web-01', 'web 02']}, 'canary', DEFAULT_FIELDS)
    assert query == {'bool': {'filter': [{'term': {'application_name': name}}, {'terms': {'host.name': ['web-01', 'web 02']}}]}}
    # The value survives serialisation unchanged; nothing is parsed as query syntax.
    assert json.loads(json.dumps(query))['bool']['filter'][0]['term']['application_name'] == name


@pytest.mark.parametrize('selection, message', [
    ({}, 'Invalid canary: expected a non-empty mapping'),
    ({'host': []}, 'Invalid canary value for field host: expected a value or a non-empty list'),
    ({'host': {'nested': 1}}, 'Invalid canary value for field host: expected a string, number or list of them, got dict'),
])
def test_bad_selections(selection, message):
    with pytest.raises(CanaryError) as info:
        selection_filter(selection, 'canary')
    assert info.value.message.startswith(message)


def test_parse_since():
    assert parse_since('2026-05-01T12:00:00Z') == datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.timezone.utc)
    assert parse_since('2026-05-01T14:00:00+02:00') == datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.timezone.utc)
    assert parse_since('2026-05-01 12:00:00').tzinfo == datetime.timezone.utc
    with pytest.raises(CanaryError, match="Invalid since 'yesterday'"):
        parse_since('yesterday')


def test_one_size_zero_search_carries_every_metric_for_both_groups():
    catalog = load_catalog([ERRORS, P95, {'name': 'rps', 'kind': 'throughput', 'min': 1},
                            {'name': 'slow', 'kind': 'custom', 'aggs': {'s': {'filter': {'range': {'time_taken': {'gte': 2000}}}}},
                             'value': 's.doc_count', 'max': 5}])
    start = datetime.datetime(2026, 5, 1, 12, tzinfo=datetime.timezone.utc)
    body = build_query(catalog, '@timestamp', DEFAULT_FIELDS, {'term': {'host.name': 'a'}}, {'term': {'host.name': 'b'}},
                       start, start + datetime.timedelta(minutes=5), '10s')
    assert body['size'] == 0
    assert body['query']['bool']['filter'][0] == {'range': {'@timestamp': {
        'gte': '2026-05-01T12:00:00.000Z', 'lte': '2026-05-01T12:05:00.000Z', 'format': 'strict_date_optional_time'}}}
    groups = body['aggs']['groups']
    assert groups['filters']['filters'] == {'canary': {'term': {'host.name': 'a'}}, 'baseline': {'term': {'host.name': 'b'}}}
    assert groups['aggs']['m0'] == {'filter': {'range': {'response': {'gte': 500.0}}}}
    assert groups['aggs']['m1']['percentiles'] == {'field': 'time_taken', 'percents': [95.0]}
    assert groups['aggs']['m1_h']['date_histogram']['fixed_interval'] == '10s'
    assert groups['aggs']['m3'] == {'filter': {'match_all': {}}, 'aggs': {'s': {'filter': {'range': {'time_taken': {'gte': 2000}}}}}}
    assert 'query_string' not in json.dumps(body)


# -- verdicts from synthetic aggregation results ---------------------------------

def group_bucket(requests, errors, latencies_by_bucket, pct=95.0):
    """The aggregation shape for one group, as Elasticsearch returns it for ERRORS + P95."""
    flat = [v for values in latencies_by_bucket for v in values]
    return {
        'doc_count': requests,
        'm0': {'doc_count': errors},
        'm1': {'values': {str(pct): percentile(flat, pct) if flat else None}},
        'm1_n': {'value': len(flat)},
        'm1_h': {'buckets': [{'key': i, 'doc_count': len(values), 'p': {'values': {str(pct): percentile(values, pct)}}}
                             for i, values in enumerate(latencies_by_bucket) if values]},
    }


def response(canary, baseline):
    return {'aggregations': {'groups': {'buckets': {'canary': canary, 'baseline': baseline}}}}


def traffic(rnd, requests, error_rate, latency_ms, buckets=30):
    errors = sum(1 for _request in range(requests) if rnd.random() < error_rate)
    per_bucket = [[rnd.lognormvariate(0, 0.35) * latency_ms for _value in range(requests // buckets)] for _bucket in range(buckets)]
    return group_bucket(requests, errors, per_bucket)


def verdict_of(canary, baseline, final=True, metrics=(ERRORS, P95), no_data='fail'):
    return evaluate_response(load_catalog(list(metrics)), response(canary, baseline), 300.0, 0.98, final, no_data)


def test_twenty_percent_errors_fail_conclusively_during_the_bake():
    rnd = random.Random(1)
    canary = traffic(rnd, 412, 0.2, 50)
    verdict, results = verdict_of(canary, traffic(rnd, 8000, 0.002, 50), final=False)
    assert verdict == 'fail'
    errors = results[0]
    assert errors['status'] == 'fail' and errors['p_value'] < 0.001
    assert errors['reason'] == 'errors %.3g > 0.01 (n=412; baseline %.3g, p<0.001)' % (errors['value'], errors['baseline_value'])


def test_an_error_rate_above_max_must_be_significantly_above_it():
    absolute = ({'name': 'errors', 'kind': 'error_rate', 'max': 0.01},)
    # 2 errors in 60 requests (3.3 %) over a 1 % limit: P(X >= 2 | 60, 0.01) = 1 - 0.99^60 - 60 * 0.01 * 0.99^59 = 0.1212 - could be chance.
    canary = group_bucket(60, 2, [[40.0] * 2] * 30)
    assert verdict_of(canary, None, final=False, metrics=absolute)[0] is None
    verdict, results = verdict_of(canary, None, final=True, metrics=absolute)
    assert verdict == 'pass'
    assert results[0]['reason'] == 'errors 0.0333 within limits (n=60); above max 0.01 but not significantly (p=0.121)'
    # 6 of 60 (10 %) is: P(X >= 6 | 60, 0.01) < 0.001.
    verdict, results = verdict_of(group_bucket(60, 6, [[40.0] * 2] * 30), None, final=False, metrics=absolute)
    assert verdict == 'fail'
    assert results[0]['reason'] == 'errors 0.1 > 0.01 (n=60; p<0.001)'


def test_a_small_canary_far_worse_than_the_baseline_fails_on_the_baseline_test():
    # 2/60 vs 6/6000 with max_ratio 2: Fisher's exact test (small expected counts) makes it significant.
    verdict, results = verdict_of(group_bucket(60, 2, [[40.0] * 2] * 30), group_bucket(6000, 6, [[40.0] * 200] * 30), final=False)
    assert verdict == 'fail'
    assert results[0]['reason'].startswith('errors 0.0333 > 0.002 allowed vs baseline (n=60; baseline 0.001, p=0.00')


def test_latency_twice_the_baseline_fails_while_under_the_absolute_threshold():
    rnd = random.Random(2)
    verdict, results = verdict_of(traffic(rnd, 3000, 0.0, 100), traffic(rnd, 9000, 0.0, 50), final=False)
    p95 = results[1]
    assert p95['value'] < 500
    assert verdict == 'fail' and p95['status'] == 'fail'
    assert p95['value'] > p95['baseline_value'] * 1.5
    assert p95['p_value'] < 0.02
    assert p95['reason'].startswith('p95 %.3g > %.3g ms (1.5x baseline) (n=3000; baseline' % (p95['value'], p95['baseline_value'] * 1.5))


def test_slightly_slower_but_within_the_allowed_ratio_passes():
    rnd = random.Random(3)
    verdict, results = verdict_of(traffic(rnd, 3000, 0.0, 60), traffic(rnd, 9000, 0.0, 50))
    assert verdict == 'pass', results
    assert results[1]['p_value'] < 0.02  # significant, yet within max_ratio


def test_equal_canary_and_baseline_with_noise_never_raise_a_false_alarm():
    alarms = []
    for seed in range(100):
        rnd = random.Random(seed)
        canary = traffic(rnd, 600, 0.004, 50)
        baseline = traffic(rnd, 6000, 0.004, 50)
        verdict, results = verdict_of(canary, baseline, final=True)
        if verdict != 'pass':
            alarms.append((seed, [r['reason'] for r in results]))
    assert alarms == []


def test_the_same_noise_with_a_real_regression_is_caught_every_time():
    # The counterpart of the test above: the test is not simply blind.
    caught = 0
    for seed in range(100):
        rnd = random.Random(seed)
        verdict, _results = verdict_of(traffic(rnd, 600, 0.004, 120), traffic(rnd, 6000, 0.004, 50), final=True)
        caught += verdict == 'fail'
    assert caught == 100


def test_too_few_samples_is_no_data_and_fails_closed_at_the_end():
    canary = group_bucket(7, 0, [[40.0]] * 7)
    baseline = group_bucket(5000, 5, [[40.0] * 100] * 30)
    assert verdict_of(canary, baseline, final=False)[0] is None
    verdict, results = verdict_of(canary, baseline)
    assert verdict == 'fail'
    assert [r['status'] for r in results] == ['no_data', 'no_data']
    assert results[0]['reason'] == 'too few samples: n=7 < min_samples 50'
    assert verdict_of(canary, baseline, no_data='warn')[0] == 'inconclusive'
    assert verdict_of(canary, baseline, no_data='pass')[0] == 'pass'


def test_report_only_metrics_warn_instead_of_failing():
    rnd = random.Random(4)
    noisy = dict(ERRORS, report_only=True)
    verdict, results = verdict_of(traffic(rnd, 500, 0.2, 50), traffic(rnd, 5000, 0.0, 50), metrics=(noisy, P95))
    assert verdict == 'pass'
    assert results[0]['status'] == 'warn' and results[0]['reason'].endswith('[report only]')


def test_without_baseline_only_thresholds_apply():
    rnd = random.Random(5)
    verdict, results = verdict_of(traffic(rnd, 500, 0.0, 100), None)
    assert verdict == 'pass'
    assert results[1]['baseline_value'] is None and results[1]['p_value'] is None


def test_baseline_error_rate_regression_needs_significance_and_effect():
    # 1.5 % vs 0.5 %: 3x the baseline; significant with n=2000 vs 20000.
    canary = group_bucket(2000, 30, [[40.0] * 60] * 30)
    baseline = group_bucket(20000, 100, [[40.0] * 600] * 30)
    relaxed = {'name': 'errors', 'kind': 'error_rate', 'max_ratio': 2}
    verdict, results = verdict_of(canary, baseline, metrics=(relaxed,))
    assert verdict == 'fail'
    assert results[0]['threshold'] == pytest.approx(0.01)
    assert results[0]['reason'].startswith('errors 0.015 > 0.01 allowed vs baseline (n=2000; baseline 0.005, p<0.001)')
    # Same ratio with tiny counts is not significant: pass.
    small = group_bucket(200, 3, [[40.0] * 6] * 30)
    verdict, results = verdict_of(small, baseline, metrics=(relaxed,))
    assert verdict == 'pass', results


def test_custom_and_count_metrics():
    catalog = [{'name': 'slow', 'kind': 'custom', 'aggs': {'s': {'filter': {'match_all': {}}}}, 'value': 's.doc_count', 'max': 5},
               {'name': 'hits', 'kind': 'count', 'min': 100},
               {'name': 'rps', 'kind': 'throughput', 'min': 1}]
    canary = {'doc_count': 90, 'm0': {'doc_count': 90, 's': {'doc_count': 9}}}
    resp = {'aggregations': {'groups': {'buckets': {'canary': canary}}}}
    verdict, results = evaluate_response(load_catalog(catalog), resp, 300.0, 0.98, False, 'fail')
    assert verdict == 'fail'  # custom above max is conclusive
    assert [(r['name'], r['status']) for r in results] == [('slow', 'fail'), ('hits', 'fail'), ('rps', 'fail')]
    assert results[2]['value'] == pytest.approx(0.3)
    verdict, _results = evaluate_response(load_catalog(catalog[1:]), resp, 300.0, 0.98, False, 'fail')
    assert verdict is None  # minimums wait for the end of the bake


def test_custom_value_must_be_a_number():
    catalog = load_catalog([{'name': 'odd', 'kind': 'custom', 'value': 'doc_count_text', 'max': 1}])
    resp = {'aggregations': {'groups': {'buckets': {'canary': {'doc_count': 1, 'm0': {'doc_count': 1, 'doc_count_text': 'x'}}}}}}
    with pytest.raises(CanaryError, match='Failed to evaluate metric odd: JMESPath doc_count_text returned str, not a number'):
        evaluate_response(catalog, resp, 1.0, 0.98, True, 'fail')
