# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate: metric catalog, one aggregation query, verdicts, polling.

Each evaluation is ONE ``_search`` with ``size: 0``: a time range on
``time_field`` and a ``filters`` aggregation keyed ``canary``/``baseline``
under which every metric has its sub-aggregations (a ``filter`` count of bad
requests for an error rate; a ``range`` aggregation over fixed, log-spaced
latency bins for a latency). The response size depends on the number of
metrics, never on traffic or time. Selections become ``term``/``terms``
filters; no Lucene string is ever built.

How a metric decides (README "How a rollout decides" says it for users):

* The gate has a budget ``false_fail_rate``: the most it may fail a canary
  that is as good as the baseline and within the absolute limits, however
  often it looks. Metrics that can fail share it by ``weight``; a metric with
  an absolute limit and a baseline comparison gives the comparison
  ``BASELINE_SHARE`` of its share; each test spends ``ANYTIME_SHARE`` of its
  budget on an e-process checked at every look and the rest on one exact
  fixed-horizon test at the last evaluation (union bound: the shares add up).
  A rollout's budget reaches its hosts' gates through ``rollout_budget``:
  the k-th host gets ``1 / (k (k + 1))`` of it, half for the first.
* Absolute limits: the canary's share of bad requests (error rate) or of
  requests above ``max_ms`` (latency; a p95 allows 5 %) against the limit,
  binomial counts.
