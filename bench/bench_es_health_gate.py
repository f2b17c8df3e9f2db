"""es_health_gate cost per evaluation at 1k, 10k and 100k canary documents.

Prints, per size: HTTP requests and response bytes per evaluation (both must
stay flat: one size-0 search whose answer does not grow with traffic), and
the wall time of one evaluation against the in-process double (the double's
time, not Elasticsearch's). Exits non-zero if requests per evaluation change
or response bytes grow by more than 5 % between sizes. Then loads the double
with one million documents (skip with BENCH_ES_MILLION=0).
"""

from __future__ import annotations

import datetime
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'tests'), os.path.join(ROOT, '.build'), os.path.join(ROOT, 'tools')]

import build_collection  # noqa: E402

build_collection.sync()

from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._gate import DEFAULT_FIELDS, Gate, load_catalog, selection_filter  # noqa: E402
from doubles.es_double import EsDouble, iis_log_docs  # noqa: E402

SIZES = (1000, 10000, 100000)
BASELINE_DOCS = 30000
EVALUATIONS = 3
METRICS = [
    {'name': 'errors', 'kind': 'error_rate', 'max': 0.01, 'max_ratio': 2},
    {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 500, 'max_ratio': 1.5},
    {'name': 'p99', 'kind': 'latency', 'percentile': 99, 'max_ms': 1500},
    {'name': 'rps', 'kind': 'throughput', 'min': 0.1},
]


def measure(size):
    now = datetime.datetime.now(datetime.timezone.utc)
    since = now - datetime.timedelta(minutes=5)
    rnd = random.Random(size)
    with EsDouble('es8') as double:
        double.index_docs('iis-2026.05', iis_log_docs(size, 'web-01', 'app-3457', since, now, 0.002, 50.0, rnd))
        for host in ('web-02', 'web-03', 'web-04'):
            double.index_docs('iis-2026.05', iis_log_docs(BASELINE_DOCS // 3, host, 'app-3456', since, now, 0.002, 50.0, rnd))
        client = EsClient(dict(es_hosts=[double.url], es_request_timeout=120))
        client.info()
        gate = Gate(client, load_catalog(METRICS), 'iis-*',
                    canary_filter=selection_filter({'host': 'web-01', 'application_name': 'app-3457'}, 'canary', DEFAULT_FIELDS),
                    baseline_filter=selection_filter({'host': ['web-02', 'web-03', 'web-04'], 'application_name': 'app-3456'}, 'baseline',
                                                     DEFAULT_FIELDS),
                    since=since.isoformat())
        double.reset_counters()
        started = time.perf_counter()
        for _evaluation in range(EVALUATIONS):
            verdict, results = gate.evaluate(final=True)
        seconds = (time.perf_counter() - started) / EVALUATIONS
        return dict(size=size, verdict=verdict, samples=results[0]['samples'], requests=double.requests / float(EVALUATIONS),
                    bytes=double.response_bytes / float(EVALUATIONS), seconds=seconds)


def hold_million():
    """The double holding 1M documents (10 hosts x 100k): index time, memory, one evaluation."""
    import resource
    now = datetime.datetime.now(datetime.timezone.utc)
    since = now - datetime.timedelta(minutes=5)
    rnd = random.Random(1)
    with EsDouble('es8') as double:
        started = time.perf_counter()
        for host in range(10):
            double.index_docs('iis', iis_log_docs(100000, 'web-%02d' % host, 'app', since, now, 0.002, 50.0, rnd))
        indexing = time.perf_counter() - started
        client = EsClient(dict(es_hosts=[double.url], es_request_timeout=120))
        gate = Gate(client, load_catalog(METRICS[:2]), 'iis', canary_filter=selection_filter({'host': 'web-00'}, 'canary', DEFAULT_FIELDS),
                    baseline_filter=selection_filter({'host': ['web-01', 'web-02', 'web-03']}, 'baseline', DEFAULT_FIELDS),
                    since=since.isoformat())
        started = time.perf_counter()
        gate.evaluate(final=True)
        evaluation = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print('double with 1M documents: generate+index %.1f s, one evaluation %.2f s, peak RSS %d MB' % (indexing, evaluation, rss))


def main():
    rows = [measure(size) for size in SIZES]
    print('%10s %8s %9s %10s %14s %12s' % ('canary', 'verdict', 'samples', 'requests', 'resp. bytes', 'eval (ms)'))
    for row in rows:
        print('%10d %8s %9d %10.1f %14.0f %12.1f' % (row['size'], row['verdict'], row['samples'], row['requests'], row['bytes'],
                                                     row['seconds'] * 1000))
    requests = {row['requests'] for row in rows}
    smallest = min(row['bytes'] for row in rows)
    growth = max(row['bytes'] for row in rows) / smallest - 1
    print('requests per evaluation: %s; response bytes vary by %.1f %%' % (sorted(requests), growth * 100))
    if os.environ.get('BENCH_ES_MILLION', '1') != '0':
        hold_million()
    if requests != {1.0} or growth > 0.05:
        print('FAIL: cost per evaluation grows with traffic')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
