"""Run the collection's modules and playbooks through real ansible-playbook.

Tests use this to prove a module works as users run it (argument spec, check
mode, diff, no_log), not only as Python.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclasses.dataclass
class AnsibleRun:
    rc: int
    stdout: str
    stderr: str
    records: list

    @property
    def result(self):
        """The result of the last task that ran."""
        if not self.records:
            raise AssertionError('no task result recorded; rc=%s\nstdout:\n%s\nstderr:\n%s' % (self.rc, self.stdout, self.stderr))
        return self.records[-1]['result']

    @property
    def failed(self):
        return bool(self.records) and self.records[-1]['status'] == 'failed'

    def results(self, task=None):
        return [r['result'] for r in self.records if task is None or r['task'] == task]


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_CONFIG': str(ROOT / 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': str(ROOT / '.build'),
        'ANSIBLE_CALLBACK_PLUGINS': str(ROOT / 'tests' / 'support' / 'callback_plugins'),
        'ANSIBLE_CALLBACKS_ENABLED': 'canary_results',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'PATH': str(BIN) + os.pathsep + env.get('PATH', ''),
    })
    if extra:
        env.update(extra)
    return env


def run_playbook(playbook, args=(), env=None, timeout=300, inventory=None):
    """Run ansible-playbook on a playbook file; collect every task result."""
    with tempfile.TemporaryDirectory(prefix='canary-run-') as tmp:
        results = Path(tmp) / 'results.jsonl'
        cmd = [str(BIN / 'ansible-playbook'), str(playbook)]
        if inventory:
            cmd += ['-i', str(inventory)]
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=ansible_env(dict(env or {}, CANARY_RESULTS_FILE=str(results))))
        records = []
        if results.exists():
            records = [json.loads(line) for line in results.read_text(encoding='utf-8').splitlines() if line]
        return AnsibleRun(proc.returncode, proc.stdout, proc.stderr, records)


def run_module(module, module_args, check=False, diff=False, verbosity=0, env=None, timeout=300, extra_args=()):
    """Run one immune.canary module on localhost through ansible-playbook."""
    name = module if '.' in module else 'immune.canary.' + module
    play = [{
        'name': 'Run %s' % name,
        'hosts': 'localhost',
        'gather_facts': False,
        'tasks': [{'name': 'Run module', name: module_args}],
    }]
    args = []
    if check:
        args.append('--check')
    if diff:
        args.append('--diff')
    if verbosity:
        args.append('-' + 'v' * verbosity)
    args += list(extra_args)
    with tempfile.TemporaryDirectory(prefix='canary-play-') as tmp:
        playbook = Path(tmp) / 'play.yml'
        # JSON is YAML; values are not templated unless they hold Jinja.
        playbook.write_text(json.dumps(play), encoding='utf-8')
        return run_playbook(playbook, args=args, env=env, timeout=timeout)
