# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm one server off-line and prove it is fast, over HTTP(S) with the public name.

The probe connects to ``address``:``port`` (one server, out of the load
balancer) but speaks to it as a client of the public URL would: TLS SNI and
the ``Host`` header carry the URL's host name and the certificate is validated
against that name. It is built on ``socket``/``ssl``/``http.client`` so the
TCP connect, the TLS handshake and the request itself are timed separately.

Each request uses a new connection: that is what a cold client sees, and it
keeps one slow or broken connection from skewing the next sample. The latency
that is judged (``samples_ms``) is the request time, from sending the request
to the last byte of the body; connect and TLS times are reported apart so the
threshold measures the application, not the handshake.

This module knows nothing about Ansible; it raises CanaryError.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._statistics import percentile
from ansible_collections.immune.canary.plugins.module_utils._waiter import Deadline, poll_intervals

STATISTICS = {'max': 100, 'p50': 50, 'p90': 90, 'p95': 95}
# Answers a server gives while it starts or is overloaded: worth another try.
RETRYABLE_STATUS = frozenset((408, 429, 502, 503, 504))
DEFAULT_PORTS = {'https': 443, 'http': 80}
USER_AGENT = 'immune.canary-warmup_probe/0.1.0'
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Backoff while the server is not answering yet, and between failed rounds.
COLD_START_BACKOFF = (0.2, 2.0, 1.5)
ROUND_BACKOFF = (0.1, 1.0, 1.5)
MIN_ATTEMPT_TIME = 0.05


