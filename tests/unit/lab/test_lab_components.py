from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
import zipfile

import pytest

from lab import packages
from lab.app_site import AppSite
from lab.dataplane import DataPlane, PinnedHTTPSConnection
from lab.traffic import Traffic, longest_failure, series
from support.servers import server_tls_context
from support.tls import TestCA

PUBLIC = 'app.example.com'


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp('pki'))
    cert, key = ca.issue([PUBLIC])
    return ca, server_tls_context(cert, key)


def get(address, port, ca, path='/'):
    conn = PinnedHTTPSConnection(address, port, PUBLIC, ssl.create_default_context(cafile=str(ca.ca_path)), 10)
    started = time.perf_counter()
    conn.request('GET', path, headers={'Host': PUBLIC})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.getheader('X-App-Version'), body, time.perf_counter() - started


def test_package_checksum_and_manifest_round_trip(tmp_path):
    path, checksum, manifest = packages.build_package(tmp_path, '3457', error_rate=0.2, cold_start_s=1)
    assert checksum == 'sha256:' + hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / 'site')
    assert packages.read_manifest(tmp_path / 'site') == manifest
    assert manifest['version'] == '3457' and manifest['error_rate'] == 0.2


@pytest.mark.parametrize('behaviour, message', [
    ({'error_rate': 1.5}, 'error_rate must be between 0 and 1'),
    ({'colour': 'red'}, 'unknown package behaviour: colour'),
    ({'error_pattern': 'bursty'}, 'error_pattern must be one of: even, random'),
])
def test_package_rejects_bad_behaviour(tmp_path, behaviour, message):
    with pytest.raises(ValueError, match=message):
        packages.build_package(tmp_path, '1', **behaviour)


def test_cold_start_delays_only_the_first_request(pki):
    ca, ctx = pki
    site = AppSite('app.example.com-2', 'web1', '127.0.10.201', 0, ctx, packages.manifest_for('2', cold_start_s=0.6, latency_ms=1))
    try:
        port = site.running.port
        first = get('127.0.10.201', port, ca)
        second = get('127.0.10.201', port, ca)
    finally:
        site.stop()
    assert first[:2] == (200, '2') and second[:2] == (200, '2')
    assert first[3] >= 0.55
    assert second[3] < first[3] / 3


