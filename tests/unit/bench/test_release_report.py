"""The release bench's pure figures: phases from task records, customer
windows, spreads, the table and the chart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / 'bench'))

import release_report as rr  # noqa: E402  # pylint: disable=wrong-import-position


def rec(host, task, started, ended, status='ok', **result):
    return dict(host=host, task=task, started=started, ended=ended, status=status, result=result)


RECORDS = [
    rec('web1', 'rollout : Drain the host from the load balancer', 10.0, 15.0, elapsed=4.5),
    rec('web1', 'rollout : Deploy the new version as its own site', 15.0, 18.5, elapsed=0.9),
    rec('web1', 'rollout : Warm up the new site off-line until it is fast', 18.5, 25.0, elapsed=5.9),
    rec('web1', 'rollout : Record the admission time', 25.0, 25.2),
    rec('web1', 'rollout : Admit the host to the load balancer and wait until healthy', 25.2, 28.0, elapsed=2.1),
    rec('web1', 'rollout : Bake in production and let Elasticsearch decide', 28.0, 40.0, status='failed', elapsed=11.0),
    rec('web1', 'rollout : Take the host out of the load balancer without waiting for the full drain', 40.0, 41.0, elapsed=0.1),
    rec('web1', 'rollout : Stop the new site and start the fallback site', 41.0, 42.0, elapsed=0.3),
    rec('web1', 'rollout : Warm up the fallback site off-line', 42.0, 48.0, elapsed=5.5),
    rec('web1', 'rollout : Admit the host again and wait until healthy', 48.0, 51.0, elapsed=2.2),
    rec('web2', 'rollout : Drain the host from the load balancer', 10.0, 11.0, status='skipped', skipped=True),
]


def test_phases_merge_consecutive_tasks_of_one_phase_and_skip_skipped_ones():
    got = [(p['host'], p['phase'], p['start'], p['end']) for p in rr.phases(RECORDS)]
    assert got == [('web1', 'drain', 10.0, 15.0), ('web1', 'deploy', 15.0, 18.5), ('web1', 'warm', 18.5, 25.0),
                   ('web1', 'admit', 25.2, 28.0), ('web1', 'bake', 28.0, 40.0), ('web1', 'revert', 40.0, 51.0)]


def test_a_start_stamped_by_another_host_is_clamped_to_this_hosts_previous_end():
    # Free strategy: the task start was stamped when web2 started it, after web1 had.
    records = [rec('web1', 'Read', 0.0, 2.0), rec('web1', 'Swap', 6.0, 5.0), rec('web2', 'Swap', 1.0, 7.0)]
    spans = rr.task_spans(records)
    assert [(s['host'], s['task'], s['start'], s['end']) for s in spans] == [
        ('web1', 'Read', 0.0, 2.0), ('web1', 'Swap', 5.0, 5.0), ('web2', 'Swap', 1.0, 7.0)]


@pytest.mark.parametrize('suffix, host, after, expected', [
    ('Admit the host to the load balancer and wait until healthy', None, None, 25.2),
    ('Drain the host from the load balancer', 'web2', None, 10.0),
    ('Warm up the fallback site off-line', 'web1', 30.0, 42.0),
    ('Warm up the new site off-line until it is fast', 'web1', 30.0, None),
])
def test_find(suffix, host, after, expected):
    span = rr.find(rr.task_spans(RECORDS), suffix, host=host, after=after)
    assert (span and span['start']) == expected


def test_window_stats_counts_failures_the_longest_run_and_percentiles_inside_the_window():
    traffic = [(0.0, True, 10.0), (1.0, False, 100.0), (1.5, False, 500.0), (2.0, True, 20.0), (3.0, False, 50.0), (9.0, False, 1.0)]
    stats = rr.window_stats(traffic, 0.0, 5.0)
    assert stats['requests'] == 5 and stats['failed'] == 3
    assert stats['longest_failure_s'] == 1.0  # 1.0 -> 1.5 + 0.5 s
    assert stats['p50_ms'] == 50.0
    assert stats['p99_ms'] == pytest.approx(484.0, abs=0.1)
    assert stats['failing_seconds'] == 1  # seconds 1 and 3 had failures, 2 did not


def test_window_stats_tells_no_answer_from_http_errors():
    traffic = [(0.0, True, 10.0, 200), (1.0, False, 10000.0, 0), (1.5, False, 5.0, 502), (2.0, False, 5.0, 500), (9.0, False, 1.0, 0)]
    stats = rr.window_stats(traffic, 0.0, 5.0)
    assert (stats['failed'], stats['no_answer'], stats['http_5xx']) == (3, 1, 2)


@pytest.mark.parametrize('failed_at, expected', [
    ([], 0),
    ([0.5], 1),
    ([0.1, 0.9, 1.2, 2.5, 4.0], 3),
    ([0.1, 2.1, 4.1], 1),
])
def test_failing_stretch_counts_consecutive_seconds_with_a_failure(failed_at, expected):
    records = sorted([(t, False, 1.0) for t in failed_at] + [(t + 0.05, True, 1.0) for t in range(6)])
    assert rr.failing_stretch(records, 0.0) == expected


def test_per_second_buckets_from_t0():
    traffic = [(100.2, True, 10.0), (100.7, False, 30.0), (102.1, True, 5.0), (99.0, True, 1.0)]
    assert rr.per_second(traffic, 100.0, 103.0) == [
        dict(second=0, ok=1, failed=1, p50_ms=20.0, p99_ms=pytest.approx(29.8)),
        dict(second=2, ok=1, failed=0, p50_ms=5.0, p99_ms=5.0)]


@pytest.mark.parametrize('values, summary, text', [
    ([3.0, 1.0, 2.0], dict(median=2.0, min=1.0, max=3.0, n=3), '2.0 s (1.0-3.0)'),
    ([4.0, None], dict(median=4.0, min=4.0, max=4.0, n=1), '4.0 s'),
    ([], dict(median=None, min=None, max=None, n=0), '-'),
])
def test_spread_and_fmt(values, summary, text):
    assert rr.spread(values) == summary
    assert rr.fmt(rr.spread(values), ' s') == text


def test_markdown_table_marks_missed_targets():
    text = rr.markdown_table([('failed', '0', '0', True), ('p99 ratio', '2.1x', '<= 1.5x', False), ('info', '3', '', None)])
    assert text.splitlines() == ['| figure | median (min-max) | target | met |', '|---|---|---|---|', '| failed | 0 | 0 | yes |',
                                 '| p99 ratio | 2.1x | <= 1.5x | **no** |', '| info | 3 |  |  |']


def test_chart_writes_a_png(tmp_path):
    pytest.importorskip('matplotlib')  # requirements-bench.txt; not in the ansible-core 2.18 venv
    traffic = [(10.0 + i * 0.1, i % 17 != 0, 5.0 + i % 7) for i in range(400)]
    path = rr.chart(str(tmp_path / 'one.png'), 'test', traffic, rr.phases(RECORDS), 10.0, 52.0, marks=[(28.0, 'admitted')])
    with open(path, 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