* Against the baseline: the null is "as good as the baseline" (the same
  error rate; the same latency distribution). A batch is the requests new
  since the last evaluation; given the bad (or slow: at or above both
  groups' percentile in the batch) requests of both groups, the canary's
  count of them is hypergeometric under the null (Fisher's exact test), less
  spread than the binomial with probability n_c / (n_c + n_b) whose
  likelihood ratio the e-process mixes over odds ratios at and above
  ``max_ratio``. A zero-error baseline therefore lets an erroring canary
  fail; a rate that drifts in both groups alike cancels out.
* A test fails only when its evidence crosses its threshold AND the observed
  effect exceeds the allowed one (``max``, ``max_ratio`` / ``max_delta``):
  significance alone never fails a canary that is within its limits, and a
  canary better than the baseline never fails.

During the bake only conclusive failures stop the gate early (``fail_fast``);
the last evaluation after ``bake_time`` decides everything else.
"""

from __future__ import annotations

import datetime
import math
import time

from ansible_collections.immune.canary.plugins.module_utils._cloudwatch import firing_message
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._statistics import (
    OddsMixture,
    binned_percentile,
    binomial_greater,
    format_number,
    log_likelihood_ratio,
    log_spaced_edges,
    odds_grid,
    stratified_tail,
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

# The budget of one test: this share for the e-process watched at every look,
# the rest for the exact test at the last evaluation, which happens once.
ANYTIME_SHARE = 0.25
# The budget of a metric with an absolute limit and a baseline comparison: this
# share for the comparison (it is the one that sees regressions below the limit).
BASELINE_SHARE = 0.8
# Latency bins: 1 ms to 131 s, four per doubling (edges 19 % apart), plus max_ms.
LATENCY_EDGES = log_spaced_edges(1.0, 131072.0, 4)
# Lowest odds ratio of the mixtures: the alternatives start here (or at max_ratio).
MIN_ODDS = 1.5


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
            self.edges = list(LATENCY_EDGES)
            self.limit_edge = None
            if self.max_ms is not None:
                # The bin edge just above max_ms: a p95 within max_ms allows 5 % of requests above it.
                self.limit_edge = math.nextafter(self.max_ms, math.inf)
                self.edges = sorted(set(self.edges) | {self.limit_edge})
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

    @property
    def limit_test(self):
        """Whether the metric has an absolute limit judged with statistics."""
        return (self.kind == 'error_rate' and self.max is not None) or (self.kind == 'latency' and self.max_ms is not None)

    @property
    def baseline_test(self):
        """Whether the metric compares the canary with the baseline (when there is one)."""
        if self.kind == 'error_rate':
            return self.max_ratio is not None or self.max_delta is not None
        return self.kind == 'latency' and self.max_ratio is not None

    @property
    def null_share(self):
        """The latency share allowed above the percentile: 5 % for a p95."""
        return 1.0 - self.percentile / 100.0

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


def latency_ranges(edges):
    """The ``ranges`` of a range aggregation over bins cut at ``edges`` (from inclusive, to exclusive)."""
    ranges = [{'to': edges[0]}]
    ranges += [{'from': low, 'to': high} for low, high in zip(edges, edges[1:], strict=False)]
    ranges.append({'from': edges[-1]})
    return ranges


def metric_aggregations(catalog, fields):
    aggs = {}
    for i, metric in enumerate(catalog):
        key = _agg_key(i)
        if metric.kind == 'error_rate':
            bad = metric.bad_query or {'range': {fields['status']: {'gte': metric.bad_status_min}}}
            aggs[key] = {'filter': bad}
        elif metric.kind == 'latency':
            aggs[key] = {'range': {'field': metric.field or fields['latency'], 'ranges': latency_ranges(metric.edges)}}
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


def build_query(catalog, time_field, fields, canary_filter, baseline_filter, window_from, window_to):
    """The one ``_search`` body of an evaluation."""
    groups = {'canary': canary_filter}
    if baseline_filter is not None:
        groups['baseline'] = baseline_filter
    time_range = {'range': {time_field: {'gte': to_iso(window_from), 'lte': to_iso(window_to), 'format': 'strict_date_optional_time'}}}
    return {
        'size': 0,
        'track_total_hits': False,
        'query': {'bool': {'filter': [time_range, {'bool': {'should': list(groups.values()), 'minimum_should_match': 1}}]}},
        'aggs': {'groups': {'filters': {'filters': groups}, 'aggs': metric_aggregations(catalog, fields)}},
    }


# -- reading the response -------------------------------------------------------------

def _bins(metric, aggregation):
    buckets = (aggregation or {}).get('buckets')
    if isinstance(buckets, dict):  # keyed: true
        buckets = list(buckets.values())
    if not isinstance(buckets, list) or len(buckets) != len(metric.edges) + 1:
        raise CanaryError('Failed to read the latency bins of metric %s: expected %d range buckets, got %s'
                          % (metric.name, len(metric.edges) + 1, len(buckets) if isinstance(buckets, list) else 'none'))
    return [int(b.get('doc_count') or 0) for b in buckets]


def observe(metric, index, bucket, window_seconds):
    """What one group (canary or baseline) shows for a metric, cumulated over the window.

    Returns dict(value, samples, ...): ``bad`` (error rate), ``bins`` (latency), or None without the group."""
    if bucket is None:
        return None
    key = _agg_key(index)
    total = bucket.get('doc_count', 0)
    if metric.kind == 'error_rate':
        bad = bucket[key]['doc_count']
        return dict(value=(bad / float(total)) if total else None, samples=total, bad=bad)
    if metric.kind == 'latency':
        bins = _bins(metric, bucket.get(key))
        samples = sum(bins)
        value = binned_percentile(metric.edges, bins, metric.percentile) if samples else None
        return dict(value=value, samples=samples, bins=bins)
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


# -- budget ------------------------------------------------------------------------------

def rollout_budget(false_abort_rate, position):
    """The budget of the gate of a rollout's ``position``-th host: ``false_abort_rate / (position * (position + 1))``.

    1 / (k (k + 1)) = 1 / k - 1 / (k + 1), so the gates of the first N hosts
    spend ``false_abort_rate * N / (N + 1)`` together: below the rollout's
    budget whatever the fleet size, with no need to know it. The first host,
    the canary that catches a bad release, gets half; the second a sixth; the
    twentieth 1/420.
    """
    if isinstance(false_abort_rate, bool) or not isinstance(false_abort_rate, (int, float)) or not 0 < false_abort_rate <= 1:
        raise CanaryError('Invalid rollout.false_abort_rate %r: must be in (0, 1], the share of rollouts that may stop a release as '
                          'good as the running one, e.g. 0.01' % (false_abort_rate,))
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise CanaryError('Invalid rollout.position %r: must be a whole number >= 1, the host\'s place in the rollout '
                          '(1 for the first host to take the new version)' % (position,))
    return float(false_abort_rate) / (position * (position + 1))


def split_budget(catalog, false_fail_rate, baseline):
    """Each metric's budget: {name: {'max': alpha, 'baseline': alpha}} for its statistical tests.

    Metrics that can fail share ``false_fail_rate`` by weight; a report-only
    metric is given what it would get if it counted (it never fails, so it
    spends nothing). Throughput, count and custom metrics are plain thresholds
    and take no share.
    """
    def tests(metric):
        found = []
        if metric.baseline_test and baseline:
            found.append('baseline')
        if metric.limit_test:
            found.append('max')
        return found

    counted = [m for m in catalog if tests(m) and not m.report_only]
    total = sum(m.weight for m in counted)
    budgets = {}
    for metric in catalog:
        names = tests(metric)
        if not names:
            budgets[metric.name] = {}
            continue
        if metric.report_only:
            weight = metric.weight or 1.0
            share = false_fail_rate * weight / (total + weight)
        else:
            share = false_fail_rate * metric.weight / total
        if len(names) == 2:
            budgets[metric.name] = {'baseline': share * BASELINE_SHARE, 'max': share * (1 - BASELINE_SHARE)}
        else:
            budgets[metric.name] = {names[0]: share}
    return budgets


# -- evidence -------------------------------------------------------------------------------

class _Part:
    """One e-process of a baseline test and the strata of its exact test."""

    def __init__(self, odds):
        self.mixture = OddsMixture(odds)
        self.strata = []  # (canary requests, bad or slow requests of both groups, requests of both groups)
        self.count = 0  # the canary's bad or slow requests


class Evidence:
    """One statistical test of a metric over the bake: an e-process for every look, an exact test at the last.

    ``kind`` is ``max`` (the canary's share of bad or slow requests against a
    fixed share, cumulated counts) or ``baseline`` (the canary's share of the
    bad or slow requests of both groups, batch by batch, against its share of
    the traffic). A latency comparison has ``parts=2``: "slow" at the pooled
    percentile (the tail) and at the pooled median (the body: small batches
    hold too few tail requests to tell anything); its e-value is their
    average (still an e-process) and its exact p-value twice the smaller
    one (Bonferroni). ``alpha`` is the test's budget.
    """

    def __init__(self, kind, alpha, low_odds, parts=1):
        self.kind = kind
        self.alpha = alpha
        self.e_threshold = 1.0 / (alpha * ANYTIME_SHARE)
        self.p_threshold = alpha * (1 - ANYTIME_SHARE)
        self.odds = odds_grid(max(low_odds, MIN_ODDS))
        self.parts = [_Part(self.odds) for _part in range(parts)]
        # the max test keeps its cumulated counts; its mixture is recomputed from them
        self.count = self.trials = 0
        self.null_share = None
        self.log_peak = 0.0

    @property
    def strata(self):
        return self.parts[0].strata

    # -- max: cumulative binomial counts against a fixed share ------------------
    def cumulative(self, bad, total, null_share):
        """The counts so far; the product of the batches' ratios is the ratio of the cumulated counts."""
        self.count, self.trials, self.null_share = bad, total, null_share
        self.parts[0].mixture.log_lr = [log_likelihood_ratio(psi, bad, total, null_share) for psi in self.odds]
        self.log_peak = max(self.log_peak, self.log_value)

    # -- baseline: batches -------------------------------------------------------
    def batch(self, canary_total, baseline_total, *bad):
        """One batch: the group sizes, then (canary bad, baseline bad) per part."""
        if canary_total + baseline_total <= 0:
            return
        share = canary_total / float(canary_total + baseline_total)
        for part, (canary_bad, baseline_bad) in zip(self.parts, bad, strict=True):
            part.mixture.update(canary_bad, canary_bad + baseline_bad, share)
            part.strata.append((canary_total, canary_bad + baseline_bad, canary_total + baseline_total))
            part.count += canary_bad
        self.log_peak = max(self.log_peak, self.log_value)

    @property
    def log_value(self):
        values = [part.mixture.log_value for part in self.parts]
        top = max(values)
        if top in (math.inf, -math.inf):
            return top
        return top + math.log(sum(math.exp(v - top) for v in values) / len(values))

    @property
    def e_value(self):
        return math.exp(min(self.log_value, 700.0))

    @property
    def p_value(self):
        """Always-valid p-value: 1 / the largest e-value so far."""
        return math.exp(-min(self.log_peak, 700.0))

    def final_p_value(self):
        if self.kind == 'max':
            if self.null_share is None:
                return 1.0
            return binomial_greater(self.count, self.trials, self.null_share)
        return min(1.0, len(self.parts) * min(stratified_tail(part.strata, part.count)[0] for part in self.parts))


class Track:
    """What the gate remembers of one metric between evaluations."""

    def __init__(self, metric, budget):
        self.metric = metric
        self.evidence = {}
        if 'max' in budget:
            self.evidence['max'] = Evidence('max', budget['max'], MIN_ODDS)
        if 'baseline' in budget:
            low = metric.max_ratio if metric.kind == 'error_rate' and metric.max_ratio else MIN_ODDS
            body = metric.kind == 'latency' and metric.null_share < 0.5
            self.evidence['baseline'] = Evidence('baseline', budget['baseline'], low, parts=2 if body else 1)
        self.previous = None  # (canary, baseline) cumulated counts of the last evaluation

    def update(self, canary, baseline):
        """Feed one evaluation's cumulated observations; the new requests since the last one are a batch."""
        if not self.evidence or canary is None:
            return
        metric = self.metric
        if metric.kind == 'error_rate':
            if 'max' in self.evidence:
                self.evidence['max'].cumulative(canary['bad'], canary['samples'], metric.max)
            counts = (canary['bad'], canary['samples'], baseline['bad'] if baseline else 0, baseline['samples'] if baseline else 0)
            delta = self._delta(counts)
            if delta is not None and 'baseline' in self.evidence:
                self.evidence['baseline'].batch(delta[1], delta[3], (delta[0], delta[2]))
            return
        bins_c = canary['bins']
        if 'max' in self.evidence:
            above = metric.edges.index(metric.limit_edge) + 1
            self.evidence['max'].cumulative(sum(bins_c[above:]), canary['samples'], metric.null_share)
        bins_b = baseline['bins'] if baseline else [0] * len(bins_c)
        delta = self._delta(tuple(bins_c) + tuple(bins_b))
        if delta is None or 'baseline' not in self.evidence:
            return
        new_c, new_b = delta[:len(bins_c)], delta[len(bins_c):]
        # "Slow" in this batch: at or above the bin edge where the pooled requests' percentile is. The pooled
        # counts are the same whichever group each request came from, so under the null the canary's slow
        # requests are a hypergeometric draw of the pooled slow ones.
        pooled = [c + b for c, b in zip(new_c, new_b, strict=True)]
        evidence = self.evidence['baseline']
        shares = [metric.null_share, 0.5][:len(evidence.parts)]
        slow = [_slow_from(pooled, share) for share in shares]
        evidence.batch(sum(new_c), sum(new_b), *[(sum(new_c[i:]), sum(new_b[i:])) for i in slow])

    def _delta(self, counts):
        """The counts new since the last evaluation, or None when they went down (an inconsistent answer:
        wait until they are above the last ones again)."""
        previous = self.previous or (0,) * len(counts)
        delta = [now - before for now, before in zip(counts, previous, strict=True)]
        if any(d < 0 for d in delta):
            return None
        self.previous = counts
        return delta


def _slow_from(bins, null_share):
    """The first bin of "slow": the highest edge with at least ``null_share`` of the values (and one) at or above it."""
    need = max(null_share * sum(bins), 1)
    above = 0
    for i in range(len(bins) - 1, 0, -1):
        above += bins[i]
        if above >= need:
            return i
    return len(bins) - 1


# -- verdicts ---------------------------------------------------------------------------

def _fmt(value):
    if value is None:
        return 'n/a'
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return '%d' % value
    return '%.3g' % value if abs(value) < 1000 else '%.0f' % value


def _round(value, digits=6):
    """A float for results: ``digits`` significant digits, infinity as 1e300, NaN as None."""
    if value is None or not isinstance(value, float):
        return value
    if math.isnan(value):
        return None
    if math.isinf(value):
        return 1e300 if value > 0 else -1e300
    return float('%.*g' % (digits, value))


def _test_result(evidence, observed, allowed, hypothesis, effect_ok, final, eligible):
    """One test's figures and whether it crossed its threshold (with the effect beyond the allowed one)."""
    final_p = evidence.final_p_value() if final else None
    crossed = None
    if eligible and effect_ok:
        if evidence.e_value >= evidence.e_threshold:
            crossed = 'e_value'
        elif final_p is not None and final_p <= evidence.p_threshold:
            crossed = 'final_p_value'
    return dict(test=evidence.kind, hypothesis=hypothesis, observed=_round(observed), allowed=_round(allowed),
                e_value=_round(evidence.e_value), e_threshold=_round(evidence.e_threshold), p_value=_round(evidence.p_value),
                final_p_value=_round(final_p), final_threshold=_round(evidence.p_threshold), alpha=_round(evidence.alpha), crossed=crossed)


def _evidence_text(test):
    if test['crossed'] == 'final_p_value':
        return 'final p=%s <= %s' % (format_number(test['final_p_value']), format_number(test['final_threshold']))
    if test['crossed'] == 'e_value':
        return 'e=%s >= %s' % (format_number(test['e_value']), format_number(test['e_threshold']))
    text = 'e=%s < %s' % (format_number(test['e_value']), format_number(test['e_threshold']))
    if test['final_p_value'] is not None:
        text += ', final p=%s > %s' % (format_number(test['final_p_value']), format_number(test['final_threshold']))
    return text


def judge(metric, track, canary, baseline, final):
    """Status of one metric from its track (updated with this evaluation). Returns (result dict, conclusive failure?)."""
    result = dict(name=metric.name, kind=metric.kind, value=None, baseline_value=None, threshold=None, status='pass',
                  samples=0, baseline_samples=None, p_value=None, reason='', effect=None, allowed_effect=None,
                  e_value=None, e_threshold=None, alpha=None, tests=[])
    if canary is not None:
        result.update(value=_round(canary['value']), samples=canary['samples'])
    if baseline is not None:
        result.update(baseline_value=_round(baseline['value']), baseline_samples=baseline['samples'])
    budget = sum(e.alpha for e in track.evidence.values())
    result['alpha'] = _round(budget) if track.evidence else None
    n = result['samples']
    if canary is None or canary['value'] is None or n < metric.min_samples:
        result['status'] = 'no_data'
        result['reason'] = 'too few samples: n=%d < min_samples %d' % (n, metric.min_samples)
        if canary is not None and canary['value'] is None and n >= metric.min_samples:
            result['reason'] = 'no value (n=%d)' % n
        return result, False
    value = canary['value']
    base_ok = baseline is not None and baseline['value'] is not None and baseline['samples'] >= max(metric.min_samples, 1)
    failures = []  # (line, conclusive, test)
    notes = []
    tests = []

    if metric.kind == 'error_rate':
        if 'baseline' in track.evidence:
            allowed = None
            if base_ok:
                candidates = []
                if metric.max_ratio is not None:
                    candidates.append(baseline['value'] * metric.max_ratio)
                if metric.max_delta is not None:
                    candidates.append(baseline['value'] + metric.max_delta)
                allowed = max(candidates)
            test = _test_result(track.evidence['baseline'], value, allowed, '%s <= baseline' % metric.name,
                                allowed is not None and value > allowed, final, base_ok)
            tests.append(test)
            if test['crossed']:
                failures.append(('%s %s > %s allowed vs baseline' % (metric.name, _fmt(value), _fmt(allowed)), True, test))
        if 'max' in track.evidence:
            test = _test_result(track.evidence['max'], value, metric.max, '%s <= %s' % (metric.name, _fmt(metric.max)),
                                value > metric.max, final, True)
            tests.append(test)
            if test['crossed']:
                failures.insert(0, ('%s %s > %s' % (metric.name, _fmt(value), _fmt(metric.max)), True, test))
            elif value > metric.max:
                notes.append('above max %s but not conclusively (%s)' % (_fmt(metric.max), _evidence_text(test)))
        if metric.max is not None:
            result['threshold'] = metric.max
        elif tests and tests[0]['allowed'] is not None:
            result['threshold'] = tests[0]['allowed']
        if failures and failures[0][2]['test'] == 'baseline':
            result['threshold'] = failures[0][2]['allowed']
    elif metric.kind == 'latency':
        if 'max' in track.evidence:
            above = metric.edges.index(metric.limit_edge) + 1
            share = sum(canary['bins'][above:]) / float(n)
            test = _test_result(track.evidence['max'], share, metric.null_share,
                                'share above %s ms <= %s' % (_fmt(metric.max_ms), _fmt(metric.null_share)),
                                share > metric.null_share, final, True)
            tests.append(test)
            result['threshold'] = metric.max_ms
            if test['crossed']:
                failures.append(('%s %s > %s ms: %s of requests above %s ms, allowed %s'
                                 % (metric.name, _fmt(value), _fmt(metric.max_ms), _percent(share), _fmt(metric.max_ms),
                                    _percent(metric.null_share)), True, test))
            elif share > metric.null_share:
                notes.append('%s of requests above %s ms, allowed %s, not conclusively (%s)'
                             % (_percent(share), _fmt(metric.max_ms), _percent(metric.null_share), _evidence_text(test)))
        if 'baseline' in track.evidence:
            ratio = allowed = None
            if base_ok and baseline['value']:
                ratio = value / baseline['value']
                allowed = baseline['value'] * metric.max_ratio
            test = _test_result(track.evidence['baseline'], ratio, metric.max_ratio, '%s no slower than baseline' % metric.name,
                                ratio is not None and ratio > metric.max_ratio, final, base_ok)
            tests.append(test)
            if result['threshold'] is None and allowed is not None:
                result['threshold'] = _round(allowed)
            if test['crossed']:
                if not failures:
                    result['threshold'] = _round(allowed)
                failures.append(('%s %s > %s ms (%sx baseline)' % (metric.name, _fmt(value), _fmt(allowed), _fmt(metric.max_ratio)),
                                 True, test))
    else:
        # count/throughput: a count above max can only grow; everything else waits for the end of the bake
        growing = metric.kind == 'count'
        if metric.max is not None:
            result['threshold'] = metric.max
            if value > metric.max:
                failures.append(('%s %s > %s' % (metric.name, _fmt(value), _fmt(metric.max)), growing or metric.kind == 'custom', None))
        if metric.min is not None and not failures:
            if result['threshold'] is None:
                result['threshold'] = metric.min
            if value < metric.min:
                result['threshold'] = metric.min
                failures.append(('%s %s < %s' % (metric.name, _fmt(value), _fmt(metric.min)), metric.kind == 'custom', None))
    if baseline is not None and not base_ok and metric.kind in ('error_rate', 'latency'):
        notes.append('baseline has too few samples (n=%d); compared with thresholds only' % baseline['samples'])
    result['tests'] = tests
    deciding = failures[0][2] if failures and failures[0][2] else (max(tests, key=lambda t: t['e_value']) if tests else None)
    if deciding is not None:
        result.update(effect=deciding['observed'], allowed_effect=deciding['allowed'], e_value=deciding['e_value'],
                      e_threshold=deciding['e_threshold'])
        ps = [t['p_value'] for t in tests] + [t['final_p_value'] for t in tests if t['final_p_value'] is not None]
        result['p_value'] = min(ps)

    def context(test):
        parts = ['n=%d' % n]
        if base_ok:
            parts.append('baseline %s' % _fmt(baseline['value']))
        if test is not None:
            parts.append(_evidence_text(test))
        return '(%s)' % '; '.join(parts)

    if failures:
        line, conclusive, test = failures[0]
        result['status'] = 'warn' if metric.report_only else 'fail'
        result['reason'] = '%s %s' % (line, context(test)) + (' [report only]' if metric.report_only else '')
        return result, conclusive and not metric.report_only
    result['reason'] = '; '.join(['%s %s within limits %s' % (metric.name, _fmt(value), context(deciding))] + notes)
    return result, False


def _percent(share):
    return '%.3g %%' % (share * 100)


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


def check_false_fail_rate(value, option='false_fail_rate'):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 0.5:
        raise CanaryError('Invalid %s %r: must be in (0, 0.5], e.g. 0.005 (the first host of a rollout whose budget is 0.01)' % (option, value))
    return float(value)


class Judge:
    """The gate's decision code: one evaluation response at a time, remembering the earlier ones.

    ``evaluate(response, window_seconds, final, no_data)`` returns
    ``(verdict, results)``; the module and ``bench/bench_gate_stats.py`` both
    call it with Elasticsearch's answers to :func:`build_query`.
    """

    def __init__(self, catalog, false_fail_rate, baseline=True):
        self.catalog = catalog
        self.false_fail_rate = check_false_fail_rate(false_fail_rate)
        self.budgets = split_budget(catalog, self.false_fail_rate, baseline)
        self.tracks = [Track(metric, self.budgets[metric.name]) for metric in catalog]
        self.looks = 0

    def evaluate(self, response, window_seconds, final, no_data='fail'):
        try:
            buckets = response['aggregations']['groups']['buckets']
        except (KeyError, TypeError):
            raise CanaryError('Failed to read the health gate aggregation: the response has no aggregations.groups.buckets') from None
        observations = []
        for i, metric in enumerate(self.catalog):
            observations.append((observe(metric, i, buckets.get('canary'), window_seconds),
                                 observe(metric, i, buckets.get('baseline'), window_seconds)))
        self.looks += 1
        results = []
        any_conclusive = False
        for metric, track, (canary, baseline) in zip(self.catalog, self.tracks, observations, strict=True):
            track.update(canary, baseline)
            result, conclusive = judge(metric, track, canary, baseline, final)
            if metric.report_only and result['status'] == 'no_data':
                result['_report_only'] = True
            any_conclusive = any_conclusive or conclusive
            results.append(result)
        verdict = decide(results, any_conclusive, final, no_data)
        for result in results:
            result.pop('_report_only', None)
        return verdict, results


def evaluate_response(catalog, response, window_seconds, false_fail_rate, final, no_data, baseline=True):
    """Verdict of a single evaluation (a gate that looks once)."""
    return Judge(catalog, false_fail_rate, baseline).evaluate(response, window_seconds, final, no_data)


def failure_lines(results):
    lines = [r['reason'] for r in results if r['status'] == 'fail']
    lines += ['%s no data: %s' % (r['name'], r['reason']) for r in results if r['status'] == 'no_data']
    return lines


class Gate:
    """Polls one evaluation per interval until the verdict is known."""

    def __init__(self, client, catalog, index, canary_filter, baseline_filter=None, time_field='@timestamp', fields=None,
                 since=None, ingest_lag=0.0, bake_time=300.0, interval=30.0, fail_fast=True, no_data='fail',
                 confidence=0.98, false_fail_rate=None, alarms=None, clock=time.monotonic, sleep=time.sleep, now=None):
        if not 0.5 <= confidence < 1:
            raise CanaryError('Invalid confidence %r: must be in [0.5, 1), e.g. 0.98' % (confidence,))
        if no_data not in NO_DATA_POLICIES:
            raise CanaryError('Invalid no_data %r: valid values are %s' % (no_data, ', '.join(NO_DATA_POLICIES)))
        if bake_time < 0 or interval <= 0 or ingest_lag < 0:
            raise CanaryError('Invalid timing: bake_time >= 0, interval > 0 and ingest_lag >= 0 are required '
                              '(got bake_time=%r, interval=%r, ingest_lag=%r)' % (bake_time, interval, ingest_lag))
        self.false_fail_rate = check_false_fail_rate(false_fail_rate if false_fail_rate is not None else round(1.0 - confidence, 12))
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
        self.judge = Judge(catalog, self.false_fail_rate, baseline_filter is not None)
        # Read before Elasticsearch at every look (an _cloudwatch.AlarmWatch):
        # one in ALARM fails the gate at once, whatever the metrics say.
        self.alarms = alarms
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
        body = build_query(self.catalog, self.time_field, self.fields, self.canary_filter, self.baseline_filter, frm, max(to, frm))
        self.last_query = body
        self.evaluations += 1
        response = self.client.search(self.index, body)
        seconds = max((to - frm).total_seconds(), 0.0)
        return self.judge.evaluate(response, seconds, final, self.no_data)

    def run(self):
        """Returns dict(verdict, metrics, evaluations, window, query, error, false_fail_rate)."""
        start = self._clock()
        verdict, results, error = None, [], None
        while True:
            final = self._clock() - start >= self.bake_time
            try:
                firing = self.alarms.firing() if self.alarms is not None else []
                if firing:
                    return self._result('fail', results, firing_message(firing, 'CloudWatch alarm fired'))
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
                    query=self.last_query, error=error, false_fail_rate=self.false_fail_rate,
                    alarms=self.alarms.last if self.alarms is not None else [])
