"""The collection as users get it: the tarball `ansible-galaxy collection build` makes."""

from __future__ import annotations

import pytest
from collection_build import ROOT, build_tarball


@pytest.fixture(scope='session')
def collection_tarball(tmp_path_factory):
    return build_tarball(ROOT, tmp_path_factory.mktemp('dist'))
