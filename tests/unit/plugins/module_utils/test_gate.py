"""Health gate logic without a server: catalog, query shape, verdicts."""

from __future__ import annotations

import bisect
import datetime
import functools
import json
import math
import random

import pytest
from scipy import stats

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._gate import (
    ANYTIME_SHARE,
    BASELINE_SHARE,
    DEFAULT_FIELDS,
    LATENCY_EDGES,
    Judge,
    build_query,
    evaluate_response,
    load_catalog,
    parse_since,
    rollout_budget,
    selection_filter,
    split_budget,
)

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
                       start, start + datetime.timedelta(minutes=5))
    assert body['size'] == 0
    assert body['query']['bool']['filter'][0] == {'range': {'@timestamp': {
        'gte': '2026-05-01T12:00:00.000Z', 'lte': '2026-05-01T12:05:00.000Z', 'format': 'strict_date_optional_time'}}}
    groups = body['aggs']['groups']
    assert groups['filters']['filters'] == {'canary': {'term': {'host.name': 'a'}}, 'baseline': {'term': {'host.name': 'b'}}}
    assert groups['aggs']['m0'] == {'filter': {'range': {'response': {'gte': 500.0}}}}
    # latency: one range aggregation over fixed log-spaced bins, plus an edge just above max_ms
    ranges = groups['aggs']['m1']['range']['ranges']
    assert groups['aggs']['m1']['range']['field'] == 'time_taken'
    assert ranges[0] == {'to': 1.0} and ranges[-1] == {'from': 131100.0}
    edges = [r['from'] for r in ranges[1:]]
    assert edges == sorted(LATENCY_EDGES + [math.nextafter(500.0, math.inf)])
    assert all(r['to'] == nxt['from'] for r, nxt in zip(ranges[1:], ranges[2:], strict=False))
    assert set(groups['aggs']) == {'m0', 'm1', 'm3'}  # no date histogram, no percentiles: nothing grows with time or traffic
    assert groups['aggs']['m3'] == {'filter': {'match_all': {}}, 'aggs': {'s': {'filter': {'range': {'time_taken': {'gte': 2000}}}}}}
    assert 'query_string' not in json.dumps(body)


# -- verdicts from aggregation results shaped as Elasticsearch returns them -----------------

def group_bucket(catalog, requests, errors, latencies):
    """One group's aggregation result for ``catalog`` (error_rate and latency metrics)."""
    bucket = {'doc_count': requests}
    for i, metric in enumerate(catalog):
        if metric.kind == 'error_rate':
            bucket['m%d' % i] = {'doc_count': errors}
        elif metric.kind == 'latency':
            counts = [0] * (len(metric.edges) + 1)
            for value in latencies:
                counts[bisect.bisect_right(metric.edges, value)] += 1
            bucket['m%d' % i] = {'buckets': [{'key': 'k%d' % j, 'doc_count': c} for j, c in enumerate(counts)]}
    return bucket


def response(canary, baseline):
    buckets = {'canary': canary}
    if baseline is not None:
        buckets['baseline'] = baseline
    return {'aggregations': {'groups': {'buckets': buckets}}}


def latencies(rnd, requests, latency_ms):
    return [rnd.lognormvariate(0, 0.35) * latency_ms for _request in range(requests)]


def traffic(catalog, rnd, requests, error_rate, latency_ms):
    errors = sum(1 for _request in range(requests) if rnd.random() < error_rate)
    return group_bucket(catalog, requests, errors, latencies(rnd, requests, latency_ms))


def verdict_of(canary, baseline, final=True, metrics=(ERRORS, P95), no_data='fail', rate=0.02):
    """One look (canary and baseline given as functions of the catalog)."""
    catalog = load_catalog(list(metrics))
    return evaluate_response(catalog, response(canary(catalog), baseline(catalog) if baseline else None), 300.0, rate, final, no_data,
                             baseline=baseline is not None)


