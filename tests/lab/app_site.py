"""The lab's stand-in for one running IIS site: a real HTTPS listener.

Behaviour comes from the site's package manifest (see packages.py):
``version`` (sent as X-App-Version), ``cold_start_s`` (the first request, and
every request that arrives meanwhile, waits this long — a cold app pool),
``latency_ms`` (per request, +/-20 % jitter), ``error_rate`` (share of 500s;
``error_pattern`` ``even`` spreads them so that any run of n requests holds
n x error_rate of them, rounded either way, and a test's verdict does not
hang on luck; ``random`` makes each request fail on its own, as in real life),
``health_status`` (what /health answers once warm). ``crashed`` makes every
answer a 503, as IIS gives when rapid-fail protection stopped the app pool. Each request is handed to
``log_sink`` as an IIS-log-like document, the way Logstash would ship it.
"""

from __future__ import annotations

import datetime
import fractions
import math
import random
import threading
import time

from support.servers import LoopbackServer, QuietHandler, start


class _Server(LoopbackServer):
    allow_reuse_address = True


class AppSite:
    """One started site. ``stop()`` closes its listener (IIS stopping the site)."""

    def __init__(self, site_name, host_name, address, port, tls_context, manifest, log_sink=None, seed=None):
        self.site_name = site_name
        self.host_name = host_name
        self.manifest = dict(manifest)
        self.log_sink = log_sink
        self.health_override = None  # a status code forced by the health-fail fault
        self.crashed = False  # the site-crash fault: the app pool is gone, IIS answers 503
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._answered = 0  # requests the app answered (not /health): the even error pattern counts them
        self._first_request = None
        self._warm = threading.Event()
        self._warm_lock = threading.Lock()
        if float(self.manifest.get('cold_start_s', 0)) <= 0:
            self._warm.set()
        self.running = start(self._handler(), host=address, port=port, tls_context=tls_context, server_class=_Server)

    @property
    def warm(self):
        return self._warm.is_set()

    def _wait_warm(self):
        with self._warm_lock:
            if self._first_request is None:
                self._first_request = time.monotonic()
        remaining = self._first_request + float(self.manifest.get('cold_start_s', 0)) - time.monotonic()
        if remaining > 0 and not self._warm.wait(remaining):
            self._warm.set()
        self._warm.set()

    def _roll(self):
        with self._rng_lock:
            return self._rng.random(), self._rng.uniform(0.8, 1.2)

    def _fails(self, roll):
        """Whether this app request answers 500, by the manifest's error_rate and error_pattern."""
        rate = fractions.Fraction(str(self.manifest.get('error_rate', 0)))
        if self.manifest.get('error_pattern', 'even') == 'random':
            return roll < rate
        with self._rng_lock:
            k = self._answered
            self._answered += 1
        # The k-th request fails when the running total of rate x k reaches a new whole number.
        return math.floor((k + 1) * rate) > math.floor(k * rate)

    def _handler(self):
        site = self

        class Handler(QuietHandler):
            def _serve(self):
                started = time.perf_counter()
                length = int(self.headers.get('Content-Length') or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split('?', 1)[0]
                if not site.crashed:
                    site._wait_warm()
                roll, jitter = site._roll()
                if site.crashed:
                    status = 503
                else:
                    # Every path goes through the app, /health included.
                    latency = (site.manifest.get('host_latency_ms') or {}).get(site.host_name, site.manifest.get('latency_ms', 0))
                    time.sleep(float(latency) * jitter / 1000.0)
                    if path == '/health':
                        status = site.health_override or int(site.manifest.get('health_status', 200))
                    else:
                        status = 500 if site._fails(roll) else 200
                body = ('%s %s\n' % (site.site_name, 'ok' if status < 500 else 'error')).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.send_header('X-App-Version', str(site.manifest.get('version')))
                self.end_headers()
                if self.command != 'HEAD':
                    self.wfile.write(body)
                if site.log_sink is not None:
                    site.log_sink({
                        '@timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z'),
                        'application_name': site.site_name,
                        'response': status,
                        'time_taken': round((time.perf_counter() - started) * 1000.0, 3),
                        'host': {'name': site.host_name},
                        'url': {'path': path},
                        'http': {'request': {'method': self.command}},
                        'user_agent': {'original': self.headers.get('User-Agent') or ''},
                    })

            do_GET = do_POST = do_HEAD = _serve

        return Handler

    def stop(self):
        self.running.stop()
