from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from support.servers import QuietHandler, server_tls_context, serving
from support.tls import TestCA


class Hello(QuietHandler):
    def do_GET(self):
        body = ('hello %s' % self.headers.get('Host')).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_https_server_serves_with_test_ca_and_stops(tmp_path):
    ca = TestCA(tmp_path)
    cert, key = ca.issue(['app.example.com', '127.0.0.1'])
    with serving(Hello, tls_context=server_tls_context(cert, key)) as srv:
        ctx = ssl.create_default_context(cafile=str(ca.ca_path))
        conn = http.client.HTTPSConnection('127.0.0.1', srv.port, context=ctx, timeout=5)
        conn.request('GET', '/', headers={'Host': 'app.example.com'})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'hello app.example.com')
        conn.close()
        port = srv.port
    with pytest.raises(OSError), socket.create_connection(('127.0.0.1', port), timeout=1):
        pass
