"""ansible-doc renders every module, every inventory plugin and the role, each with all its documented options.

The expected options come from the sources (DOCUMENTATION, the doc fragments
it extends, the role's argument specs), not from ansible-doc itself.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess

import pytest
import yaml

from support.ansible_runner import BIN, ROOT, ansible_env

PLUGIN_DIRS = {'module': 'modules', 'inventory': 'inventory'}
SECTION = re.compile(r'^> (MODULE|INVENTORY|ROLE:?) \*?immune\.canary\.(\w+)\*? ', re.MULTILINE)
ENTRY_POINT = re.compile(r'^ENTRY POINT: \*(\w+)\*', re.MULTILINE)
OPTION = re.compile(r'^[-=] (\w+)\s', re.MULTILINE)


def plugin_names(kind):
    return sorted(p.stem for p in (ROOT / 'plugins' / PLUGIN_DIRS[kind]).glob('*.py') if not p.name.startswith('_'))


def documentation(path):
    """The DOCUMENTATION of a plugin file, read without importing it."""
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError('no DOCUMENTATION in %s' % path)


def fragment_options(name):
    """Options of a doc fragment named as in extends_documentation_fragment."""
    parts = name.split('.')
    if parts[:2] == ['ansible', 'builtin']:
        module, attribute = 'ansible.plugins.doc_fragments.' + parts[2], (parts[3:] or ['documentation'])[0]
    else:
        module, attribute = 'ansible_collections.%s.%s.plugins.doc_fragments.%s' % tuple(parts[:3]), (parts[3:] or ['documentation'])[0]
    fragment = importlib.import_module(module).ModuleDocFragment
    return set((yaml.safe_load(getattr(fragment, attribute.upper())) or {}).get('options') or {})


def expected_options(kind, name):
    doc = documentation(ROOT / 'plugins' / PLUGIN_DIRS[kind] / ('%s.py' % name))
    options = set(doc.get('options') or {})
    for fragment in doc.get('extends_documentation_fragment') or []:
        options |= fragment_options(fragment)
    return options


def sections(text, pattern):
    """Split rendered text into {name: section text} at each header."""
    found = list(pattern.finditer(text))
    return {m.group(m.lastindex): text[m.start():found[i + 1].start() if i + 1 < len(found) else len(text)] for i, m in enumerate(found)}


def rendered_options(section):
    """Option names of the OPTIONS block of one rendered section (top level only)."""
    block = re.split(r'^(?:OPTIONS|Options) \(= indicates it is required\):$', section, maxsplit=1, flags=re.MULTILINE)
    assert len(block) == 2, section[:500]
    body = re.split(r'^[A-Z][A-Z ]+:', block[1], maxsplit=1, flags=re.MULTILINE)[0]
    return set(OPTION.findall(body))


def ansible_doc(*args):
    proc = subprocess.run([str(BIN / 'ansible-doc'), *args], capture_output=True, text=True, timeout=300, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    # ansible-core 2.21 warns about a collection of its own (ansible._protomatter); only ours count here.
    ours = [line for line in proc.stderr.splitlines() if '/ansible/_internal/ansible_collections/' not in line]
    assert not any('[ERROR]' in line or 'WARNING' in line for line in ours), proc.stderr
    return proc.stdout


def test_there_is_something_to_render():
    assert 'alb_target' in plugin_names('module')
    assert plugin_names('inventory') == ['target_group']


@pytest.mark.parametrize('kind', sorted(PLUGIN_DIRS))
def test_every_plugin_renders_with_all_its_options(kind):
    names = plugin_names(kind)
    text = ansible_doc('-t', kind, *['immune.canary.' + n for n in names])
    rendered = sections(text, SECTION)
    assert sorted(rendered) == names
    for name in names:
        expected = expected_options(kind, name)
        assert expected, name
        assert rendered_options(rendered[name]) == expected, name


def test_the_role_renders_every_entry_point_with_all_its_options():
    specs = yaml.safe_load((ROOT / 'roles' / 'rollout' / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))['argument_specs']
    text = ansible_doc('-t', 'role', 'immune.canary.rollout')
    assert text.startswith('> ROLE: *immune.canary.rollout*')
    rendered = sections(text, ENTRY_POINT)
    assert sorted(rendered) == sorted(specs)
    for entry_point, spec in specs.items():
        assert rendered_options(rendered[entry_point]) == set(spec.get('options') or {}), entry_point
