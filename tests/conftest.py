"""Make the collection importable as ansible_collections.immune.canary.

The checkout is mirrored into .build/ansible_collections/immune/canary before
any test runs, so tests always exercise the current source.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT / 'tests'))

import build_collection  # noqa: E402

build_collection.sync()
sys.path.insert(0, str(ROOT / '.build'))
