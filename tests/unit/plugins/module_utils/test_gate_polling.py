"""The gate's polling loop against the Elasticsearch double, over real sockets."""

from __future__ import annotations

import datetime
import random

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _cloudwatch as cw
from ansible_collections.immune.canary.plugins.module_utils._aws import aws_client
from ansible_collections.immune.canary.plugins.module_utils._cloudwatch import AlarmWatch
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from ansible_collections.immune.canary.plugins.module_utils._gate import DEFAULT_FIELDS, Gate, failure_lines, load_catalog, selection_filter
from doubles.es_double import EsDouble, iis_log_docs
from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG

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


@pytest.fixture
def cloudwatch():
    with MotoALB(region='ap-south-1') as alb, MotoASG(alb) as fleet:
        fleet.alarm('web-5xx')
        fleet.alarm('web-latency')
        yield fleet, AlarmWatch(aws_client(alb.aws_params, 'cloudwatch'), ['web-5xx', 'web-latency'])


def test_an_alarm_that_fires_mid_bake_fails_the_gate_at_the_next_look(double, cloudwatch):
    fleet, watch = cloudwatch
    seed(double)
    fake = FakeTime()
    fake.on_sleep.append(lambda n: n == 2 and fleet.alarm('web-latency', 'ALARM', 'p99 above 2 s for 1 datapoint'))
    outcome = gate(double, fake, alarms=watch).run()
    assert outcome['verdict'] == 'fail'
    assert outcome['evaluations'] == 2 and len(fake.sleeps) == 2     # looks at t=0 and t=2; the alarm is seen at t=4
    assert outcome['error'] == 'CloudWatch alarm fired: 1 CloudWatch alarm(s) in ALARM: web-latency (p99 above 2 s for 1 datapoint)'
    assert [(a['name'], a['state']) for a in outcome['alarms']] == [('web-5xx', 'OK'), ('web-latency', 'ALARM')]
    assert all(m['status'] == 'pass' for m in outcome['metrics'])   # the metrics alone would have let it pass


def test_quiet_alarms_leave_the_verdict_to_the_metrics(double, cloudwatch):
    _fleet, watch = cloudwatch
    seed(double)
    outcome = gate(double, FakeTime(), alarms=watch).run()
    assert outcome['verdict'] == 'pass' and outcome['evaluations'] == 6
    assert [a['state'] for a in outcome['alarms']] == ['OK', 'OK']


def test_an_alarm_accepted_at_the_start_counts_again_once_its_state_changes(double, cloudwatch):
    fleet, watch = cloudwatch
    seed(double)
    fleet.alarm('web-5xx', 'ALARM', 'was firing before the deploy')
    (seen,) = cw.read_alarms(watch.client, ['web-5xx'])
    watch.accepted = cw.validate_preexisting([{'name': 'web-5xx', 'updated': seen['updated']}])
    outcome = gate(double, FakeTime(), alarms=watch).run()
    assert outcome['verdict'] == 'pass' and outcome['alarms'][0]['state'] == 'ALARM'
    # It recovers and fires again: a new ALARM, not the one accepted.
    fake = FakeTime()
    fake.on_sleep.append(lambda n: n == 1 and fleet.alarm('web-5xx', 'OK', 'recovered'))
    fake.on_sleep.append(lambda n: n == 2 and fleet.alarm('web-5xx', 'ALARM', 'firing again'))
    outcome = gate(double, fake, alarms=watch).run()
    assert outcome['verdict'] == 'fail' and outcome['error'].endswith('web-5xx (firing again)')


def test_an_unknown_alarm_fails_the_gate_naming_the_option(double):
    with MotoALB(region='ap-south-1') as alb:
        watch = AlarmWatch(aws_client(alb.aws_params, 'cloudwatch'), ['no-such-alarm'])
        seed(double)
        outcome = gate(double, FakeTime(), alarms=watch).run()
    assert outcome['verdict'] == 'fail'
    assert outcome['error'] == ('could not evaluate: Invalid value for option alarms: CloudWatch alarm(s) no-such-alarm '
                                'not found in this account and region')
