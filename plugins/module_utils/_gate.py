# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate: metric catalog, one aggregation query, verdicts, polling.

Each evaluation is ONE ``_search`` with ``size: 0``: a time range on
``time_field`` and a ``filters`` aggregation keyed ``canary``/``baseline``
under which every metric has its sub-aggregations. The response size
depends on the number of metrics and time buckets, never on traffic.
Selections become ``term``/``terms`` filters; no Lucene string is ever built.

A metric fails when it crosses its absolute threshold (with at least
``min_samples`` samples) or when it is worse than the baseline both
significantly (p < 1 - confidence) and by more than the allowed effect
(``max_ratio`` / ``max_delta``). During the bake only *conclusive* failures
stop the gate early (``fail_fast``); the last evaluation after ``bake_time``
decides everything else.
"""

from __future__ import annotations

import datetime
import math
import time

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._statistics import (
    binomial_greater,
    format_p,
    mann_whitney_greater,
    proportion_greater,
)

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:  # pragma: no cover - exercised by ansible-test import sanity
    HAS_JMESPATH = False

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False

KINDS = ('error_rate', 'latency', 'throughput', 'count', 'custom')
COMMON_KEYS = ('name', 'kind', 'min_samples', 'weight', 'report_only', 'description')
KIND_KEYS = {
    'error_rate': ('max', 'max_ratio', 'max_delta', 'bad_status_min', 'bad_query'),
    'latency': ('percentile', 'max_ms', 'max_ratio', 'field'),
    'throughput': ('min', 'max', 'query'),
    'count': ('min', 'max', 'query'),
    'custom': ('query', 'aggs', 'value', 'min', 'max'),
}
DEFAULT_MIN_SAMPLES = {'error_rate': 50, 'latency': 50, 'throughput': 0, 'count': 0, 'custom': 1}
DEFAULT_FIELDS = {'application_name': 'application_name', 'status': 'response', 'latency': 'time_taken', 'host': 'host.name'}
NO_DATA_POLICIES = ('fail', 'pass', 'warn')


# -- catalog -------------------------------------------------------------------

class Metric:
    """One validated metric of the catalog."""

    def __init__(self, spec, position):
        if not isinstance(spec, dict):
            raise CanaryError('Invalid metrics entry %d: expected a dict with name and kind, got %s' % (position, type(spec).__name__))
        name = spec.get('name')
        if not isinstance(name, str) or not name.strip():
            raise CanaryError('Invalid metrics entry %d: name is required (a non-empty string)' % position)
        self.name = name
        kind = spec.get('kind')
        if kind not in KINDS:
            raise CanaryError('Invalid kind %r for metric %s: valid kinds are %s' % (kind, name, ', '.join(KINDS)))
        self.kind = kind
        allowed = set(COMMON_KEYS) | set(KIND_KEYS[kind])
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise CanaryError('Invalid key %s for metric %s (kind %s): valid keys are %s'
                              % (', '.join(unknown), name, kind, ', '.join(sorted(allowed))))
        self.spec = spec
        self.min_samples = self._number('min_samples', DEFAULT_MIN_SAMPLES[kind], minimum=0, integer=True)
        self.weight = self._number('weight', 1.0, minimum=0)
        self.report_only = bool(spec.get('report_only', False)) or self.weight == 0
        self.max = self._number('max', None)
        self.min = self._number('min', None)
        self.max_ratio = self._number('max_ratio', None, minimum=0)
        self.max_delta = self._number('max_delta', None, minimum=0)
        self.max_ms = self._number('max_ms', None, minimum=0)
        self.percentile = None
        self.query = spec.get('query')
        self.field = spec.get('field')
        self.expression = None
        if kind == 'error_rate':
            if self.max is not None and not 0 <= self.max <= 1:
                raise CanaryError('Invalid max %r for metric %s: an error rate limit is a share between 0 and 1' % (self.max, name))
            status_min = self._number('bad_status_min', 500, minimum=0)
            self.bad_query = spec.get('bad_query')
            self._check_dsl('bad_query', self.bad_query)
            self.bad_status_min = status_min
            if self.max is None and self.max_ratio is None and self.max_delta is None:
                raise CanaryError('Invalid metric %s: error_rate needs max, max_ratio or max_delta' % name)
        elif kind == 'latency':
            self.percentile = self._number('percentile', 95)
            if not 0 < self.percentile <= 100:
                raise CanaryError('Invalid percentile %r for metric %s: must be in (0, 100]' % (self.percentile, name))
            if self.max_ms is None and self.max_ratio is None:
                raise CanaryError('Invalid metric %s: latency needs max_ms or max_ratio' % name)
        elif kind in ('throughput', 'count'):
            self._check_dsl('query', self.query)
            if self.min is None and self.max is None:
                raise CanaryError('Invalid metric %s: %s needs min or max' % (name, kind))
        elif kind == 'custom':
            self._check_dsl('query', self.query)
            aggs = spec.get('aggs')
            if aggs is not None and not isinstance(aggs, dict):
                raise CanaryError('Invalid aggs for metric %s: expected a dict of Elasticsearch aggregations' % name)
            self.aggs = aggs or {}
            expression = spec.get('value')
            if not isinstance(expression, str) or not expression.strip():
                raise CanaryError('Invalid metric %s: custom needs value, a JMESPath expression over its aggregation result' % name)
            if not HAS_JMESPATH:
                raise CanaryError('Invalid metric %s: the jmespath Python package is required for custom metrics' % name)
            try:
                self.expression = jmespath.compile(expression)
            except jmespath.exceptions.JMESPathError as exc:
                raise CanaryError('Invalid value %r for metric %s: not a valid JMESPath expression: %s'
                                  % (expression, name, str(exc).splitlines()[0])) from None
            if self.min is None and self.max is None:
                raise CanaryError('Invalid metric %s: custom needs min or max' % name)

    def _number(self, key, default, minimum=None, integer=False):
        value = self.spec.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise CanaryError('Invalid %s %r for metric %s: expected a number' % (key, self.spec.get(key), self.name)) from None
        if minimum is not None and value < minimum:
            raise CanaryError('Invalid %s %r for metric %s: must be >= %s' % (key, value, self.name, minimum))
        if integer:
            if value != int(value):
                raise CanaryError('Invalid %s %r for metric %s: expected a whole number' % (key, value, self.name))
            return int(value)
        return float(value)

    def _check_dsl(self, key, value):
        if value is not None and (not isinstance(value, dict) or len(value) != 1):
            raise CanaryError('Invalid %s for metric %s: expected an Elasticsearch query DSL dict with one top-level query, '
                              'e.g. {"term": {"field": "value"}}' % (key, self.name))


def load_catalog(metrics=None, metrics_file=None):
    """Metrics from the inline list or a YAML catalog file; validated."""
    if metrics_file:
        if not HAS_YAML:
            raise CanaryError('Failed to read metrics_file %s: PyYAML is not installed' % metrics_file)
        try:
            with open(metrics_file, encoding='utf-8') as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            raise CanaryError('Failed to read metrics_file %s: %s' % (metrics_file, exc.strerror or exc)) from None
        except yaml.YAMLError as exc:
            raise CanaryError('Failed to read metrics_file %s: invalid YAML: %s' % (metrics_file, str(exc).splitlines()[0])) from None
        if isinstance(data, dict):
            data = data.get('metrics')
        if not isinstance(data, list):
            raise CanaryError('Invalid metrics_file %s: expected a list of metrics (or a dict with a metrics list)' % metrics_file)
        metrics = data
    if not metrics:
        raise CanaryError('Invalid metrics: give at least one metric (metrics or metrics_file)')
    catalog = [Metric(spec, i + 1) for i, spec in enumerate(metrics)]
    names = [m.name for m in catalog]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CanaryError('Invalid metrics: duplicate metric name(s) %s' % ', '.join(duplicates))
    return catalog


# -- query -------------------------------------------------------------------------

def _scalar(value):
    return isinstance(value, (str, int, float, bool)) and value is not None


def selection_filter(selection, option, fields=None):
    """A field -> value(s) map as a bool filter of term/terms clauses.

    Keys naming a logical field of ``fields`` (application_name, status,
    latency, host) are translated to the real field name.
    """
    if not isinstance(selection, dict) or not selection:
        raise CanaryError('Invalid %s: expected a non-empty mapping of field to value(s)' % option)
    fields = fields or {}
    clauses = []
    for key in sorted(selection):
        value = selection[key]
        field = fields.get(key, key)
        if isinstance(value, (list, tuple)):
            if not value or not all(_scalar(v) for v in value):
                raise CanaryError('Invalid %s value for field %s: expected a value or a non-empty list of values' % (option, key))
            clauses.append({'terms': {field: list(value)}})
        elif _scalar(value):
            clauses.append({'term': {field: value}})
        else:
            raise CanaryError('Invalid %s value for field %s: expected a string, number or list of them, got %s'
                              % (option, key, type(value).__name__))
    return {'bool': {'filter': clauses}}


def _agg_key(index):
    return 'm%d' % index


def metric_aggregations(catalog, fields, time_field, bucket_interval):
    aggs = {}
    for i, metric in enumerate(catalog):
        key = _agg_key(i)
        if metric.kind == 'error_rate':
            bad = metric.bad_query or {'range': {fields['status']: {'gte': metric.bad_status_min}}}
            aggs[key] = {'filter': bad}
        elif metric.kind == 'latency':
            field = metric.field or fields['latency']
            pct = {'percentiles': {'field': field, 'percents': [metric.percentile]}}
            aggs[key] = pct
            aggs[key + '_n'] = {'value_count': {'field': field}}
            aggs[key + '_h'] = {'date_histogram': {'field': time_field, 'fixed_interval': bucket_interval, 'min_doc_count': 1},
                                'aggs': {'p': pct}}
        elif metric.kind in ('throughput', 'count'):
            if metric.query:
                aggs[key] = {'filter': metric.query}
        else:
            aggs[key] = {'filter': metric.query or {'match_all': {}}}
            if metric.aggs:
                aggs[key]['aggs'] = metric.aggs
    return aggs


def to_iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def parse_since(value):
    """ISO-8601 (``Z`` or offset; naive means UTC) -> aware datetime."""
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value).strip().replace('Z', '+00:00'))
        except ValueError:
            raise CanaryError('Invalid since %r: expected an ISO-8601 time such as 2026-05-01T12:00:00Z' % (value,)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def build_query(catalog, time_field, fields, canary_filter, baseline_filter, window_from, window_to, bucket_interval):
    """The one ``_search`` body of an evaluation."""
    groups = {'canary': canary_filter}
    if baseline_filter is not None:
        groups['baseline'] = baseline_filter
    time_range = {'range': {time_field: {'gte': to_iso(window_from), 'lte': to_iso(window_to), 'format': 'strict_date_optional_time'}}}
    return {
        'size': 0,
        'track_total_hits': False,
        'query': {'bool': {'filter': [time_range, {'bool': {'should': list(groups.values()), 'minimum_should_match': 1}}]}},
        'aggs': {'groups': {'filters': {'filters': groups}, 'aggs': metric_aggregations(catalog, fields, time_field, bucket_interval)}},
    }


# -- reading the response -------------------------------------------------------------

def _first_value(percentiles):
    values = (percentiles or {}).get('values') or {}
    if isinstance(values, list):
        return values[0].get('value') if values else None
    for value in values.values():
        return value
    return None


def observe(metric, index, bucket, window_seconds):
    """What one group (canary or baseline) shows for a metric.

    Returns dict(value, samples, bad, buckets)."""
    if bucket is None:
        return None
    key = _agg_key(index)
    total = bucket.get('doc_count', 0)
    if metric.kind == 'error_rate':
        bad = bucket[key]['doc_count']
        return dict(value=(bad / float(total)) if total else None, samples=total, bad=bad)
    if metric.kind == 'latency':
        samples = int(bucket[key + '_n'].get('value') or 0)
        per_bucket = [_first_value(b.get('p')) for b in bucket[key + '_h'].get('buckets', [])]
        value = _first_value(bucket[key]) if samples else None
        return dict(value=value, samples=samples, buckets=[v for v in per_bucket if v is not None])
    if metric.kind in ('throughput', 'count'):
        count = bucket[key]['doc_count'] if metric.query else total
        value = count if metric.kind == 'count' else count / max(window_seconds, 1e-3)
        return dict(value=value, samples=count)
    sub = bucket[key]
    try:
        value = metric.expression.search(sub)
    except Exception as exc:  # pylint: disable=broad-except
        raise CanaryError('Failed to evaluate metric %s: JMESPath %s failed: %s' % (metric.name, metric.spec['value'], exc)) from None
    if isinstance(value, bool) or (value is not None and not isinstance(value, (int, float))):
        raise CanaryError('Failed to evaluate metric %s: JMESPath %s returned %s, not a number'
                          % (metric.name, metric.spec['value'], type(value).__name__))
    return dict(value=value, samples=sub.get('doc_count', 0))


# -- verdicts ---------------------------------------------------------------------------

def _fmt(value):
    if value is None:
        return 'n/a'
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return '%d' % value
    return '%.3g' % value if abs(value) < 1000 else '%.0f' % value


def judge(metric, canary, baseline, alpha, final):
    """Status of one metric. Returns (result dict, conclusive failure?)."""
    result = dict(name=metric.name, kind=metric.kind, value=None, baseline_value=None, threshold=None, status='pass',
                  samples=0, baseline_samples=None, p_value=None, reason='')
    if canary is not None:
        result.update(value=_round(canary['value']), samples=canary['samples'])
    if baseline is not None:
        result.update(baseline_value=_round(baseline['value']), baseline_samples=baseline['samples'])
    n = result['samples']
    if canary is None or canary['value'] is None or n < metric.min_samples:
        result['status'] = 'no_data'
        result['reason'] = 'too few samples: n=%d < min_samples %d' % (n, metric.min_samples)
        if canary is not None and canary['value'] is None and n >= metric.min_samples:
            result['reason'] = 'no value (n=%d)' % n
        return result, False
    value = canary['value']
    base_ok = baseline is not None and baseline['value'] is not None and baseline['samples'] >= max(metric.min_samples, 1)
    failures = []  # (line, conclusive)
    notes = []
    p_value = None

    def context():
        parts = ['n=%d' % n]
        if base_ok:
            parts.append('baseline %s' % _fmt(baseline['value']) + (', %s' % format_p(p_value) if p_value is not None else ''))
        elif p_value is not None and failures:
            parts.append(format_p(p_value))
        return '(%s)' % '; '.join(parts)

    if metric.kind == 'error_rate':
        allowed = None
        if base_ok and (metric.max_ratio is not None or metric.max_delta is not None):
            candidates = []
            if metric.max_ratio is not None:
                candidates.append(baseline['value'] * metric.max_ratio)
            if metric.max_delta is not None:
                candidates.append(baseline['value'] + metric.max_delta)
            allowed = max(candidates)
            p_value, _method = proportion_greater(canary['bad'], n, baseline['bad'], baseline['samples'])
        if metric.max is not None:
            result['threshold'] = metric.max
            if value > metric.max:
                p_abs = binomial_greater(canary['bad'], n, metric.max)
                if p_value is None:
                    p_value = p_abs
                if p_abs < alpha:
                    failures.append(('%s %s > %s' % (metric.name, _fmt(value), _fmt(metric.max)), True))
                else:
                    notes.append('above max %s but not significantly (%s)' % (_fmt(metric.max), format_p(p_abs)))
        if allowed is not None and value > allowed and p_value is not None and p_value < alpha and not failures:
            result['threshold'] = _round(allowed)
            failures.append(('%s %s > %s allowed vs baseline' % (metric.name, _fmt(value), _fmt(allowed)), True))
        elif allowed is not None and result['threshold'] is None:
            result['threshold'] = _round(allowed)
    elif metric.kind == 'latency':
        if base_ok and metric.max_ratio is not None:
            _u, p_value, _method = mann_whitney_greater(canary.get('buckets') or [], baseline.get('buckets') or [])
        if metric.max_ms is not None:
            result['threshold'] = metric.max_ms
            if value > metric.max_ms:
                failures.append(('%s %s > %s ms' % (metric.name, _fmt(value), _fmt(metric.max_ms)), True))
        if base_ok and metric.max_ratio is not None and not failures:
            allowed = baseline['value'] * metric.max_ratio
            if value > allowed and p_value < alpha:
                result['threshold'] = _round(allowed)
                failures.append(('%s %s > %s ms (%sx baseline)' % (metric.name, _fmt(value), _fmt(allowed), _fmt(metric.max_ratio)), True))
            elif result['threshold'] is None:
                result['threshold'] = _round(allowed)
    else:
        # count/throughput: a count above max can only grow; everything else waits for the end of the bake
        growing = metric.kind == 'count'
        if metric.max is not None:
            result['threshold'] = metric.max
            if value > metric.max:
                failures.append(('%s %s > %s' % (metric.name, _fmt(value), _fmt(metric.max)), growing or metric.kind == 'custom'))
        if metric.min is not None and not failures:
            if result['threshold'] is None:
                result['threshold'] = metric.min
            if value < metric.min:
                result['threshold'] = metric.min
                failures.append(('%s %s < %s' % (metric.name, _fmt(value), _fmt(metric.min)), metric.kind == 'custom'))
    if baseline is not None and not base_ok and metric.kind in ('error_rate', 'latency'):
        notes.append('baseline has too few samples (n=%d); compared with thresholds only' % baseline['samples'])
    result['p_value'] = _round(p_value, 6)
    if failures:
        line, conclusive = failures[0]
        result['status'] = 'warn' if metric.report_only else 'fail'
        result['reason'] = '%s %s' % (line, context()) + (' [report only]' if metric.report_only else '')
        return result, conclusive and not metric.report_only
    result['reason'] = '; '.join(['%s %s within limits %s' % (metric.name, _fmt(value), context())] + notes)
    return result, False


def _round(value, digits=6):
    if value is None or not isinstance(value, float):
        return value
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def decide(results, conclusive, final, no_data):
    """Overall verdict: 'fail', 'pass', 'inconclusive', or None (keep polling)."""
    failing = [r for r in results if r['status'] == 'fail']
    missing = [r for r in results if r['status'] == 'no_data' and not r.get('_report_only')]
    if not final:
        return 'fail' if conclusive else None
    if failing:
        return 'fail'
    if missing:
        return {'fail': 'fail', 'warn': 'inconclusive', 'pass': 'pass'}[no_data]
    return 'pass'


def evaluate_response(catalog, response, window_seconds, confidence, final, no_data):
    """Verdict of one evaluation from one search response."""
    try:
        buckets = response['aggregations']['groups']['buckets']
    except (KeyError, TypeError):
        raise CanaryError('Failed to read the health gate aggregation: the response has no aggregations.groups.buckets') from None
    alpha = 1.0 - confidence
    results = []
    any_conclusive = False
    for i, metric in enumerate(catalog):
        canary = observe(metric, i, buckets.get('canary'), window_seconds)
        baseline = observe(metric, i, buckets.get('baseline'), window_seconds)
        result, conclusive = judge(metric, canary, baseline, alpha, final)
        if metric.report_only and result['status'] == 'no_data':
            result['_report_only'] = True
        any_conclusive = any_conclusive or conclusive
        results.append(result)
    verdict = decide(results, any_conclusive, final, no_data)
    for result in results:
        result.pop('_report_only', None)
    return verdict, results


def failure_lines(results):
    lines = [r['reason'] for r in results if r['status'] == 'fail']
    lines += ['%s no data: %s' % (r['name'], r['reason']) for r in results if r['status'] == 'no_data']
    return lines


class Gate:
    """Polls one evaluation per interval until the verdict is known."""

    def __init__(self, client, catalog, index, canary_filter, baseline_filter=None, time_field='@timestamp', fields=None,
                 since=None, ingest_lag=0.0, bake_time=300.0, interval=30.0, fail_fast=True, no_data='fail',
                 confidence=0.98, bucket_interval='10s', clock=time.monotonic, sleep=time.sleep, now=None):
        if not 0.5 <= confidence < 1:
            raise CanaryError('Invalid confidence %r: must be in [0.5, 1), e.g. 0.98' % (confidence,))
        if no_data not in NO_DATA_POLICIES:
            raise CanaryError('Invalid no_data %r: valid values are %s' % (no_data, ', '.join(NO_DATA_POLICIES)))
        if bake_time < 0 or interval <= 0 or ingest_lag < 0:
            raise CanaryError('Invalid timing: bake_time >= 0, interval > 0 and ingest_lag >= 0 are required '
                              '(got bake_time=%r, interval=%r, ingest_lag=%r)' % (bake_time, interval, ingest_lag))
        self.client = client
        self.catalog = catalog
        self.index = index
        self.canary_filter = canary_filter
        self.baseline_filter = baseline_filter
        self.time_field = time_field
        self.fields = dict(DEFAULT_FIELDS, **(fields or {}))
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.since = parse_since(since) if since else self._now()
        self.ingest_lag = float(ingest_lag)
        self.bake_time = float(bake_time)
        self.interval = float(interval)
        self.fail_fast = fail_fast
        self.no_data = no_data
        self.confidence = confidence
        self.bucket_interval = bucket_interval
        self._clock = clock
        self._sleep = sleep
        self.evaluations = 0
        self.last_query = None
        self.window = None
        self.errors = []

    def evaluate(self, final):
        to = self._now() - datetime.timedelta(seconds=self.ingest_lag)
        frm = self.since
        self.window = dict(to=to_iso(to), **{'from': to_iso(frm)})
        body = build_query(self.catalog, self.time_field, self.fields, self.canary_filter, self.baseline_filter, frm,
                           max(to, frm), self.bucket_interval)
        self.last_query = body
        self.evaluations += 1
        response = self.client.search(self.index, body)
        seconds = max((to - frm).total_seconds(), 0.0)
        return evaluate_response(self.catalog, response, seconds, self.confidence, final, self.no_data)

    def run(self):
        """Returns dict(verdict, metrics, evaluations, window, query, error)."""
        start = self._clock()
        verdict, results, error = None, [], None
        while True:
            final = self._clock() - start >= self.bake_time
            try:
                verdict, results = self.evaluate(final)
            except CanaryError as exc:
                error = exc.message
                self.errors.append(error)
                if self.no_data != 'pass':
                    return self._result('fail', results, 'could not evaluate: %s' % error)
                verdict = 'pass' if final else None
            else:
                error = None
            if verdict == 'fail' and (final or self.fail_fast):
                break
            if final:
                break
            remaining = self.bake_time - (self._clock() - start)
            self._sleep(max(0.0, min(self.interval, remaining)))
        if verdict is None:
            verdict = 'pass'
        reason = None
        if error is not None:
            reason = 'could not evaluate: %s (no_data: pass)' % error
        return self._result(verdict, results, reason)

    def _result(self, verdict, results, error):
        return dict(verdict=verdict, metrics=results, evaluations=self.evaluations, window=self.window,
                    query=self.last_query, error=error)
