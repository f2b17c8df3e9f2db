"""The lab daemon: runs a :class:`lab.fleet.Lab` and a JSON control API on
127.0.0.1 until told to shut down. Started by ``labctl up``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / 'tests'), str(ROOT / 'tools')]

import build_collection  # noqa: E402

sys.path.insert(0, str(Path(build_collection.sync()).parents[2]))

from lab.fleet import Lab  # noqa: E402
from support.servers import QuietHandler, start  # noqa: E402


def control_handler(lab, done):
    class Handler(QuietHandler):
        def _reply(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == '/state':
                return self._reply(200, lab.state())
            if self.path == '/describe':
                return self._reply(200, lab.describe())
            return self._reply(404, {'error': 'unknown path %s' % self.path})

        def do_POST(self):
            length = int(self.headers.get('Content-Length') or 0)
            args = json.loads(self.rfile.read(length) or b'{}')
            actions = {
                '/build': lambda: lab.build(**args),
                '/fault': lambda: {'faults': lab.fault(**args)},
                '/traffic/start': lambda: lab.start_traffic(**args),
                '/traffic/stop': lab.stop_traffic,
                '/shutdown': lambda: done.set() or {'stopping': True},
            }
            action = actions.get(self.path)
            if action is None:
                return self._reply(404, {'error': 'unknown path %s' % self.path})
            try:
                return self._reply(200, action())
            except (TypeError, ValueError) as exc:
                return self._reply(400, {'error': str(exc)})

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--dir', required=True)
    parser.add_argument('--hosts', type=int, default=3)
    parser.add_argument('--drain-seconds', type=float, default=2.0)
    parser.add_argument('--cold-start', type=float, default=2.0)
    parser.add_argument('--network', default='127.0.10', help='first three octets of the hosts\' loopback addresses')
    args = parser.parse_args()
    directory = Path(args.dir)
    state_file = directory / 'lab.json'
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    lab = Lab(directory, hosts=args.hosts, drain_seconds=args.drain_seconds, cold_start_s=args.cold_start, network=args.network)
    control = None
    try:
        lab.start()
        control = start(control_handler(lab, done))
        info = dict(lab.describe(), pid=os.getpid(), control_url=control.url)
        tmp = state_file.with_suffix('.tmp')
        tmp.write_text(json.dumps(info, indent=2), encoding='utf-8')
        tmp.replace(state_file)
        done.wait()
    except Exception:  # pylint: disable=broad-except  # the reason goes to labd.log for labctl to show
        (directory / 'labd.error').write_text(traceback.format_exc(), encoding='utf-8')
        raise
    finally:
        if control is not None:
            control.stop()
        lab.stop()
        state_file.unlink(missing_ok=True)


if __name__ == '__main__':
    main()
