"""The tarball, installed with `ansible-galaxy collection install` into a
fresh path, runs the lab demo by itself: nothing comes from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys

from collection_build import BIN, ROOT


def test_the_installed_collection_runs_the_lab_demo(collection_tarball, tmp_path):
    installed = tmp_path / 'collections'
    done = subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(installed), str(collection_tarball)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    collection = installed / 'ansible_collections' / 'immune' / 'canary'
    assert (collection / 'playbooks' / 'deploy.yml').is_file()
    assert (collection / 'MANIFEST.json').is_file()

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed))
    lab = tmp_path / 'lab'
    try:
        demo = subprocess.run([sys.executable, str(ROOT / 'tests' / 'lab' / 'demo.py'), '--quick', '--hosts', '2', '--network', '127.0.42',
                               '--dir', str(lab), '--collections-path', str(installed)],
                              capture_output=True, text=True, env=env, check=False, timeout=1800)
    finally:
        # The demo stops its lab itself, unless it was killed on the timeout.
        subprocess.run([sys.executable, str(ROOT / 'tests' / 'lab' / 'labctl.py'), 'down', '--dir', str(lab)], capture_output=True, check=False)
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-6000:]
    # The playbooks and role ran from the installed copy, never from the checkout or its mirror.
    assert str(collection / 'roles' / 'rollout' / 'tasks') in out
    assert str(ROOT / '.build') not in out and str(ROOT / 'playbooks') not in out
    assert 'The demo behaved as designed.' in out
