"""The gate's polling loop against the Elasticsearch double, over real sockets."""

from __future__ import annotations

import datetime
import random

import pytest

from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from ansible_collections.immune.canary.plugins.module_utils._gate import DEFAULT_FIELDS, Gate, failure_lines, load_catalog, selection_filter
from doubles.es_double import EsDouble, iis_log_docs

METRICS = [
    {'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'max_ratio': 2},
    {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 500, 'max_ratio': 1.5},
]


class FakeTime:
    """Monotonic clock and sleep that do not wait; ``on_sleep`` hooks run per sleep."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []
        self.on_sleep = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook(len(self.sleeps))


@pytest.fixture
def double():
    with EsDouble('es8') as running:
        # Two minutes of traffic up to the start of the test.
        running.now = datetime.datetime.now(datetime.timezone.utc)
        running.since = running.now - datetime.timedelta(seconds=120)
        yield running


def seed(double, canary_errors=0.002, canary_latency=50.0, canary_count=1500, seed_value=1):
    rnd = random.Random(seed_value)
    since, now = double.since, double.now
    docs = list(iis_log_docs(canary_count, 'web-01', 'app-3457', since, now, canary_errors, canary_latency, rnd))
    for host in ('web-02', 'web-03', 'web-04'):
        docs += iis_log_docs(3000, host, 'app-3456', since, now, 0.002, 50.0, rnd)
    # Traffic outside the window and of other apps must not count.
    docs += iis_log_docs(2000, 'web-01', 'app-3457', since - datetime.timedelta(hours=1), since - datetime.timedelta(seconds=1), 0.5, 900, rnd)
    docs += iis_log_docs(2000, 'web-01', 'other-app', since, now, 0.5, 900, rnd)
    double.index_docs('iis-2026.05', docs)


def gate(double, fake, **overrides):
    args = dict(
        canary_filter=selection_filter({'host': 'web-01', 'application_name': 'app-3457'}, 'canary', DEFAULT_FIELDS),
        baseline_filter=selection_filter({'host': ['web-02', 'web-03', 'web-04'], 'application_name': 'app-3456'}, 'baseline', DEFAULT_FIELDS),
        since=double.since.isoformat(), bake_time=10, interval=2, clock=fake.clock, sleep=fake.sleep)
    args.update(overrides)
    client = EsClient(dict(es_hosts=[double.url], es_max_retries=1, es_request_timeout=5))
    metrics = args.pop('metrics', METRICS)
    return Gate(client, load_catalog(metrics), 'iis-*', **args)


def test_good_canary_passes_at_the_end_of_the_bake(double):
    seed(double)
    fake = FakeTime()
    outcome = gate(double, fake).run()
    assert outcome['verdict'] == 'pass', failure_lines(outcome['metrics'])
    assert outcome['evaluations'] == 6  # t = 0, 2, 4, 6, 8 and the final one at 10
    assert sum(fake.sleeps) == pytest.approx(10)
    errors, p95 = outcome['metrics']
    assert errors['samples'] == 1500 and errors['baseline_samples'] == 9000
    assert p95['status'] == 'pass' and p95['value'] < 100
    assert outcome['error'] is None
    assert outcome['query']['size'] == 0


def test_twenty_percent_errors_fail_before_the_bake_ends(double):
    seed(double, canary_errors=0.2)
    fake = FakeTime()
    outcome = gate(double, fake).run()
    assert outcome['verdict'] == 'fail'
    assert outcome['evaluations'] == 1 and fake.sleeps == []
    lines = failure_lines(outcome['metrics'])
    assert len(lines) == 1
    errors = outcome['metrics'][0]
    assert lines[0] == 'errors %.3g > 0.01 (n=1500; baseline %.3g; e=%.2g >= %.3g)' % (errors['value'], errors['baseline_value'],
                                                                                       errors['e_value'], errors['e_threshold'])


def test_without_fail_fast_the_bake_runs_to_its_end(double):
    seed(double, canary_errors=0.2)
    outcome = gate(double, FakeTime(), fail_fast=False).run()
    assert outcome['verdict'] == 'fail' and outcome['evaluations'] == 6


def test_latency_twice_the_baseline_fails_under_the_absolute_threshold(double):
    seed(double, canary_latency=100.0)
    outcome = gate(double, FakeTime()).run()
    assert outcome['verdict'] == 'fail'
    p95 = outcome['metrics'][1]
    assert p95['status'] == 'fail' and p95['value'] < 500 and p95['p_value'] < 0.02
    assert outcome['metrics'][0]['status'] == 'pass'


def test_no_data_fails_closed_with_its_reason(double):
    seed(double)
    outcome = gate(double, FakeTime(), canary_filter=selection_filter({'host': 'web-99'}, 'canary', DEFAULT_FIELDS)).run()
    assert outcome['verdict'] == 'fail'
    assert failure_lines(outcome['metrics']) == ['errors no data: too few samples: n=0 < min_samples 50',
                                                 'p95 no data: too few samples: n=0 < min_samples 50']
    assert outcome['evaluations'] == 6  # no data is not conclusive until the bake is over


def test_elasticsearch_down_mid_bake_fails_with_its_reason(double):
    seed(double)
    fake = FakeTime()
    fake.on_sleep.append(lambda n: setattr(double, 'down', n >= 2))
    outcome = gate(double, fake).run()
    assert outcome['verdict'] == 'fail'
    assert outcome['evaluations'] == 3
    assert outcome['error'].startswith('could not evaluate: Failed to search index iis-*: ConnectionError')


def test_elasticsearch_errors_are_tolerated_only_with_no_data_pass(double):
    seed(double)
    fake = FakeTime()
    fake.on_sleep.append(lambda n: setattr(double, 'fail_next', 100 if n == 2 else 0))
    outcome = gate(double, fake, no_data='pass').run()
    assert outcome['verdict'] == 'pass' and outcome['error'] is None and outcome['evaluations'] == 6
    fake = FakeTime()
    fake.on_sleep.append(lambda n: setattr(double, 'fail_next', 100))
    outcome = gate(double, fake, no_data='pass').run()
    assert outcome['verdict'] == 'pass'
    assert outcome['error'].startswith('could not evaluate: Failed to search index iis-*: HTTP 503')


def test_window_ends_ingest_lag_before_now(double):
    seed(double)
    outcome = gate(double, FakeTime(), bake_time=0, ingest_lag=60).run()
    window_to = datetime.datetime.fromisoformat(outcome['window']['to'].replace('Z', '+00:00'))
    assert datetime.datetime.now(datetime.timezone.utc) - window_to >= datetime.timedelta(seconds=60)
    # roughly half of the seeded two minutes is now outside the window
    assert 500 < outcome['metrics'][0]['samples'] < 1000


def test_each_evaluation_is_one_search_of_constant_size(double):
    seed(double)
    double.reset_counters()
    outcome = gate(double, FakeTime(), bake_time=4).run()
    searches = [p for p in double.paths if p.endswith('/_search')]
    assert len(searches) == outcome['evaluations'] == 3
    assert len(double.paths) == 4  # one GET / per client, then one _search per evaluation
    assert all(body['size'] == 0 for body in double.searches)
