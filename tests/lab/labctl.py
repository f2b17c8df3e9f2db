"""labctl: start, inspect, fault and stop the immune.canary lab.

Every subcommand prints one JSON object on stdout and exits 0 on success.
See tests/lab/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DIR = ROOT / '.lab'
FAULTS = ('es-down', 'winrm-down', 'site-crash', 'health-fail', 'swap-fail', 'aws-throttle', 'alarm', 'asg-replace', 'scale-out')


class LabError(Exception):
    pass


def _info(directory):
    path = Path(directory) / 'lab.json'
    if not path.exists():
        raise LabError('no lab is running in %s (run: labctl up --dir %s)' % (directory, directory))
    return json.loads(path.read_text(encoding='utf-8'))


def _call(directory, method, path, payload=None, timeout=120):
    info = _info(directory)
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(info['control_url'] + path, data=data, method=method, headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise LabError(json.loads(exc.read() or b'{}').get('error') or str(exc)) from exc


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def up(args):
    directory = Path(args.dir)
    if (directory / 'lab.json').exists() and _alive(_info(directory)['pid']):
        raise LabError('a lab is already running in %s (labctl down --dir %s)' % (directory, directory))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ('lab.json', 'labd.error'):
        (directory / stale).unlink(missing_ok=True)
    log = open(directory / 'labd.log', 'wb')  # noqa: SIM115 - handed to the daemon
    proc = subprocess.Popen([sys.executable, str(HERE / 'labd.py'), '--dir', str(directory), '--hosts', str(args.hosts),
                             '--drain-seconds', str(args.drain_seconds), '--cold-start', str(args.cold_start), '--network', args.network],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT))
    deadline = time.monotonic() + args.timeout
    while not (directory / 'lab.json').exists():
        if proc.poll() is not None:
            error = directory / 'labd.error'
            raise LabError('the lab failed to start:\n%s' % (error.read_text() if error.exists() else (directory / 'labd.log').read_text()))
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise LabError('the lab did not start within %s s; see %s' % (args.timeout, directory / 'labd.log'))
        time.sleep(0.1)
    return _info(directory)


def down(args):
    directory = Path(args.dir)
    try:
        info = _info(directory)
    except LabError:
        return {'stopped': False, 'reason': 'no lab running in %s' % directory}
    pid = info['pid']
    try:
        _call(directory, 'POST', '/shutdown', {}, timeout=10)
    except (LabError, OSError):
        pass
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    (directory / 'lab.json').unlink(missing_ok=True)
    return {'stopped': True, 'pid': pid}


def build(args):
    behaviour = {
        'version': args.version,
        'error_rate': args.error_rate,
        'error_pattern': args.error_pattern,
        'latency_ms': args.latency_ms,
        'cold_start_s': args.cold_start_s,
        'host_latency_ms': {host: float(ms) for host, ms in args.slow_host or []},
    }
    return _call(args.dir, 'POST', '/build', behaviour)


def traffic(args):
    if args.action == 'start':
        return _call(args.dir, 'POST', '/traffic/start', {'rps': args.rps})
    if args.action == 'stop':
        return _call(args.dir, 'POST', '/traffic/stop', {})
    _call(args.dir, 'POST', '/traffic/start', {'rps': args.rps})
    time.sleep(args.seconds)
    return _call(args.dir, 'POST', '/traffic/stop', {})


def main(argv=None):
    parser = argparse.ArgumentParser(prog='labctl', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)

    def command(name, func, **kwargs):
        p = sub.add_parser(name, **kwargs)
        p.add_argument('--dir', default=str(DEFAULT_DIR), help='lab folder (default: %(default)s)')
        p.set_defaults(func=func)
        return p

    p = command('up', up, help='start the lab; every host on version 1, registered and healthy')
    p.add_argument('--hosts', type=int, default=3)
    p.add_argument('--drain-seconds', type=float, default=2.0, help='target group deregistration delay')
    p.add_argument('--cold-start', type=float, default=2.0, help='default cold start of a site (seconds)')
    p.add_argument('--network', default='127.0.10', help='hosts get <network>.11, .12, ... (loopback only)')
    p.add_argument('--timeout', type=float, default=120)
    command('down', down, help='stop everything the lab started')
    command('state', lambda a: _call(a.dir, 'GET', '/state'), help='sites, target states and routing per host')
    p = command('build', build, help='build a release package; prints its url and checksum')
    p.add_argument('version')
    p.add_argument('--error-rate', type=float)
    p.add_argument('--error-pattern', choices=('even', 'random'),
                   help='even: exactly the error rate in any run of requests (default); random: each request on its own')
    p.add_argument('--latency-ms', type=float)
    p.add_argument('--cold-start-s', type=float)
    p.add_argument('--slow-host', nargs=2, action='append', metavar=('HOST', 'MS'), type=str,
                   help='this host serves the build with its own latency (repeatable)')
    p = command('traffic', traffic, help='customer traffic through the ALB data plane')
    p.add_argument('action', nargs='?', choices=('run', 'start', 'stop'), default='run')
    p.add_argument('--rps', type=float, default=20)
    p.add_argument('--seconds', type=float, default=10)
    p = command('fault', lambda a: _call(a.dir, 'POST', '/fault', dict({'name': a.name, 'host': a.host, 'off': a.off},
                                                                       **({'alarm': a.alarm} if a.alarm else {}))),
                help='switch a fault on or off')
    p.add_argument('name', choices=FAULTS)
    p.add_argument('alarm', nargs='?', help='for the alarm fault: the alarm that goes to ALARM (OK with --off)')
    p.add_argument('--host')
    p.add_argument('--off', action='store_true')
    args = parser.parse_args(argv)
    try:
        print(json.dumps(args.func(args), indent=2))
    except LabError as exc:
        print(json.dumps({'failed': True, 'msg': str(exc)}))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
