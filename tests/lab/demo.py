"""make demo: the lab, a good release promoted everywhere, a bad one caught.

Exits 0 when everything behaved as designed: version 2 promoted on every host
with no failed customer request, version 3 (20 % errors) failing the gate on
the canary, reverted, the rollout stopped with a non-zero exit code and every
host back on version 2.

    demo.py [--dir DIR] [--hosts N] [--network 127.0.10] [--quick] [--collections-path PATH]

``--collections-path`` runs the playbooks of the collection installed there
(``ansible-playbook immune.canary.deploy``, nothing from this checkout), as
`make package-test` does with the tarball `ansible-galaxy collection build`
makes. ``--quick`` shortens the bake and the warm-up so the demo takes about
a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABCTL = [sys.executable, str(ROOT / 'tests' / 'lab' / 'labctl.py')]
LAB_DIR = ROOT / '.lab' / 'demo'
# --quick: short physical waits, the same decisions.
QUICK = {
    'rollout_bake_seconds': 6, 'rollout_gate_interval': 1.5, 'rollout_warmup_samples': 4,
    'rollout_metrics': [
        {'name': 'errors', 'kind': 'error_rate', 'max': 0.05, 'max_ratio': 2, 'min_samples': 10},
        {'name': 'p95', 'kind': 'latency', 'percentile': 95, 'max_ms': 1000, 'max_ratio': 3, 'min_samples': 10},
    ],
}


class Options:
    lab_dir = LAB_DIR
    quick = False
    collections_path = None


def labctl(*args):
    out = subprocess.run(LABCTL + list(args) + ['--dir', str(Options.lab_dir)], capture_output=True, text=True, check=False)
    data = json.loads(out.stdout or '{}')
    if out.returncode != 0:
        raise SystemExit('labctl %s failed: %s' % (' '.join(args), data.get('msg') or out.stderr))
    return data


def banner(text):
    print('\n' + '=' * 78 + '\n' + text + '\n' + '=' * 78, flush=True)


def deploy(version, build_args, tmp):
    build = labctl('build', version, *build_args)
    variables = Path(tmp) / ('v%s.json' % version)
    report = Path(tmp) / ('report-%s.json' % version)
    variables.write_text(json.dumps(dict({
        'rollout_version': version, 'rollout_package_url': build['url'], 'rollout_package_checksum': build['checksum'],
        'rollout_bake_seconds': 15, 'rollout_gate_interval': 3, 'rollout_report_path': str(report),
    }, **(QUICK if Options.quick else {}))), encoding='utf-8')
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_DISPLAY_SKIPPED_HOSTS='false', ANSIBLE_NOCOLOR='1')
    playbook = str(ROOT / 'playbooks' / 'deploy.yml')
    if Options.collections_path:
        # Only the installed collection: a configuration that names nothing in this checkout.
        config = Path(tmp) / 'ansible.cfg'
        config.write_text('[defaults]\ncollections_path = %s\ninterpreter_python = auto_silent\n' % Options.collections_path, encoding='utf-8')
        env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_COLLECTIONS_PATH=str(Options.collections_path))
        playbook = 'immune.canary.deploy'
    labctl('traffic', 'start', '--rps', '30')
    try:
        rc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), playbook,
                             '-i', str(Options.lab_dir / 'inventory.yml'), '-e', '@%s' % (Options.lab_dir / 'vars.yml'), '-e', '@%s' % variables],
                            env=env, cwd=tmp, check=False).returncode
    finally:
        customers = labctl('traffic', 'stop')
    return rc, customers, json.loads(report.read_text()) if report.exists() else {}


def show(title, rc, customers, report):
    print('\n%s: ansible-playbook exit code %d, result %s' % (title, rc, report.get('result')))
    for host, entry in sorted(report.get('hosts', {}).items()):
        reason = '(%s)' % ' '.join(entry['reason'].split())[:110] if entry.get('reason') else ''
        print('  %-6s %-12s %s %s' % (host, entry.get('outcome'), entry.get('site', ''), reason))
    print('  customers: %d requests, %d failed, p50 %s ms, p99 %s ms, longest failure %.1f s'
          % (customers['requests'], customers['failures'], customers['p50_ms'], customers['p99_ms'], customers['longest_failure_s']))


def fleet():
    state = labctl('state')
    for host, entry in sorted(state['hosts'].items()):
        print('  %-6s running %-22s target %s' % (host, ', '.join(entry['running']) or '-', entry['target_state']))
    return state


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--dir', type=Path, default=LAB_DIR, help='lab folder (default: %(default)s)')
    parser.add_argument('--hosts', type=int, default=3)
    parser.add_argument('--network', default='127.0.10', help='hosts get <network>.11, .12, ... (default: %(default)s)')
    parser.add_argument('--quick', action='store_true', help='short bake and warm-up')
    parser.add_argument('--collections-path', type=Path, help='run the collection installed under this path instead of the checkout')
    args = parser.parse_args(argv)
    Options.lab_dir = args.dir.resolve()
    Options.quick = args.quick
    Options.collections_path = args.collections_path.resolve() if args.collections_path else None
    return args


def main(argv=None):
    args = parse_args(argv)
    banner('Starting the lab: %d hosts on version 1 behind the ALB, Elasticsearch, artifacts%s'
           % (args.hosts, '' if not Options.collections_path else '; the collection installed in %s' % Options.collections_path))
    labctl('down')
    labctl('up', '--hosts', str(args.hosts), '--cold-start', '1' if args.quick else '3', '--network', args.network)
    ok = True
    try:
        fleet()
        with tempfile.TemporaryDirectory(prefix='canary-demo-') as tmp:
            banner('Deploying version 2 (a good build) while customers send 30 requests/s')
            good = deploy('2', [], tmp)
            banner('Deploying version 3 (20 % of its requests fail) while customers send 30 requests/s')
            bad = deploy('3', ['--error-rate', '0.2'], tmp)
        banner('What happened')
        show('Version 2', *good)
        show('Version 3', *bad)
        print('\nThe fleet now:')
        state = fleet()
        running = {tuple(h['running']) for h in state['hosts'].values()}
        checks = {
            'version 2 promoted on every host': good[0] == 0 and {e.get('outcome') for e in good[2].get('hosts', {}).values()} == {'promoted'},
            'no customer request failed during the good rollout': good[1]['failures'] == 0,
            'version 3 stopped with a non-zero exit code': bad[0] != 0 and bad[2].get('result') == 'aborted',
            'every host back on version 2, registered and healthy': running == {('app.example.com-2',)}
            and all(set(h['target_state'].values()) == {'healthy'} for h in state['hosts'].values()),
        }
        print()
        for text, passed in checks.items():
            print('  [%s] %s' % ('ok' if passed else 'FAILED', text))
        ok = all(checks.values())
    finally:
        labctl('down')
    print('\nThe demo %s.' % ('behaved as designed' if ok else 'did NOT behave as designed'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
