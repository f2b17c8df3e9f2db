"""The lab's artifact server: serves built packages over plain HTTP, as an
Octopus feed, a Jenkins artifact or an S3 pre-signed URL would."""

from __future__ import annotations

import threading
from pathlib import Path

from support.servers import QuietHandler, start


class ArtifactServer:
    def __init__(self, directory, host='127.0.0.1', port=0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.downloads = []
        self._lock = threading.Lock()
        self.running = start(self._handler(), host=host, port=port)
        self.url = self.running.url

    def url_for(self, path):
        return '%s/%s' % (self.url, Path(path).name)

    def _handler(self):
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                name = self.path.split('?', 1)[0].lstrip('/')
                path = server.dir / name
                if '/' in name or not name or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                with server._lock:
                    server.downloads.append(name)
                self.send_response(200)
                self.send_header('Content-Type', 'application/zip')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def stop(self):
        self.running.stop()