class ProbeFailure(Exception):
    """One request did not meet an expectation. ``retryable`` says whether
    waiting can fix it (the server is still starting) or not."""

    def __init__(self, reason, retryable, status=None, latency=False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.latency = latency


class Target:
    """One public URL: where the name, SNI, Host and path come from."""

    def __init__(self, url, option):
        self.url = url
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise CanaryError('Invalid %s %r: the scheme must be https or http (for example https://app.example.com/health)' % (option, url))
        try:
            port = parts.port
        except ValueError as exc:
            raise CanaryError('Invalid %s %r: %s; use https://<host>[:<port>]/<path>' % (option, url, exc)) from exc
        if not parts.hostname:
            raise CanaryError('Invalid %s %r: the URL has no host name; use https://<host>[:<port>]/<path>' % (option, url))
        if parts.username or parts.password:
            raise CanaryError('Invalid %s: credentials in the URL are not allowed; send them with secret_headers' % option)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.url_port = port or DEFAULT_PORTS[self.scheme]
        host = '[%s]' % self.host if ':' in self.host else self.host
        self.host_header = host if port is None else '%s:%d' % (host, port)
        self.path = (parts.path or '/') + ('?' + parts.query if parts.query else '')
        self.label = parts.path or '/'


def _positive(params, name, integer=False, minimum=None):
    value = params.get(name)
    valid = value is not None and not isinstance(value, bool)
    if valid:
        valid = (value >= minimum) if minimum is not None else value > 0
        valid = valid and (not integer or float(value).is_integer())
    if not valid:
        what = 'an integer >= %d' % minimum if minimum is not None else ('a positive integer' if integer else 'a number > 0')
        raise CanaryError('Invalid %s %r: must be %s' % (name, value, what))
    return int(value) if integer else float(value)


def _header_dict(params, name, secret=False):
    headers = {}
    for raw_key, raw_value in (params.get(name) or {}).items():
        key = str(raw_key)
        value = '' if raw_value is None else str(raw_value)
        if not _TOKEN.match(key):
            raise CanaryError('Invalid %s: %r is not a valid header name' % (name, key))
        if '\r' in value or '\n' in value:
            shown = 'the value of %s' % key if secret else '%s value %r' % (key, value)
            raise CanaryError('Invalid %s: %s contains a line break' % (name, shown))
        if key.lower() == 'host':
            raise CanaryError('Invalid %s: Host may not be set; it comes from the URL (the public name)' % name)
        headers[key] = value
    return headers


class ProbeConfig:
    """Validated options; built before any traffic is sent."""

    def __init__(self, params):
        urls = params.get('urls')
        if params.get('url'):
            urls = [params['url']]
            options = ['url']
        else:
            urls = list(urls or [])
            options = ['urls[%d]' % i for i in range(len(urls))]
        if not urls:
            raise CanaryError('Invalid url/urls: give one public URL in url, or a non-empty list in urls')
        self.targets = [Target(str(u), o) for u, o in zip(urls, options, strict=True)]

        self.address = str(params.get('address') or '').strip()
        if not self.address or '/' in self.address or ' ' in self.address:
            raise CanaryError('Invalid address %r: give the server host name or IP address to connect to (no scheme or path)'
                              % params.get('address'))
        self.address = self.address.strip('[]')
        self.port = params.get('port')
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise CanaryError('Invalid port %r: must be between 1 and 65535' % (self.port,))

        self.method = str(params.get('method') or 'GET').upper()
        if not _TOKEN.match(self.method):
            raise CanaryError('Invalid method %r: must be an HTTP method such as GET, HEAD or POST' % params.get('method'))
        headers = _header_dict(params, 'headers')
        secret = _header_dict(params, 'secret_headers', secret=True)
        merged = {k.lower(): (k, v) for k, v in headers.items()}
        merged.update({k.lower(): (k, v) for k, v in secret.items()})
        self.headers = dict(merged.values())
        body = params.get('body')
        self.body = None if body is None else str(body).encode('utf-8')

        codes = params.get('status_codes')
        codes = [200] if codes is None else codes
        if not codes:
            raise CanaryError('Invalid status_codes []: give at least one HTTP status a ready server answers with, such as [200]')
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise CanaryError('Invalid status_codes %r: each must be an HTTP status between 100 and 599' % (codes,))
        self.status_codes = frozenset(codes)
        self.body_regex = None
        if params.get('body_regex') is not None:
            self.body_regex = self._regex('body_regex', params['body_regex'])
        self.headers_match = []
        for name, expected in (params.get('headers_match') or {}).items():
            if not _TOKEN.match(str(name)):
                raise CanaryError('Invalid headers_match: %r is not a valid header name' % (name,))
            pattern = '' if expected is None else str(expected)
            self.headers_match.append((str(name), pattern, self._regex('headers_match[%s]' % name, pattern)))

        self.first_request_timeout = _positive(params, 'first_request_timeout')
        self.timeout = _positive(params, 'timeout')
        self.samples = _positive(params, 'samples', integer=True, minimum=1)
        self.latency_threshold_ms = _positive(params, 'latency_threshold_ms')
        self.concurrency = _positive(params, 'concurrency', integer=True, minimum=1)
        self.statistic = params.get('latency_statistic') or 'p90'
        if self.statistic not in STATISTICS:
            raise CanaryError('Invalid latency_statistic %r: must be one of %s' % (self.statistic, ', '.join(STATISTICS)))

        self.validate_certs = params.get('validate_certs', True) is not False
        self.warnings = []
        self.ssl_context = None
        self.check_context = None
        if any(t.scheme == 'https' for t in self.targets):
            self.ssl_context = self._ssl_context(params, check_hostname=self.validate_certs)
            if self.validate_certs:
                # Only used to name the certificate's hosts when the name check fails.
                self.check_context = self._ssl_context(params, check_hostname=False)
            else:
                self.warnings.append('validate_certs is false: the certificate of %s is not checked, so the probe cannot prove '
                                     'that the server holds the certificate for the public name' % self.address)
        elif params.get('client_cert') or params.get('ca_path'):
            self.warnings.append('ca_path and client_cert apply to https URLs only; every URL is http')

    @staticmethod
    def _regex(option, pattern):
        try:
            return re.compile(str(pattern))
        except re.error as exc:
            raise CanaryError('Invalid %s %r: not a regular expression: %s' % (option, pattern, exc)) from exc

    def _ssl_context(self, params, check_hostname):
        ca_path, cert, key = params.get('ca_path'), params.get('client_cert'), params.get('client_key')
        try:
            ctx = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise CanaryError('Invalid ca_path %r: cannot load CA certificates: %s' % (ca_path, getattr(exc, 'strerror', None) or exc)) from exc
        if not self.validate_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif not check_hostname:
            ctx.check_hostname = False
        if key and not cert:
            raise CanaryError('Invalid client_key: client_cert is required with it')
        if cert:
            try:
                ctx.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise CanaryError('Invalid client_cert %r / client_key: cannot load the client certificate: %s'
                                  % (cert, getattr(exc, 'strerror', None) or exc)) from exc
        return ctx


class HeaderCut(http.client.HTTPException):
    """The connection ended inside the response's header block."""


class _EofWatch:
    """Wraps the response file and notes an end of stream while reading lines."""

    def __init__(self, fp):
        self._fp = fp
        self.eof = False

    def readline(self, *args):
        line = self._fp.readline(*args)
        if not line:
            self.eof = True
        return line

    def __getattr__(self, name):
        return getattr(self._fp, name)


class _Response(http.client.HTTPResponse):
    """http.client takes a header block that ends with the connection for a
    complete one; a cut-off response must not pass as an empty 200."""

    def __init__(self, sock, *args, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self._watch = self.fp = _EofWatch(self.fp)

    def begin(self):
        super().begin()
        if self._watch.eof:
            raise HeaderCut()


class Sample:
    """Timings of one request, in milliseconds: TCP connect, TLS handshake,
    first byte (request sent to status line and headers read), request (to the
    last body byte) and total (connect to the last body byte)."""

    def __init__(self, status, headers, body, connect_ms, tls_ms, first_byte_ms, request_ms, total_ms):
        self.status = status
        self.headers = headers
        self.body = body
        self.connect_ms = connect_ms
        self.tls_ms = tls_ms
        self.first_byte_ms = first_byte_ms
        self.request_ms = request_ms
        self.total_ms = total_ms


def _ms(value):
    return '%.0f' % value if value >= 10 else '%.1f' % value


def _round(value):
    return None if value is None else round(value, 1)


class WarmupProbe:
    """Cold start, then timed rounds until one passes or the deadline ends."""

    def __init__(self, config, clock=time.monotonic, sleep=time.sleep, log=None):
        self.cfg = config
        self._clock = clock
        self._sleep = sleep
        self._log = log or (lambda message: None)
        self.attempts = 0
        self.rounds = 0
        self.first_response_ms = None
        self.url_results = [self._url_result(t, []) for t in config.targets]
        ports = {self._port(t) for t in config.targets}
        self.where = '%s:%d' % (config.address, ports.pop()) if len(ports) == 1 else config.address
        hosts = []
        for target in config.targets:
            if target.host not in hosts:
                hosts.append(target.host)
        self.what = ', '.join(hosts)

    def _port(self, target):
        return self.cfg.port or target.url_port

    # -- one request --------------------------------------------------------

    def request(self, target, timeout):
        """One request on a new connection; returns a Sample or raises ProbeFailure."""
        cfg = self.cfg
        where = '%s:%d' % (cfg.address, self._port(target))
        timeout = max(timeout, 0.001)
        started = time.perf_counter()
        try:
            sock = socket.create_connection((cfg.address, self._port(target)), timeout=timeout)
        except ConnectionRefusedError as exc:
            raise ProbeFailure('connection refused by %s' % where, True) from exc
        except TimeoutError as exc:
            raise ProbeFailure('no connection to %s within %.1f s' % (where, timeout), True) from exc
        except socket.gaierror as exc:
            raise ProbeFailure('cannot resolve address %s: %s' % (cfg.address, exc.strerror), False) from exc
        except OSError as exc:
            raise ProbeFailure('cannot connect to %s: %s' % (where, exc.strerror or exc), True) from exc
        connected = time.perf_counter()
        try:
            if target.scheme == 'https':
                sock = self._handshake(sock, target, where)
            handshaken = time.perf_counter()
            conn = http.client.HTTPConnection(target.host, self._port(target), timeout=timeout)
            conn.sock = sock
            conn.response_class = _Response
            headers = {'Host': target.host_header, 'User-Agent': USER_AGENT, 'Accept': '*/*', 'Connection': 'close'}
            headers.update(cfg.headers)
            conn.request(cfg.method, target.path, body=cfg.body, headers=headers)
            response = conn.getresponse()
            headers_in = time.perf_counter()
            body = response.read()
            done = time.perf_counter()
        except ProbeFailure:
            raise
        except TimeoutError as exc:
            raise ProbeFailure('no answer from %s for %s within %.1f s' % (where, target.label, timeout), True) from exc
        except http.client.IncompleteRead as exc:
            raise ProbeFailure('response from %s cut off after %d bytes of the body' % (target.label, len(exc.partial)), True) from exc
        except (http.client.RemoteDisconnected, ssl.SSLEOFError) as exc:
            raise ProbeFailure('connection closed by %s before a complete response from %s' % (where, target.label), True) from exc
        except ConnectionResetError as exc:
            raise ProbeFailure('connection reset by %s during the response from %s' % (where, target.label), True) from exc
        except HeaderCut as exc:
            raise ProbeFailure('response from %s cut off inside the headers' % target.label, True) from exc
        except http.client.HTTPException as exc:
            raise ProbeFailure('invalid response from %s: %s' % (target.label, type(exc).__name__), True) from exc
        except ssl.SSLError as exc:
            # Alerts after the handshake: a client certificate the server refused, for example.
            raise ProbeFailure('TLS error from %s for %s: %s' % (where, target.label, exc.reason or exc), False) from exc
        except OSError as exc:
            raise ProbeFailure('connection to %s failed during the request for %s: %s' % (where, target.label, exc.strerror or exc), True) from exc
        finally:
            sock.close()
        return Sample(response.status, response.headers, body, (connected - started) * 1000, (handshaken - connected) * 1000,
                      (headers_in - handshaken) * 1000, (done - handshaken) * 1000, (done - started) * 1000)

    def _handshake(self, sock, target, where):
        try:
            return self.cfg.ssl_context.wrap_socket(sock, server_hostname=target.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
                names = self._certificate_names(target)
                raise ProbeFailure('certificate for %s does not match %s' % (names, target.host), False) from exc
            raise ProbeFailure('certificate of %s for %s is not valid: %s' % (where, target.host, exc.verify_message), False) from exc
        except (ssl.SSLEOFError, ConnectionResetError) as exc:
            sock.close()
            raise ProbeFailure('connection closed by %s during the TLS handshake' % where, True) from exc
        except TimeoutError as exc:
            sock.close()
            raise ProbeFailure('no TLS handshake with %s within the timeout' % where, True) from exc
        except ssl.SSLError as exc:
            sock.close()
            raise ProbeFailure('TLS handshake with %s for %s failed: %s' % (where, target.host, exc.reason or exc), False) from exc
        except OSError as exc:
            sock.close()
            raise ProbeFailure('TLS handshake with %s failed: %s' % (where, exc.strerror or exc), True) from exc

    def _certificate_names(self, target):
        """The names in the server's (trusted) certificate, for the mismatch message."""
        try:
            with socket.create_connection((self.cfg.address, self._port(target)), timeout=5) as raw:
                with self.cfg.check_context.wrap_socket(raw, server_hostname=target.host) as tls:
                    cert = tls.getpeercert()
        except (OSError, ssl.SSLError):
            return 'another name'
        names = [value for kind, value in cert.get('subjectAltName', ()) if kind in ('DNS', 'IP Address')]
        if not names:
            names = [value for rdn in cert.get('subject', ()) for key, value in rdn if key == 'commonName']
        return ', '.join(names) or 'another name'

    def check(self, target, sample):
        """Raise ProbeFailure when an answer misses an expectation."""
        cfg = self.cfg
        if sample.status not in cfg.status_codes:
            raise ProbeFailure('status %d from %s' % (sample.status, target.label), sample.status in RETRYABLE_STATUS, status=sample.status)
        for name, pattern, regex in cfg.headers_match:
            value = sample.headers.get(name)
            if value is None:
                raise ProbeFailure('%s is missing, expected %r on %s' % (name, pattern, target.label), False, status=sample.status)
            if not regex.fullmatch(value):
                raise ProbeFailure('%s is %r, expected %r on %s' % (name, value, pattern, target.label), False, status=sample.status)
        if cfg.body_regex is not None:
            text = sample.body.decode('utf-8', errors='replace')
            if not cfg.body_regex.search(text):
                raise ProbeFailure('body from %s does not match %r (%d bytes)' % (target.label, cfg.body_regex.pattern, len(sample.body)), False,
                                   status=sample.status)

    # -- phases ---------------------------------------------------------------

    def run(self):
        """Probe until ready; return the result dict or raise CanaryError."""
        deadline = Deadline(self.cfg.timeout, clock=self._clock)
        self._cold_start(deadline)
        intervals = poll_intervals(*ROUND_BACKOFF)
        workers = min(self.cfg.concurrency, len(self.cfg.targets))
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            last = None
            while True:
                self.rounds += 1
                if executor:
                    outcomes = list(executor.map(lambda t: self._sample(t, deadline), self.cfg.targets))
                else:
                    outcomes = [self._sample(t, deadline) for t in self.cfg.targets]
                problem, cut_by = self._judge(outcomes)
                if problem is None and cut_by is None:
                    return self.result(deadline, ready=True)
                if problem is not None:
                    last = problem
                    if not problem.retryable:
                        raise self._error(problem.reason, deadline)
                if deadline.expired() or cut_by is not None:
                    raise self._error((last or cut_by).reason, deadline)
                self._log('warmup round %d failed: %s' % (self.rounds, problem.reason))
                if not problem.latency:
                    # Latency misses go straight on (sampling is the warming); errors back off.
                    self._sleep(min(next(intervals), max(deadline.remaining(), 0)))
        finally:
            if executor:
                executor.shutdown(wait=True)

    def _cold_start(self, deadline):
        """Retry the first URL until it gives a good answer."""
        target = self.cfg.targets[0]
        if self.cfg.first_request_timeout <= self.cfg.timeout:
            limit, name = self.cfg.first_request_timeout, 'first_request_timeout'
        else:
            limit, name = self.cfg.timeout, 'timeout'
        cold = Deadline(min(limit, deadline.remaining()), clock=self._clock)
        intervals = poll_intervals(*COLD_START_BACKOFF)
        while True:
            self.attempts += 1
            try:
                sample = self.request(target, cold.remaining())
                self.check(target, sample)
            except ProbeFailure as failure:
                if failure.status is not None:
                    self.url_results[0]['status'] = failure.status
                if not failure.retryable:
                    raise self._error(failure.reason, deadline, phase='attempts') from None
                self._log('warmup attempt %d: %s; retrying' % (self.attempts, failure.reason))
                self._sleep(min(next(intervals), max(cold.remaining(), 0)))
                # No attempt without time for an answer: it would only replace the real reason by a timeout.
                if cold.remaining() < MIN_ATTEMPT_TIME:
                    raise self._error('%s until %s %g s ran out' % (failure.reason, name, limit), deadline, phase='attempts') from None
                continue
            self.first_response_ms = _round(sample.total_ms)
            self.url_results[0]['status'] = sample.status
            return

    def _sample(self, target, deadline):
        """One round on one URL: ``samples`` requests, stopping at the first failure."""
        samples = []
        for _index in range(self.cfg.samples):
            if deadline.expired():
                return samples, None, True
            try:
                sample = self.request(target, deadline.remaining())
                samples.append(sample)
                self.check(target, sample)
            except ProbeFailure as failure:
                return samples, failure, failure.retryable and deadline.expired()
        return samples, None, False

    def _judge(self, outcomes):
        """Record a round; return (first problem in URL order, why it was cut short or None).

        A round the deadline cut short keeps the previous round's figures, and
        its failure (a timeout) only counts when nothing else was seen before.
        """
        problem, cut_by = None, None
        for index, (target, (samples, failure, cut)) in enumerate(zip(self.cfg.targets, outcomes, strict=True)):
            if cut:
                cut_by = cut_by or failure or ProbeFailure('no complete round of %d samples' % self.cfg.samples, True)
                if self.url_results[index]['samples_ms']:
                    continue
            result = self._url_result(target, samples)
            self.url_results[index] = result
            if failure is not None:
                if not cut:
                    problem = problem or failure
                continue
            if cut or not samples:
                continue
            value = result[self.cfg.statistic + '_ms']
            if value > self.cfg.latency_threshold_ms:
                reason = '%s %s ms > %g ms on %s' % (self.cfg.statistic, _ms(value), self.cfg.latency_threshold_ms, target.label)
                problem = problem or ProbeFailure(reason, True, latency=True)
        return problem, cut_by

    def _url_result(self, target, samples):
        times = [s.request_ms for s in samples]
        return {
            'url': target.url,
            'status': samples[-1].status if samples else None,
            'samples_ms': [_round(t) for t in times],
            'p50_ms': _round(percentile(times, 50)),
            'p90_ms': _round(percentile(times, 90)),
            'p95_ms': _round(percentile(times, 95)),
            'max_ms': _round(max(times)) if times else None,
            'connect_ms': _round(percentile([s.connect_ms for s in samples], 50)),
            'tls_ms': _round(percentile([s.tls_ms for s in samples], 50)),
        }

    def result(self, deadline, ready):
        return {
            'ready': ready,
            'elapsed': round(deadline.elapsed(), 3),
            'first_response_ms': self.first_response_ms,
            'attempts': self.attempts,
            'rounds': self.rounds,
            'urls': self.url_results,
        }

    def _error(self, reason, deadline, phase='rounds'):
        elapsed = deadline.elapsed()
        if phase == 'attempts':
            suffix = ' after %d attempt%s in %.1f s' % (self.attempts, '' if self.attempts == 1 else 's', elapsed)
        else:
            suffix = ' after %d round%s in %.1f s' % (self.rounds, '' if self.rounds == 1 else 's', elapsed)
        return CanaryError('Failed to warm up %s at %s: %s%s' % (self.what, self.where, reason, suffix), **self.result(deadline, ready=False))


def probe(params, clock=time.monotonic, sleep=time.sleep, log=None):
    """Validate ``params`` (the module's options), then warm and measure.

    Returns ``(result, warnings)``; raises CanaryError with the partial result
    as details when the server is not ready before the deadline.
    """
    config = ProbeConfig(params)
    return WarmupProbe(config, clock=clock, sleep=sleep, log=log).run(), config.warnings
