"""Helpers for the end-to-end tests: playbook runs against the lab with traffic."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from lab.fleet import Lab
from lab.traffic import Traffic
from support.ansible_runner import run_playbook
from support.servers import QuietHandler, start

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / 'playbooks'

# Short physical waits so a scenario takes seconds, not minutes.
FAST = {
    'rollout_bake_seconds': 6,
    'rollout_gate_interval': 1.5,
    'rollout_warmup_samples': 4,
    'rollout_warmup_timeout': 20,
    'rollout_warmup_first_request_timeout': 15,
    'rollout_capacity_delay': 1,
    'rollout_metrics': [
        {'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'max_ratio': 2, 'min_samples': 10},
        {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 1000, 'max_ratio': 3, 'min_samples': 10},
    ],
}


# Customers' requests per second while a scenario runs: enough for every
# canary to pass min_samples within the bake, and for the gate to be sure of
# a 20 % error rate within a 6 s bake on 2 hosts (10 was not); each one costs the lab about
# 12 ms of CPU (two TLS handshakes, two hops, an indexed log document).
CUSTOMER_RPS = 15


def start_lab(directory, hosts, network, region='eu-west-1'):
    lab = Lab(directory, hosts=hosts, drain_seconds=1, cold_start_s=0.5, health_interval=0.2, network=network, region=region)
    return lab.start()


@contextlib.contextmanager
def running_lab(directory, hosts, network, region='eu-west-1'):
    """A started lab for a ``with`` block (a module fixture's body); stopped after it."""
    lab = start_lab(directory, hosts, network, region=region)
    try:
        yield lab
    finally:
        lab.stop()


class Scenario:
    """One playbook run against a lab, with customer traffic flowing."""

    def __init__(self, lab, tmp_path):
        self.lab = lab
        self.tmp = tmp_path
        self.versions = 0

    def release(self, version, **behaviour):
        build = self.lab.build(str(version), **behaviour)
        return {'rollout_version': str(version), 'rollout_package_url': build['url'], 'rollout_package_checksum': build['checksum']}

    def play(self, playbook, extra=None, args=(), rps=CUSTOMER_RPS, check=False, timeout=600, env=None):
        report = self.tmp / ('report-%d.json' % time.monotonic_ns())
        variables = dict(FAST, rollout_report_path=str(report), **(extra or {}))
        var_file = self.tmp / ('vars-%d.json' % time.monotonic_ns())
        var_file.write_text(json.dumps(variables), encoding='utf-8')
        traffic = Traffic(self.lab.plane.url, rps, self.lab.ca.ca_path, 'app.example.com').start() if rps else None
        try:
            run = run_playbook(PLAYBOOKS / playbook, inventory=self.lab.inventory_path, timeout=timeout, env=env,
                               args=['-e', '@%s' % self.lab.vars_path, '-e', '@%s' % var_file] + (['--check'] if check else []) + list(args))
        finally:
            customers = traffic.stop() if traffic else None
        run.report = json.loads(report.read_text()) if report.exists() else None
        run.customers = customers
        return run


def running(lab):
    return {name: host['running'] for name, host in lab.state()['hosts'].items()}


def assert_fleet_converged(lab, site=None):
    """The invariant after every scenario: every host runs exactly one app
    site, all the same one, registered and healthy in every group."""
    deadline = time.monotonic() + 10
    while True:
        state = lab.state()['hosts']
        sites = {name: tuple(h['running']) for name, h in state.items()}
        healthy = all(set(h['target_state'].values()) == {'healthy'} for h in state.values())
        if healthy or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(len(s) == 1 for s in sites.values()), sites
    assert len(set(sites.values())) == 1, sites
    if site is not None:
        assert set(sites.values()) == {(site,)}, sites
    assert healthy, {name: h['target_state'] for name, h in state.items()}


class WebhookReceiver:
    """A Slack/Teams-like incoming webhook on loopback; keeps every JSON body.
    ``status`` is what it answers a good request with (500: a broken hook)."""

    def __init__(self, token, status=200):
        self.token = token
        self.messages = []
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                if self.path == '/hooks/' + receiver.token:
                    receiver.messages.append(json.loads(body))
                    self.send_response(status)
                else:
                    self.send_response(404)
                self.send_header('Content-Length', '0')
                self.end_headers()

        self.running = start(Handler)
        self.url = '%s/hooks/%s' % (self.running.url, token)

    def stop(self):
        self.running.stop()


class Watcher:
    """Runs ``action`` once, the first time ``condition(lab)`` holds during a run."""

    def __init__(self, lab, condition, action, poll=0.05):
        self.lab, self.condition, self.action, self.poll = lab, condition, action, poll
        self.fired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                if self.condition(self.lab):
                    self.action(self.lab)
                    self.fired.set()
                    return
            except Exception:  # pylint: disable=broad-except  # the lab may be mid-change; look again
                pass
            time.sleep(self.poll)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def outcomes(run):
    """Each host's outcome, from the run's JSON report."""
    return {host: entry.get('outcome') for host, entry in run.report['hosts'].items()}


def applied_scripts(lab, host):
    """How many changing IIS scripts the host has received so far."""
    return sum(1 for _header, _script, doc in lab.hosts[host]['sim'].scripts
               if doc.get('operation') == 'apply' or ('url' in doc and not doc.get('check_mode')))
