"""The lab's ALB data plane: an HTTPS listener that forwards each request to
a target that is registered and healthy at that moment.

``route()`` is asked per request for the routable targets (a list of
``(target_id, address, port)``); draining or unhealthy targets are never
in it, so they get no new requests while requests already forwarded to them
finish. ``slow_start_s`` ramps a newly routable target's share of requests
linearly from 0 to its full weight, like ALB's slow start. No target -> 503,
a target that fails mid-request -> 502, as an ALB answers.
"""

from __future__ import annotations

import datetime
import http.client
import itertools
import random
import socket
import ssl
import threading
import time

from support.servers import QuietHandler, start


class DataPlane:
    def __init__(self, route, public_name, target_ca, tls_context, host='127.0.0.1', port=0, slow_start_s=0.0,
                 target_timeout=30.0, keep_log=100000):
        self.route = route
        self.public_name = public_name
        self.slow_start_s = float(slow_start_s)
        self.target_timeout = target_timeout
        self.access_log = []
        self._keep_log = keep_log
        self._log_lock = threading.Lock()
        self._since = {}
        self._counter = itertools.count()
        self._rng = random.Random(7)
        self._client_ctx = ssl.create_default_context(cafile=str(target_ca))
        self.in_flight = {}
        self.running = start(self._handler(), host=host, port=port, tls_context=tls_context)
        self.url = 'https://%s:%d' % (self.running.host, self.running.port)

    def weights(self, targets, now=None):
        """Each routable target's share weight: 1, or with slow start the
        fraction of the ramp since it became routable (a route entry may carry
        that time as a 4th item), never below 2 %."""
        now = time.monotonic() if now is None else now
        current = {t[0] for t in targets}
        for target_id in list(self._since):
            if target_id not in current:
                del self._since[target_id]
        weights = []
        for target in targets:
            since = target[3] if len(target) > 3 else self._since.setdefault(target[0], now)
            if self.slow_start_s > 0:
                weights.append(max(0.02, min(1.0, (now - since) / self.slow_start_s)))
            else:
                weights.append(1.0)
        return weights

    def _pick(self):
        """Round robin; weighted while slow start ramps a target up."""
        targets = list(self.route())
        if not targets:
            return None
        weights = self.weights(targets)
        if len(set(weights)) == 1:
            return targets[next(self._counter) % len(targets)][:3]
        return self._rng.choices(targets, weights=weights)[0][:3]

    def _record(self, entry):
        with self._log_lock:
            self.access_log.append(entry)
            if len(self.access_log) > self._keep_log:
                del self.access_log[: len(self.access_log) - self._keep_log]

    def _handler(self):
        plane = self

        class Handler(QuietHandler):
            def _forward(self):
                started = time.perf_counter()
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else None
                target = plane._pick()
                status, headers, payload = 503, {}, b'no healthy target\n'
                target_id = None
                if target is not None:
                    target_id, address, port = target
                    plane.in_flight[target_id] = plane.in_flight.get(target_id, 0) + 1
                    try:
                        conn = PinnedHTTPSConnection(address, port, plane.public_name, plane._client_ctx, plane.target_timeout)
                        conn.request(self.command, self.path, body=body, headers={'Host': plane.public_name})
                        resp = conn.getresponse()
                        status, payload = resp.status, resp.read()
                        headers = {k: v for k, v in resp.getheaders() if k.lower() in ('content-type', 'x-app-version')}
                        conn.close()
                    except (OSError, http.client.HTTPException):
                        status, headers, payload = 502, {}, b'bad gateway\n'
                    finally:
                        plane.in_flight[target_id] -= 1
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                plane._record({
                    'time': datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    'target': target_id,
                    'status': status,
                    'ms': round((time.perf_counter() - started) * 1000.0, 3),
                    'path': self.path,
                })

            do_GET = do_POST = do_HEAD = _forward

        return Handler

    def stop(self):
        self.running.stop()


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connect to ``address`` but present and verify ``server_name`` (SNI)."""

    def __init__(self, address, port, server_name, context, timeout):
        super().__init__(server_name, port, context=context, timeout=timeout)
        self._address = address
        self._ctx = context

    def connect(self):
        raw = socket.create_connection((self._address, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.host)