def mixture_e_value(x, n, theta0, low):
    """The e-value of one batch by scipy's binomial pmfs: the average likelihood ratio over the grid of odds ratios."""
    total = 0.0
    for k in range(10):
        psi = low * 1.5 ** k
        theta = psi * theta0 / (1 - theta0 + psi * theta0)
        total += stats.binom.pmf(x, n, theta) / stats.binom.pmf(x, n, theta0)
    return total / 10


def test_twenty_percent_errors_fail_conclusively_at_the_first_look():
    rnd = random.Random(1)
    verdict, results = verdict_of(lambda c: traffic(c, rnd, 412, 0.2, 50), lambda c: traffic(c, rnd, 8000, 0.002, 50), final=False)
    assert verdict == 'fail'
    errors = results[0]
    assert errors['status'] == 'fail' and errors['p_value'] < 1e-6
    assert errors['reason'] == 'errors %.3g > 0.01 (n=412; baseline %.3g; e=%s >= %s)' % (
        errors['value'], errors['baseline_value'], '%.2g' % errors['e_value'], '%.3g' % errors['e_threshold'])
    # the budget: 0.02 over two metrics of weight 1; the absolute test gets 1 - BASELINE_SHARE of the error metric's half
    max_test = [t for t in errors['tests'] if t['test'] == 'max'][0]
    assert max_test['alpha'] == pytest.approx(0.01 * (1 - BASELINE_SHARE))
    assert max_test['e_threshold'] == pytest.approx(1 / (0.01 * (1 - BASELINE_SHARE) * ANYTIME_SHARE), rel=1e-5)
    assert max_test['crossed'] == 'e_value'
    assert (errors['effect'], errors['allowed_effect']) == (errors['value'], 0.01)