def test_requests_arriving_during_warm_up_wait_for_it(pki):
    ca, ctx = pki
    site = AppSite('s', 'web1', '127.0.10.202', 0, ctx, packages.manifest_for('2', cold_start_s=0.5, latency_ms=1))
    times = []
    try:
        threads = [threading.Thread(target=lambda: times.append(get('127.0.10.202', site.running.port, ca)[3])) for _i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        site.stop()
    assert len(times) == 3 and min(times) >= 0.4


def test_error_rate_and_logging(pki):
    ca, ctx = pki
    logged = []
    site = AppSite('app.example.com-3', 'web2', '127.0.10.203', 0, ctx,
                   packages.manifest_for('3', cold_start_s=0, latency_ms=0, error_rate=0.3), log_sink=logged.append, seed=1)
    try:
        first = [get('127.0.10.203', site.running.port, ca)[0] for _i in range(10)]
        health = get('127.0.10.203', site.running.port, ca, '/health')[0]
        rest = [get('127.0.10.203', site.running.port, ca)[0] for _i in range(50)]
    finally:
        site.stop()
    # Spread evenly over the app's requests (/health is not one): every run of n requests holds n x 0.3, rounded either way.
    statuses = first + rest
    assert statuses.count(500) == 18 and statuses.count(500) + statuses.count(200) == 60
    for n in (10, 13, 20):
        for start in range(0, 60 - n + 1):
            assert int(n * 0.3) <= statuses[start:start + n].count(500) <= int(n * 0.3) + 1, (n, start, statuses)
    assert health == 200
    assert len(logged) == 61
    assert {d['application_name'] for d in logged} == {'app.example.com-3'}
    assert logged[0]['host'] == {'name': 'web2'} and logged[10]['url'] == {'path': '/health'}
    assert sorted({d['response'] for d in logged}) == [200, 500]


def test_random_error_pattern_fails_each_request_on_its_own(pki):
    ca, ctx = pki
    manifest = packages.manifest_for('3', cold_start_s=0, latency_ms=0, error_rate=0.5, error_pattern='random')
    runs = []
    for seed in (1, 2):
        site = AppSite('app.example.com-3', 'web2', '127.0.10.203', 0, ctx, manifest, seed=seed)
        try:
            runs.append([get('127.0.10.203', site.running.port, ca)[0] for _i in range(60)])
        finally:
            site.stop()
    for statuses in runs:
        assert 15 <= statuses.count(500) <= 45 and statuses.count(500) + statuses.count(200) == 60
    # Not a fixed pattern: the seed decides which requests fail, and runs of one status are longer than alternation allows.
    assert runs[0] != runs[1]
    assert any(statuses[i:i + 3] in ([500] * 3, [200] * 3) for statuses in runs for i in range(58))


def test_two_sites_cannot_hold_one_address_and_port(pki):
    _ca, ctx = pki
    first = AppSite('a-1', 'web1', '127.0.10.204', 0, ctx, packages.manifest_for('1', cold_start_s=0))
    try:
        with pytest.raises(OSError):
            AppSite('a-2', 'web1', '127.0.10.204', first.running.port, ctx, packages.manifest_for('2', cold_start_s=0))
    finally:
        first.stop()
    with pytest.raises(OSError), socket.create_connection(('127.0.10.204', first.running.port), timeout=1):
        pass


def test_data_plane_routes_only_to_routable_targets(pki):
    ca, ctx = pki
    sites = {
        'i-1': AppSite('a-1', 'web1', '127.0.10.205', 0, ctx, packages.manifest_for('1', cold_start_s=0, latency_ms=0)),
        'i-2': AppSite('a-2', 'web2', '127.0.10.206', 0, ctx, packages.manifest_for('2', cold_start_s=0, latency_ms=0)),
    }
    routable = {'i-1', 'i-2'}

    def route():
        return [(tid, s.running.host, s.running.port) for tid, s in sorted(sites.items()) if tid in routable]

    plane = DataPlane(route, PUBLIC, ca.ca_path, ctx)
    try:
        versions = [get('127.0.0.1', plane.running.port, ca)[1] for _i in range(6)]
        routable.discard('i-1')  # draining: no new requests
        after = [get('127.0.0.1', plane.running.port, ca)[1] for _i in range(4)]
        routable.clear()
        empty = get('127.0.0.1', plane.running.port, ca)[0]
        routable.add('i-1')
        sites['i-1'].stop()  # target dies: the ALB answers 502
        dead = get('127.0.0.1', plane.running.port, ca)[0]
    finally:
        plane.stop()
        sites['i-2'].stop()
    assert sorted(versions) == ['1', '1', '1', '2', '2', '2']
    assert after == ['2'] * 4
    assert (empty, dead) == (503, 502)
    assert [e['target'] for e in plane.access_log[-2:]] == [None, 'i-1']


def test_traffic_counts_what_customers_saw(pki):
    ca, ctx = pki
    site = AppSite('a-1', 'web1', '127.0.10.207', 0, ctx, packages.manifest_for('1', cold_start_s=0, latency_ms=2))
    plane = DataPlane(lambda: [('i-1', site.running.host, site.running.port)], PUBLIC, ca.ca_path, ctx)
    try:
        summary = Traffic(plane.url, 40, ca.ca_path, PUBLIC).run(1.0)
    finally:
        plane.stop()
        site.stop()
    assert summary['requests'] == 40 and summary['failures'] == 0
    assert summary['p50_ms'] > 0 and summary['longest_failure_s'] == 0.0
    assert sum(s['ok'] for s in summary['series']) == 40
    assert summary['failed_statuses'] == {}


def test_traffic_says_what_failed_requests_got(pki):
    ca, _ctx = pki
    plane = DataPlane(lambda: [], PUBLIC, ca.ca_path, _ctx)
    try:
        summary = Traffic(plane.url, 20, ca.ca_path, PUBLIC).run(0.5)
    finally:
        plane.stop()
    assert summary['failures'] == summary['requests'] > 0
    assert summary['failed_statuses'] == {'503': summary['requests']}


@pytest.mark.parametrize('records, expected', [
    ([(0.0, True, 5, 200), (0.1, True, 5, 200)], 0.0),
    ([(0.0, False, 100, 502), (0.5, False, 100, 502), (1.0, True, 5, 200), (2.0, False, 250, 0)], 0.6),
    ([(0.0, False, 1000, 0), (0.2, True, 5, 200), (0.4, False, 50, 503), (0.5, False, 50, 503), (0.6, False, 50, 503)], 1.0),
])
def test_longest_failure(records, expected):
    assert longest_failure(records) == pytest.approx(expected)


def test_series_buckets_per_second():
    records = [(0.1, True, 10, 200), (0.9, False, 30, 502), (2.5, True, 20, 200)]
    assert series(records) == [
        {'second': 0, 'ok': 1, 'failed': 1, 'p99_ms': 29.8},
        {'second': 2, 'ok': 1, 'failed': 0, 'p99_ms': 20.0},
    ]
