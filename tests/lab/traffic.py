"""Steady customer traffic through the data plane, and what customers saw.

Requests start on a fixed schedule (``rps``) whatever the previous ones are
doing, as independent customers would; each outcome and latency is kept.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import ssl
import threading
import time
import urllib.parse

from ansible_collections.immune.canary.plugins.module_utils._statistics import percentile
from lab.dataplane import PinnedHTTPSConnection


class Traffic:
    def __init__(self, url, rps, ca_path, public_name, timeout=10.0, path='/', workers=64):
        parts = urllib.parse.urlsplit(url)
        self.address, self.port = parts.hostname, parts.port or 443
        self.rps = float(rps)
        self.public_name = public_name
        self.timeout = timeout
        self.path = path
        self.ctx = ssl.create_default_context(cafile=str(ca_path))
        self.records = []  # (start offset s, ok, latency ms, status)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self._thread = None
        self.t0 = None

    def _one(self, offset):
        started = time.perf_counter()
        status = 0
        try:
            conn = PinnedHTTPSConnection(self.address, self.port, self.public_name, self.ctx, self.timeout)
            conn.request('GET', self.path, headers={'Host': self.public_name})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            conn.close()
        except (OSError, http.client.HTTPException):
            status = 0
        latency = (time.perf_counter() - started) * 1000.0
        with self._lock:
            self.records.append((offset, 200 <= status < 400, latency, status))

    def _run(self, seconds):
        interval = 1.0 / self.rps
        n = 0
        while not self._stop.is_set():
            due = self.t0 + n * interval
            now = time.monotonic()
            if seconds is not None and due - self.t0 >= seconds:
                break
            if due > now:
                if self._stop.wait(due - now):
                    break
            self._pool.submit(self._one, due - self.t0)
            n += 1

    def start(self, seconds=None):
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # Requests still queued when customers stop are never sent: on an
        # overloaded machine the backlog would otherwise take minutes to drain.
        self._pool.shutdown(wait=True, cancel_futures=True)
        return self.summary()

    def run(self, seconds):
        """Send ``seconds`` of traffic and wait for every request to finish."""
        self.start(seconds)
        self._thread.join()
        self._pool.shutdown(wait=True)
        return self.stop()

    def summary(self):
        with self._lock:
            records = sorted(self.records)
        latencies = [r[2] for r in records]
        failures = [r for r in records if not r[1]]
        return {
            'requests': len(records),
            'failures': len(failures),
            # What the failed requests got: an HTTP status, or 0 for no answer.
            'failed_statuses': {str(status): n for status, n in sorted(collections.Counter(r[3] for r in failures).items())},
            'p50_ms': _round(percentile(latencies, 50)),
            'p99_ms': _round(percentile(latencies, 99)),
            'longest_failure_s': longest_failure(records),
            'series': series(records),
        }


def _round(value):
    return None if value is None else round(value, 1)


def longest_failure(records):
    """Seconds from the start of the first to the end of the last failed request
    of the longest unbroken run of failures (0.0 when none failed)."""
    longest = 0.0
    run_start = None
    for offset, ok, latency, _status in records:
        if ok:
            run_start = None
            continue
        if run_start is None:
            run_start = offset
        longest = max(longest, offset + latency / 1000.0 - run_start)
    return round(longest, 3)


def series(records):
    """Per second of the run: ok and failed counts and p99 latency (ms)."""
    buckets = {}
    for offset, ok, latency, _status in records:
        bucket = buckets.setdefault(int(offset), {'ok': 0, 'failed': 0, 'lat': []})
        bucket['ok' if ok else 'failed'] += 1
        bucket['lat'].append(latency)
    return [{'second': s, 'ok': b['ok'], 'failed': b['failed'], 'p99_ms': _round(percentile(b['lat'], 99))}
            for s, b in sorted(buckets.items())]