def test_the_absolute_e_value_is_the_mixture_likelihood_ratio_of_scipy():
    absolute = ({'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'min_samples': 10},)
    for bad in (2, 6):
        _verdict, results = verdict_of(lambda c, bad=bad: group_bucket(c, 60, bad, []), None, final=False, metrics=absolute)
        assert results[0]['e_value'] == pytest.approx(mixture_e_value(bad, 60, 0.01, 1.5), rel=1e-3)


def test_an_error_rate_above_max_must_be_conclusively_above_it():
    absolute = ({'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'min_samples': 10},)
    # 2 errors in 60 (3.3 %) over a 1 % limit could be chance: not during the bake, not at its end.
    canary = functools.partial(group_bucket, requests=60, errors=2, latencies=[])
    assert verdict_of(canary, None, final=False, metrics=absolute)[0] is None
    verdict, results = verdict_of(canary, None, final=True, metrics=absolute)
    assert verdict == 'pass'
    final_p = stats.binom.sf(1, 60, 0.01)
    assert results[0]['tests'][0]['final_p_value'] == pytest.approx(final_p, rel=1e-4)
    assert results[0]['reason'].startswith('errors 0.0333 within limits (n=60; e=')
    assert 'above max 0.01 but not conclusively (e=' in results[0]['reason']
    assert 'final p=%.3g > 0.015' % final_p in results[0]['reason']
    # 8 of 60 (13 %) is conclusive at the first look: the whole budget is the absolute test's (no baseline)
    verdict, results = verdict_of(lambda c: group_bucket(c, 60, 8, []), None, final=False, metrics=absolute)
    assert verdict == 'fail'
    assert results[0]['alpha'] == 0.02 and results[0]['e_threshold'] == pytest.approx(200)
    assert results[0]['reason'].startswith('errors 0.133 > 0.01 (n=60; e=')


def test_the_exact_test_at_the_end_catches_what_the_e_process_cannot_yet():
    relaxed = ({'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'min_samples': 10},)
    # 9 of 60 at a 5 % limit: e-value below 200, exact tail P(X >= 9 | 60, 0.05) = 0.0039 <= 0.02 x 0.75
    canary = functools.partial(group_bucket, requests=60, errors=9, latencies=[])
    verdict, results = verdict_of(canary, None, final=False, metrics=relaxed)
    assert verdict is None and results[0]['e_value'] < 200
    verdict, results = verdict_of(canary, None, final=True, metrics=relaxed)
    assert verdict == 'fail'
    test = results[0]['tests'][0]
    assert test['crossed'] == 'final_p_value'
    assert test['final_p_value'] == pytest.approx(stats.binom.sf(8, 60, 0.05), rel=1e-4)
    assert test['final_threshold'] == pytest.approx(0.02 * (1 - ANYTIME_SHARE))
    assert results[0]['reason'] == 'errors 0.15 > 0.05 (n=60; final p=%.3g <= 0.015)' % test['final_p_value']


def test_errors_against_a_baseline_without_errors_can_fail():
    # Kayenta's NaN case: 0 of 1000 baseline errors, 5 of 100 on the canary: all the errors are the canary's
    # while it has 1/11 of the traffic.
    only_ratio = ({'name': 'errors', 'kind': 'error_rate', 'max_ratio': 2, 'min_samples': 10},)
    verdict, results = verdict_of(lambda c: group_bucket(c, 100, 5, []), lambda c: group_bucket(c, 1000, 0, []), final=False,
                                  metrics=only_ratio)
    assert verdict == 'fail'
    errors = results[0]
    assert errors['e_value'] == pytest.approx(mixture_e_value(5, 5, 100 / 1100.0, 2.0), rel=1e-3)
    assert errors['threshold'] == 0.0
    assert errors['reason'].startswith('errors 0.05 > 0 allowed vs baseline (n=100; baseline 0; e=')


def test_a_canary_much_better_than_the_baseline_never_fails():
    rnd = random.Random(8)
    verdict, results = verdict_of(lambda c: traffic(c, rnd, 3000, 0.0, 25), lambda c: traffic(c, rnd, 30000, 0.03, 50), rate=0.5)
    assert verdict == 'pass'
    assert all(t['e_value'] <= 1 for r in results for t in r['tests'])


def test_significant_but_within_the_allowed_ratio_passes():
    # 1.5 % vs 1 % with lots of traffic: the canary is worse than the baseline beyond doubt, but within max_ratio 2.
    relaxed = ({'name': 'errors', 'kind': 'error_rate', 'max_ratio': 2},)
    verdict, results = verdict_of(lambda c: group_bucket(c, 40000, 600, []), lambda c: group_bucket(c, 400000, 4000, []), metrics=relaxed)
    assert verdict == 'pass', results
    errors = results[0]
    assert errors['tests'][0]['final_p_value'] < 1e-6
    assert errors['effect'] == 0.015 and errors['allowed_effect'] == 0.02 and errors['tests'][0]['crossed'] is None


def test_baseline_error_rate_regression_needs_evidence_and_effect():
    # 1.5 % vs 0.5 %: 3x the baseline with n=2000 vs 20000.
    relaxed = ({'name': 'errors', 'kind': 'error_rate', 'max_ratio': 2},)
    baseline = functools.partial(group_bucket, requests=20000, errors=100, latencies=[])
    verdict, results = verdict_of(lambda c: group_bucket(c, 2000, 30, []), baseline, metrics=relaxed)
    assert verdict == 'fail'
    assert results[0]['threshold'] == pytest.approx(0.01)
    assert results[0]['reason'].startswith('errors 0.015 > 0.01 allowed vs baseline (n=2000; baseline 0.005; ')
    # the exact test of the baseline comparison is Fisher's
    fisher = stats.fisher_exact([[30, 1970], [100, 19900]], alternative='greater')[1]
    assert results[0]['tests'][0]['final_p_value'] == pytest.approx(fisher, rel=1e-4)
    # Same ratio with tiny counts is not conclusive: pass.
    verdict, results = verdict_of(lambda c: group_bucket(c, 200, 3, []), baseline, metrics=relaxed)
    assert verdict == 'pass', results


def test_equal_canary_and_baseline_with_noise_never_raise_a_false_alarm():
    alarms = []
    for seed in range(100):
        rnd = random.Random(seed)
        verdict, results = verdict_of(lambda c, rnd=rnd: traffic(c, rnd, 600, 0.004, 50), lambda c, rnd=rnd: traffic(c, rnd, 6000, 0.004, 50))
        if verdict != 'pass':
            alarms.append((seed, [r['reason'] for r in results]))
    assert alarms == []


def test_the_same_noise_with_a_real_regression_is_caught_every_time():
    # The counterpart of the test above: the test is not simply blind.
    caught = 0
    for seed in range(100):
        rnd = random.Random(seed)
        verdict, _results = verdict_of(lambda c, rnd=rnd: traffic(c, rnd, 600, 0.04, 50), lambda c, rnd=rnd: traffic(c, rnd, 6000, 0.004, 50))
        caught += verdict == 'fail'
    assert caught == 100


def looks(catalog, rate, steps, baseline=True):
    """A Judge fed ``steps`` cumulated looks; each step is (canary bucket, baseline bucket) of the new requests."""
    judge = Judge(catalog, rate, baseline=baseline)
    cumulated = [None, None]
    out = []
    for number, step in enumerate(steps):
        for side, new in enumerate(step):
            cumulated[side] = new if cumulated[side] is None else _add(cumulated[side], new)
        final = number == len(steps) - 1
        out.append(judge.evaluate(response(cumulated[0], cumulated[1] if baseline else None), 15.0 * (number + 1), final))
    return out


def _add(a, b):
    out = {'doc_count': a['doc_count'] + b['doc_count']}
    for key in a:
        if key == 'doc_count':
            continue
        if 'buckets' in a[key]:
            pairs = zip(a[key]['buckets'], b[key]['buckets'], strict=True)
            out[key] = {'buckets': [dict(x, doc_count=x['doc_count'] + y['doc_count']) for x, y in pairs]}
        else:
            out[key] = {'doc_count': a[key]['doc_count'] + b[key]['doc_count']}
    return out


def test_three_times_the_baseline_latency_fails_at_the_first_look():
    catalog = load_catalog([{'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 1000, 'max_ratio': 2, 'min_samples': 20}])
    rnd = random.Random(2)
    steps = [(group_bucket(catalog, 75, 0, latencies(rnd, 75, 150)), group_bucket(catalog, 1425, 0, latencies(rnd, 1425, 50)))
             for _look in range(4)]
    outcomes = looks(catalog, 0.0005, steps)
    verdict, results = outcomes[0]
    assert verdict == 'fail'
    p95 = results[0]
    assert p95['value'] < 1000 and p95['value'] > 2 * p95['baseline_value']
    assert p95['threshold'] == pytest.approx(2 * p95['baseline_value'], rel=1e-5)
    assert p95['effect'] == pytest.approx(p95['value'] / p95['baseline_value'], rel=1e-5) and p95['allowed_effect'] == 2
    assert p95['reason'].startswith('p95 %.3g > %.3g ms (2x baseline) (n=75; baseline' % (p95['value'], 2 * p95['baseline_value']))


def test_latency_evidence_is_the_canarys_share_of_the_pooled_slow_requests():
    # 100 canary requests at 300 ms, 900 baseline ones at 100 ms: the pooled 95th percentile bin is the canary's,
    # so all the slow requests are the canary's while it has a tenth of the traffic: Fisher's exact test.
    catalog = load_catalog([{'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ratio': 2, 'min_samples': 20}])
    judge = Judge(catalog, 0.02)
    judge.evaluate(response(group_bucket(catalog, 100, 0, [300.0] * 100), group_bucket(catalog, 900, 0, [100.0] * 900)), 15, True)
    evidence = judge.tracks[0].evidence['baseline']
    tail, body = evidence.parts
    assert tail.strata == [(100, 100, 1000)]
    # the body ("slow" from the pooled median) holds every request here: no evidence from it
    assert body.strata == [(100, 1000, 1000)] and body.mixture.value < 1
    # the exact p-value: twice the smaller of the two (Bonferroni)
    assert evidence.final_p_value() == pytest.approx(2 * stats.hypergeom.sf(99, 1000, 100, 100), rel=1e-6, abs=0)
    # the e-value: the average of the two e-processes
    assert evidence.e_value == pytest.approx((tail.mixture.value + body.mixture.value) / 2, rel=1e-9)


def test_a_massive_latency_shift_shows_in_small_batches_through_the_body():
    # 12 canary and 12 baseline requests per batch, the canary 80 times slower: the pooled p95 holds one or two
    # requests, the pooled median twelve - all the canary's.
    catalog = load_catalog([{'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ratio': 3, 'min_samples': 10}])
    rnd = random.Random(6)
    steps = [(group_bucket(catalog, 12, 0, latencies(rnd, 12, 400)), group_bucket(catalog, 12, 0, latencies(rnd, 12, 5)))
             for _look in range(3)]
    outcomes = looks(catalog, 0.005, steps)
    assert outcomes[-1][0] == 'fail'
    assert outcomes[-1][1][0]['tests'][0]['crossed'] == 'e_value'


def test_slightly_slower_but_within_the_allowed_ratio_passes():
    rnd = random.Random(3)
    verdict, results = verdict_of(lambda c: traffic(c, rnd, 3000, 0.0, 60), lambda c: traffic(c, rnd, 9000, 0.0, 50))
    assert verdict == 'pass', results
    assert results[1]['effect'] < 1.5


def test_latency_past_max_ms_is_judged_on_the_share_of_slow_requests():
    latency = ({'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 500, 'min_samples': 20},)
    # 30 of 100 requests above 500 ms where a p95 allows 5: conclusive at once.
    slow = functools.partial(group_bucket, requests=100, errors=0, latencies=[100.0] * 70 + [800.0] * 30)
    verdict, results = verdict_of(slow, None, final=False, metrics=latency)
    assert verdict == 'fail'
    assert results[0]['effect'] == 0.3 and results[0]['allowed_effect'] == 0.05
    assert results[0]['reason'].startswith('p95 %.3g > 500 ms: 30 %% of requests above 500 ms, allowed 5 %% (n=100; e=' % results[0]['value'])
    assert 800 < results[0]['value'] < 800 * 1.19  # the percentile from the bins: within a bin of the exact one
    # 2 of 20 above (10 %): the p95 is past max_ms, but that is no evidence yet.
    verdict, results = verdict_of(lambda c: group_bucket(c, 20, 0, [100.0] * 18 + [800.0] * 2), None, metrics=latency)
    assert verdict == 'pass'
    reason = results[0]['reason']
    assert 'p95 %.3g within limits' % results[0]['value'] in reason
    assert '10 % of requests above 500 ms, allowed 5 %, not conclusively' in reason
    # exactly max_ms is not above it
    verdict, results = verdict_of(lambda c: group_bucket(c, 100, 0, [500.0] * 100), None, metrics=latency)
    assert verdict == 'pass' and results[0]['effect'] == 0.0


def test_too_few_samples_is_no_data_and_fails_closed_at_the_end():
    canary = functools.partial(group_bucket, requests=7, errors=0, latencies=[40.0] * 7)
    baseline = functools.partial(group_bucket, requests=5000, errors=5, latencies=[40.0] * 5000)
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
    verdict, results = verdict_of(lambda c: traffic(c, rnd, 500, 0.2, 50), lambda c: traffic(c, rnd, 5000, 0.0, 50), metrics=(noisy, P95))
    assert verdict == 'pass'
    assert results[0]['status'] == 'warn' and results[0]['reason'].endswith('[report only]')


def test_without_baseline_only_thresholds_apply():
    rnd = random.Random(5)
    verdict, results = verdict_of(lambda c: traffic(c, rnd, 500, 0.0, 100), None)
    assert verdict == 'pass'
    assert results[1]['baseline_value'] is None
    assert [t['test'] for t in results[1]['tests']] == ['max']


def test_the_budget_is_split_by_weight_and_report_only_metrics_spend_none():
    catalog = load_catalog([dict(ERRORS, weight=3), P95, {'name': 'p99', 'kind': 'latency', 'percentile': 99, 'max_ratio': 2, 'report_only': True},
                            {'name': 'rps', 'kind': 'throughput', 'min': 1}])
    budgets = split_budget(catalog, 0.0005, baseline=True)
    assert budgets['errors'] == {'baseline': pytest.approx(0.000375 * BASELINE_SHARE), 'max': pytest.approx(0.000375 * (1 - BASELINE_SHARE))}
    assert sum(budgets['p95'].values()) == pytest.approx(0.000125)
    assert budgets['p99'] == {'baseline': pytest.approx(0.0005 / 5)}  # what it would get if it counted
    assert budgets['rps'] == {}
    spent = sum(sum(budgets[m.name].values()) for m in catalog if not m.report_only)
    assert spent == pytest.approx(0.0005)
    assert split_budget(catalog, 0.0005, baseline=False)['errors'] == {'max': pytest.approx(0.000375)}


@pytest.mark.parametrize('rate', [0, 0.6, -0.1, True, 'x'])
def test_false_fail_rate_is_checked(rate):
    with pytest.raises(CanaryError) as info:
        Judge(load_catalog([ERRORS]), rate)
    assert info.value.message == 'Invalid false_fail_rate %r: must be in (0, 0.5], e.g. 0.005 (the first host of a rollout whose budget is 0.01)' % (rate,)


@pytest.mark.parametrize('rate, position, budget', [
    (0.01, 1, 0.005),  # the canary: half the rollout's budget
    (0.01, 2, 0.01 / 6),
    (0.01, 3, 0.01 / 12),
    (0.01, 10, 0.01 / 110),
    (0.01, 20, 0.01 / 420),
    (0.01, 1000, 0.01 / 1001000),
    (1, 1, 0.5),  # the largest rollout budget gives the first host the largest gate budget
    (0.2, 4, 0.01),
    (0.05, 5, 0.05 / 30),
])
def test_the_rollout_budget_of_each_position(rate, position, budget):
    assert rollout_budget(rate, position) == pytest.approx(budget, rel=1e-12)


@pytest.mark.parametrize('rate', [0.01, 0.2, 1])
@pytest.mark.parametrize('hosts', [1, 2, 5, 20, 100, 10000])
def test_a_rollout_of_any_size_spends_at_most_its_budget(rate, hosts):
    spent = math.fsum(rollout_budget(rate, k) for k in range(1, hosts + 1))
    assert spent == pytest.approx(rate * hosts / (hosts + 1), rel=1e-9)
    assert spent < rate
    # and every budget is one the gate takes
    assert Judge(load_catalog([ERRORS]), rollout_budget(rate, 1)).false_fail_rate == rate / 2


def test_earlier_hosts_get_more_of_the_rollout_budget():
    budgets = [rollout_budget(0.01, k) for k in range(1, 201)]
    assert all(earlier > later for earlier, later in zip(budgets, budgets[1:], strict=False))
    assert budgets[0] == 0.005 and budgets[0] / sum(budgets) > 0.5


@pytest.mark.parametrize('rate, position, message', [
    (0, 1, "Invalid rollout.false_abort_rate 0: must be in (0, 1]"),
    (-0.01, 1, "Invalid rollout.false_abort_rate -0.01: must be in (0, 1]"),
    (1.5, 1, "Invalid rollout.false_abort_rate 1.5: must be in (0, 1]"),
    (True, 1, "Invalid rollout.false_abort_rate True: must be in (0, 1]"),
    ('0.01', 1, "Invalid rollout.false_abort_rate '0.01': must be in (0, 1]"),
    (float('nan'), 1, "Invalid rollout.false_abort_rate nan: must be in (0, 1]"),
    (0.01, 0, "Invalid rollout.position 0: must be a whole number >= 1"),
    (0.01, -3, "Invalid rollout.position -3: must be a whole number >= 1"),
    (0.01, 1.5, "Invalid rollout.position 1.5: must be a whole number >= 1"),
    (0.01, True, "Invalid rollout.position True: must be a whole number >= 1"),
    (0.01, None, "Invalid rollout.position None: must be a whole number >= 1"),
])
def test_a_bad_rollout_budget_or_position_is_refused(rate, position, message):
    with pytest.raises(CanaryError) as info:
        rollout_budget(rate, position)
    assert info.value.message.startswith(message + ', ')


def test_counts_that_go_down_are_not_evidence():
    catalog = load_catalog([{'name': 'errors', 'kind': 'error_rate', 'max_ratio': 2, 'min_samples': 10}])
    judge = Judge(catalog, 0.02)
    judge.evaluate(response(group_bucket(catalog, 100, 1, []), group_bucket(catalog, 1000, 10, [])), 10, False)
    before = judge.tracks[0].evidence['baseline'].log_value
    # an answer with fewer documents than the last one (a lagging replica): ignored
    judge.evaluate(response(group_bucket(catalog, 90, 3, []), group_bucket(catalog, 1100, 10, [])), 20, False)
    assert judge.tracks[0].evidence['baseline'].log_value == before
    judge.evaluate(response(group_bucket(catalog, 200, 3, []), group_bucket(catalog, 2000, 20, [])), 30, False)
    assert judge.tracks[0].evidence['baseline'].strata == [(100, 11, 1100), (100, 12, 1100)]


def test_latency_bins_must_match_the_query():
    catalog = load_catalog([P95])
    bad = {'doc_count': 3, 'm0': {'buckets': [{'doc_count': 3}]}}
    with pytest.raises(CanaryError, match=r'Failed to read the latency bins of metric p95: expected 71 range buckets, got 1'):
        evaluate_response(catalog, response(bad, None), 1.0, 0.02, True, 'fail', baseline=False)


def test_custom_and_count_metrics():
    catalog = [{'name': 'slow', 'kind': 'custom', 'aggs': {'s': {'filter': {'match_all': {}}}}, 'value': 's.doc_count', 'max': 5},
               {'name': 'hits', 'kind': 'count', 'min': 100},
               {'name': 'rps', 'kind': 'throughput', 'min': 1}]
    canary = {'doc_count': 90, 'm0': {'doc_count': 90, 's': {'doc_count': 9}}}
    resp = {'aggregations': {'groups': {'buckets': {'canary': canary}}}}
    verdict, results = evaluate_response(load_catalog(catalog), resp, 300.0, 0.02, False, 'fail')
    assert verdict == 'fail'  # custom above max is conclusive
    assert [(r['name'], r['status']) for r in results] == [('slow', 'fail'), ('hits', 'fail'), ('rps', 'fail')]
    assert results[2]['value'] == pytest.approx(0.3)
    assert all(r['tests'] == [] and r['alpha'] is None for r in results)
    verdict, _results = evaluate_response(load_catalog(catalog[1:]), resp, 300.0, 0.02, False, 'fail')
    assert verdict is None  # minimums wait for the end of the bake


def test_custom_value_must_be_a_number():
    catalog = load_catalog([{'name': 'odd', 'kind': 'custom', 'value': 'doc_count_text', 'max': 1}])
    resp = {'aggregations': {'groups': {'buckets': {'canary': {'doc_count': 1, 'm0': {'doc_count': 1, 'doc_count_text': 'x'}}}}}}
    with pytest.raises(CanaryError, match='Failed to evaluate metric odd: JMESPath doc_count_text returned str, not a number'):
        evaluate_response(catalog, resp, 1.0, 0.02, True, 'fail')
