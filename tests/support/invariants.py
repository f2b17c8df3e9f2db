"""What must hold after any rollout, whatever went wrong, and the tools to
watch a playbook run while it happens.

- :class:`CapacitySampler` polls the lab's target health every ~100 ms on a
  thread and keeps the lowest number of healthy targets it saw;
- :class:`LivePlaybook` runs ansible-playbook in the background and calls
  back when a task starts on a host (the test callback's progress file), so
  a fault can be injected at the start of a phase, or the controller killed;
- :func:`check_invariants` returns every broken invariant as a sentence
  (an empty list when all hold).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from support.ansible_runner import BIN, AnsibleRun, ansible_env


class CapacitySampler:
    """Counts the targets the load balancer may route to, every ``interval`` s."""

    def __init__(self, lab, interval=0.1):
        self.lab = lab
        self.interval = interval
        self.samples = []  # (monotonic time, healthy count)
        self.in_service = []  # registered and not draining, whatever the health checks say
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='capacity-sampler', daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                count = len(self.lab.routable())
                in_service = sum(1 for arn, _target in self.lab.registered_targets() if arn == self.lab.group_arn)
            except Exception:  # pylint: disable=broad-except  # moto mid-change: count the failure, sample again
                self.errors += 1
            else:
                self.samples.append((time.monotonic(), count))
                self.in_service.append(in_service)
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def minimum(self):
        return min((count for _t, count in self.samples), default=None)

    def low_spells(self, floor):
        """(start, seconds) of each spell with fewer than ``floor`` healthy targets."""
        spells, start = [], None
        for moment, count in self.samples:
            if count < floor and start is None:
                start = moment
            elif count >= floor and start is not None:
                spells.append((start, moment - start))
                start = None
        if start is not None:
            spells.append((start, self.samples[-1][0] - start))
        return spells


class LivePlaybook:
    """ansible-playbook in the background, with callbacks on task starts.

    ``on_task_start(host, task_suffix, action)`` runs ``action()`` once, on
    the tailing thread, the first time a task whose name ends with
    ``task_suffix`` starts on ``host``. ``kill()`` sends SIGKILL to the whole
    process group (the controller and its workers), like a lost CI agent.
    """

    def __init__(self, playbook, inventory, args=(), workdir=None, env=None):
        self.cmd = [str(BIN / 'ansible-playbook'), str(playbook), '-i', str(inventory)] + list(args)
        self._tmp = tempfile.TemporaryDirectory(prefix='canary-live-', dir=workdir)
        tmp = Path(self._tmp.name)
        self.results_path = tmp / 'results.jsonl'
        self.progress_path = tmp / 'progress.jsonl'
        self.stdout_path = tmp / 'stdout.txt'
        self.stderr_path = tmp / 'stderr.txt'
        self.env = ansible_env(dict(env or {}, CANARY_RESULTS_FILE=str(self.results_path), CANARY_PROGRESS_FILE=str(self.progress_path)))
        self.started = []  # (host, task, time) in order
        self.errors = []
        self._hooks = []  # [host, suffix, action, fired]
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.proc = None
        self._tail = threading.Thread(target=self._follow, name='playbook-progress', daemon=True)

    def on_task_start(self, host, task_suffix, action):
        with self._lock:
            self._hooks.append([host, task_suffix, action, False])

    def start(self):
        self.progress_path.touch()
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=err, start_new_session=True)  # pylint: disable=consider-using-with
        self._tail.start()
        return self

    def _follow(self):
        with open(self.progress_path, encoding='utf-8') as handle:
            buffer = ''
            while True:
                chunk = handle.read()
                if chunk:
                    buffer += chunk
                    while '\n' in buffer:
                        line, buffer = buffer.split('\n', 1)
                        if line.strip():
                            self._started(json.loads(line))
                    continue
                if self._done.is_set():
                    return
                time.sleep(0.02)

    def _started(self, record):
        self.started.append((record['host'], record['task'], record['time']))
        with self._lock:
            due = [hook for hook in self._hooks if not hook[3] and hook[0] == record['host'] and record['task'].endswith(hook[1])]
            for hook in due:
                hook[3] = True
        for hook in due:
            try:
                hook[2]()
            except Exception as exc:  # pylint: disable=broad-except  # reported with the run, never lost
                self.errors.append('%s: %r' % (hook[1], exc))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout=600):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait(30)
        # Let the tail read what was written last, then stop it.
        time.sleep(0.1)
        self._done.set()
        self._tail.join(5)
        records = []
        if self.results_path.exists():
            records = [json.loads(line) for line in self.results_path.read_text(encoding='utf-8').splitlines() if line.strip()]
        run = AnsibleRun(rc, self.stdout_path.read_text(encoding='utf-8', errors='replace'),
                         self.stderr_path.read_text(encoding='utf-8', errors='replace'), records)
        self._tmp.cleanup()
        return run

    def phase_started(self, host, task_suffix):
        return any(h == host and t.endswith(task_suffix) for h, t, _moment in self.started)


def run_events(lab, run_id, index='deploy-events*'):
    """The deploy events of one run in the lab's Elasticsearch, as (phase, host) pairs."""
    body = json.dumps({'size': 1000, 'query': {'term': {'run_id': run_id}}}).encode()
    request = urllib.request.Request('%s/%s/_search' % (lab.es.url, index), data=body, headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=10) as answer:
        found = json.loads(answer.read())
    return sorted((hit['_source'].get('phase'), hit['_source'].get('host') or '') for hit in found['hits']['hits'])


def fleet_state(lab, settle=10.0):
    """Each host's running sites and target states, once every target is
    healthy or after ``settle`` seconds (the health checker needs a moment)."""
    deadline = time.monotonic() + settle
    while True:
        state = lab.state()['hosts']
        healthy = all(set(h['target_state'].values()) == {'healthy'} for h in state.values())
        if healthy or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def check_fleet(lab, site=None, settle=10.0):
    """Broken fleet invariants as sentences: every host runs exactly one app
    site, the same one (``site`` when given), registered and healthy."""
    state = fleet_state(lab, settle)
    problems = []
    sites = {name: tuple(h['running']) for name, h in state.items()}
    several = {name: s for name, s in sites.items() if len(s) != 1}
    if several:
        problems.append('hosts not running exactly one app site: %s' % several)
    if len(set(sites.values())) != 1:
        problems.append('hosts on different sites: %s' % sites)
    elif site is not None and set(sites.values()) != {(site,)}:
        problems.append('fleet on %s, expected %s' % (sorted(set(sites.values())), site))
    unhealthy = {name: h['target_state'] for name, h in state.items() if set(h['target_state'].values()) != {'healthy'}}
    if unhealthy:
        problems.append('targets not registered and healthy: %s' % unhealthy)
    return problems


def check_capacity(sampler, floor):
    """The target group never had fewer than ``floor`` healthy targets."""
    if not sampler.samples:
        return ['the capacity sampler took no sample']
    if sampler.minimum < floor:
        spells = ', '.join('%.1f s' % seconds for _start, seconds in sampler.low_spells(floor))
        return ['healthy targets fell to %d (< rollout_min_healthy=%d) for %s; registered targets never fewer than %d'
                % (sampler.minimum, floor, spells, min(sampler.in_service))]
    return []
