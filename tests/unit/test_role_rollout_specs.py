"""meta/argument_specs.yml mirrors defaults/main.yml: every default is
documented with the same value, and every documented option without a
default is required."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / 'roles' / 'rollout'
DEFAULTS = yaml.safe_load((ROLE / 'defaults' / 'main.yml').read_text())
SPECS = yaml.safe_load((ROLE / 'meta' / 'argument_specs.yml').read_text())['argument_specs']
MAIN = SPECS['main']['options']


def test_every_default_is_documented_with_the_same_value():
    assert sorted(set(DEFAULTS) - set(MAIN)) == []
    mismatched = {k: (DEFAULTS[k], MAIN[k].get('default')) for k in DEFAULTS if DEFAULTS[k] != MAIN[k].get('default')
                  and not (DEFAULTS[k] is None and 'default' not in MAIN[k])}
    assert mismatched == {}


def test_options_without_a_default_are_required():
    assert sorted(k for k, v in MAIN.items() if k not in DEFAULTS and not v.get('required')) == []
    assert sorted(k for k, v in MAIN.items() if v.get('required')) == [
        'rollout_app', 'rollout_es_hosts', 'rollout_package_checksum', 'rollout_package_url', 'rollout_target_groups', 'rollout_version']


@pytest.mark.parametrize('entry', sorted(SPECS))
def test_every_entry_point_has_a_task_file_and_public_options_only(entry):
    assert (ROLE / 'tasks' / ('%s.yml' % entry)).is_file()
    options = SPECS[entry]['options']
    assert all(name.startswith(('rollout_', 'rollback_')) for name in options)
    for name, spec in options.items():
        assert spec.get('description'), name
        assert spec.get('type'), name
        if name in MAIN:
            # An option the deploy requires may be optional elsewhere (the package, for a rollback).
            assert {k: v for k, v in spec.items() if k != 'required'} == {k: v for k, v in MAIN[name].items() if k != 'required'}, name


def test_role_variables_are_prefixed():
    internals = yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text())
    assert all(name.startswith('__rollout_') for name in internals)
    assert all(name.startswith('rollout_') for name in DEFAULTS)
