"""Paths and the tarball build shared by the packaging tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text())


def build_tarball(source, output):
    """Build the collection in ``source`` into ``output``; return the tarball's path."""
    done = subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'build', '--force', '--output-path', str(output), str(source)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    tarball = Path(output) / ('%s-%s-%s.tar.gz' % (GALAXY['namespace'], GALAXY['name'], GALAXY['version']))
    assert tarball.is_file(), done.stdout
    return tarball
