"""Run a stdlib HTTP(S) server on loopback in a thread, and stop it."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1, no Nagle delay (else every request stalls
    ~40 ms), no request logging to stderr."""

    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    """Threaded server whose TLS handshake runs in the connection's own thread.

    Wrapping the listening socket would make ``accept()`` do the handshake in
    the one serving thread: under load every new connection then waits for
    the handshakes before it, the 5-entry default backlog overflows and
    clients see SYN retransmits (1 s, 3 s, 7 s) that no real server causes.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    tls_context = None

    def finish_request(self, request, client_address):
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        try:
            request = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a failed handshake is the client's business, as on a real server
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()


def server_tls_context(cert_path, key_path, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_path), str(key_path))
    if client_ca:
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Running:
    """A started server: ``url``, ``port``, ``server`` and ``stop()``."""

    def __init__(self, server, scheme):
        self.server = server
        self.host, self.port = server.server_address[:2]
        self.url = '%s://%s:%d' % (scheme, self.host, self.port)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self._thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def start(handler, host='127.0.0.1', port=0, tls_context=None, server_class=LoopbackServer):
    """Start ``handler`` on host:port (0 = any free port); TLS when a context is given."""
    server = server_class((host, port), handler)
    server.tls_context = tls_context
    return Running(server, 'https' if tls_context is not None else 'http')


@contextlib.contextmanager
def serving(handler, **kwargs):
    """Context manager form of :func:`start`; the server is always stopped."""
    running = start(handler, **kwargs)
    try:
        yield running
    finally:
        running.stop()


def dead_url(scheme='http'):
    """A loopback URL nothing listens on (a port just freed): connection refused."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return '%s://127.0.0.1:%d' % (scheme, port)
