"""A stand-in for an IIS application behind one server's HTTPS binding.

It records what a client presented (TLS SNI through the context's
``sni_callback``, the ``Host`` header, every request header) and can behave
like a cold application pool: slow first answer, per-request delays and
statuses, the wrong version header, a connection reset or a body cut off
mid-response. ``late_app`` keeps a port refusing connections (bound, not
listening) for a while before the server starts on it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from support.servers import LoopbackServer, QuietHandler, server_tls_context, start


class App:
    """Behaviour and records of one stand-in application.

    ``delay``, ``status`` and ``mode`` may be callables of the request index
    (0 = first request the server ever got) to script a sequence.
    """

    def __init__(self, version='3457', body=b'{"status": "ok"}', delay=0.0, first_delay=0.0, status=200, mode=None,
                 require_header=None):
        self.version = version
        self.body = body
        self.delay = delay
        self.first_delay = first_delay
        self.status = status
        self.mode = mode
        self.require_header = require_header
        self.requests = []
        self.sni = []
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()

    def record_sni(self, _sslobj, server_name, _context):
        with self._lock:
            self.sni.append(server_name)

    @staticmethod
    def _value(setting, index):
        return setting(index) if callable(setting) else setting

    def handle(self, handler):
        length = int(handler.headers.get('Content-Length') or 0)
        payload = handler.rfile.read(length) if length else b''
        with self._lock:
            index = len(self.requests)
            self.requests.append({'method': handler.command, 'path': handler.path, 'host': handler.headers.get('Host'),
                                  'headers': dict(handler.headers.items()), 'body': payload})
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            self._answer(handler, index)
        finally:
            with self._lock:
                self.inflight -= 1

    def _answer(self, handler, index):
        delay = self.first_delay if index == 0 and self.first_delay else self._value(self.delay, index)
        if delay:
            time.sleep(delay)
        mode = self._value(self.mode, index)
        handler.close_connection = True
        if mode == 'reset':
            # Part of the header block, then a TCP reset (SO_LINGER 0).
            handler.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Type: text/pl')
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            handler.connection.close()
            return
        if mode == 'cut':
            # A complete header block promising more body than is sent.
            handler.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n0123456789')
            handler.connection.close()
            return
        status = self._value(self.status, index)
        if self.require_header:
            name, value = self.require_header
            if handler.headers.get(name) != value:
                status = 401
        body = b'' if handler.command == 'HEAD' else self.body
        handler.send_response(status)
        handler.send_header('Content-Type', 'application/json')
        handler.send_header('Content-Length', str(len(self.body)))
        if self.version is not None:
            handler.send_header('X-App-Version', self.version)
        handler.send_header('Connection', 'close')
        handler.end_headers()
        handler.wfile.write(body)


class AppHandler(QuietHandler):
    def do_GET(self):
        self.server.app.handle(self)

    do_HEAD = do_GET
    do_POST = do_GET


def _quiet_errors(_server, _request, _client_address):
    # A client that gives up (its timeout) makes the handler's write fail; that is expected here.
    pass


def _server_class(app):
    return type('AppServer', (LoopbackServer,), {'app': app, 'handle_error': _quiet_errors})


def tls_context(cert_key, app, client_ca=None):
    ctx = server_tls_context(cert_key[0], cert_key[1], client_ca=client_ca)
    ctx.sni_callback = app.record_sni
    return ctx


@contextlib.contextmanager
def serving_app(app, cert_key=None, port=0, client_ca=None):
    """Serve ``app`` on 127.0.0.1 (HTTPS when ``cert_key`` is given); always stopped."""
    ctx = tls_context(cert_key, app, client_ca) if cert_key else None
    running = start(AppHandler, port=port, tls_context=ctx, server_class=_server_class(app))
    try:
        yield running
    finally:
        running.stop()


def reserve_port():
    """A loopback port that refuses connections while the returned socket lives."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(('127.0.0.1', 0))
    return holder, holder.getsockname()[1]


@contextlib.contextmanager
def late_app(app, cert_key, refuse_for):
    """Yield a port that refuses connections for ``refuse_for`` seconds, then serves ``app``."""
    holder, port = reserve_port()
    state = {}

    def go():
        holder.close()
        state['running'] = start(AppHandler, port=port, tls_context=tls_context(cert_key, app),
                                 server_class=_server_class(app))

    timer = threading.Timer(refuse_for, go)
    timer.start()
    try:
        yield port
    finally:
        timer.cancel()
        timer.join()
        holder.close()
        if 'running' in state:
            state['running'].stop()
