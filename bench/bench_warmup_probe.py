"""Bench: what a warmup_probe round costs against a fast local HTTPS server.

Prints, per URL count, the wall time of one 6-sample round, and compares the
probe's per-request time with a bare loop that does the same work (new TCP
connection, TLS handshake with SNI, one GET, read the body) on raw ssl
sockets. The difference is the probe's own overhead (http.client parsing,
expectation checks, statistics); it should be small next to the server's time.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT / 'tests'))

import build_collection  # noqa: E402

build_collection.sync()
sys.path.insert(0, str(ROOT / '.build'))

from ansible_collections.immune.canary.plugins.module_utils._http_probe import ProbeConfig, WarmupProbe  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._waiter import Deadline  # noqa: E402
from doubles.https_app import App, serving_app  # noqa: E402
from support.tls import TestCA  # noqa: E402

PUBLIC = 'app.example.com'
SAMPLES = 6
REPEAT = 40


def config(ca, port, urls, concurrency=1):
    return ProbeConfig(dict(url=None, urls=urls, address='127.0.0.1', port=port, method='GET', headers={}, secret_headers={},
                            body=None, status_codes=[200], body_regex=None, headers_match={'X-App-Version': '3457'},
                            first_request_timeout=10.0, timeout=60.0, samples=SAMPLES, latency_statistic='p90',
                            latency_threshold_ms=100.0, validate_certs=True, ca_path=str(ca.ca_path), client_cert=None,
                            client_key=None, concurrency=concurrency))


def raw_request(ctx, port, request):
    """The same work as one probe sample, on bare sockets."""
    started = time.perf_counter()
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(sock, server_hostname=PUBLIC) as tls:
            tls.sendall(request)
            while tls.recv(65536):
                pass
    return (time.perf_counter() - started) * 1000


def one_round(probe, deadline):
    started = time.perf_counter()
    outcomes = [probe._sample(target, deadline) for target in probe.cfg.targets]  # pylint: disable=protected-access
    elapsed = (time.perf_counter() - started) * 1000
    problem, _incomplete = probe._judge(outcomes)  # pylint: disable=protected-access
    assert problem is None, problem.reason
    samples = [s for samples, _f, _c in outcomes for s in samples]
    return elapsed, [s.total_ms for s in samples], [s.first_byte_ms for s in samples]


def main():
    with tempfile.TemporaryDirectory(prefix='bench-probe-') as tmp:
        ca = TestCA(tmp)
        cert = ca.issue([PUBLIC])
        app = App()
        with serving_app(app, cert) as srv:
            ctx = ssl.create_default_context(cafile=str(ca.ca_path))
            request = ('GET /health HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench\r\nAccept: */*\r\nConnection: close\r\n\r\n' % PUBLIC).encode()
            for _warm in range(20):
                raw_request(ctx, srv.port, request)
            print('fast loopback HTTPS server, %d samples per round, %d rounds each, medians;' % (SAMPLES, REPEAT))
            print('raw and probe rounds alternate so both see the same machine load')
            for count in (1, 3):
                urls = ['https://%s/health' % PUBLIC] + ['https://%s/page%d' % (PUBLIC, i) for i in range(1, count)]
                probe = WarmupProbe(config(ca, srv.port, urls))
                deadline = Deadline(600)
                raw_rounds, rounds = [], []
                for _i in range(REPEAT):
                    started = time.perf_counter()
                    raw_times = [raw_request(ctx, srv.port, request) for _j in range(SAMPLES * count)]
                    raw_rounds.append(((time.perf_counter() - started) * 1000, raw_times))
                    rounds.append(one_round(probe, deadline))
                raw_round = statistics.median(r[0] for r in raw_rounds)
                raw_request_ms = statistics.median(t for r in raw_rounds for t in r[1])
                round_ms = statistics.median(r[0] for r in rounds)
                per_request = statistics.median(t for r in rounds for t in r[1])
                first_byte = statistics.median(t for r in rounds for t in r[2])
                print('  %d URL%s, %2d requests per round:' % (count, '' if count == 1 else 's', SAMPLES * count))
                print('    raw ssl socket loop : %7.2f ms per round, %6.2f ms per request (connect + TLS + GET + body)' % (raw_round, raw_request_ms))
                print('    probe               : %7.2f ms per round, %6.2f ms per request (first byte %.2f ms after sending)' % (
                    round_ms, per_request, first_byte))
                print('    probe overhead      : %+7.2f ms per round, %+6.2f ms per request (%+.0f %%)' % (
                    round_ms - raw_round, per_request - raw_request_ms, 100 * (per_request - raw_request_ms) / raw_request_ms))
            probe = WarmupProbe(config(ca, srv.port, ['https://%s/p%d' % (PUBLIC, i) for i in range(3)], concurrency=3))
            started = time.perf_counter()
            result = probe.run()
            print('  full run() 3 URLs, concurrency 3: %6.2f ms (cold start + %d round%s)' % (
                (time.perf_counter() - started) * 1000, result['rounds'], '' if result['rounds'] == 1 else 's'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
