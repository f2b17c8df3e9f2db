"""Static checks of every embedded PowerShell script (PowerShell itself
cannot run here): it parses without ERROR or MISSING nodes, every command is
a documented cmdlet or a function of the script, and every -Parameter used
exists for that cmdlet (tests/data/ps_cmdlets.json, from Microsoft's docs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_pwsh

from ansible_collections.immune.canary.plugins.module_utils import _iis_scripts, _winrm

TABLE = json.loads((Path(__file__).resolve().parents[3] / 'data' / 'ps_cmdlets.json').read_text(encoding='utf-8'))
CMDLETS = {name.lower(): spec for name, spec in TABLE['cmdlets'].items()}
COMMON = {p.lower() for p in TABLE['common']}
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_pwsh.language()))

SCRIPTS = dict(_iis_scripts.SCRIPTS, bootstrap=_winrm.BOOTSTRAP)
# The PowerShell a user runs from extras/ (the staging check) is held to the same rules.
EXTRAS = sorted((Path(__file__).resolve().parents[4] / 'extras').rglob('*.ps1'))
SCRIPTS.update({'extras/' + str(p.relative_to(p.parents[1])): p.read_text(encoding='utf-8') for p in EXTRAS})


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def syntax_problems(source):
    tree = PARSER.parse(source.encode('utf-8'))
    return [(n.type, n.start_point, n.text[:60]) for n in walk(tree.root_node) if n.type == 'ERROR' or n.is_missing]


def functions(root):
    found = {}
    for node in walk(root):
        if node.type == 'function_statement':
            name = next(c for c in node.children if c.type == 'function_name').text.decode().lower()
            params = {v.text.decode()[1:].lower() for p in walk(node) if p.type == 'script_parameter'
                      for v in p.children if v.type == 'variable'}
            found[name] = params
    return found


def command_problems(source):
    root = PARSER.parse(source.encode('utf-8')).root_node
    own = functions(root)
    problems, used = [], []
    for node in walk(root):
        if node.type != 'command':
            continue
        name_node = next((c for c in node.children if c.type == 'command_name'), None)
        if name_node is None:  # `& $block ...`
            continue
        name = name_node.text.decode()
        params = [c.text.decode()[1:].rstrip(':').lower() for e in node.children if e.type == 'command_elements'
                  for c in e.children if c.type == 'command_parameter']
        used.append((name, params))
        if name.lower() in own:
            allowed = own[name.lower()]
        elif name.lower() in CMDLETS:
            spec = CMDLETS[name.lower()]
            allowed = {p.lower() for p in spec['params']} | {a.lower() for a in spec.get('param_aliases', {})} | COMMON
        else:
            problems.append('%s: not a documented cmdlet nor a function of the script' % name)
            continue
        problems += ['%s -%s: no such parameter' % (name, p) for p in params if p not in allowed]
    return problems, used


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_script_parses_without_error_or_missing_nodes(name):
    assert syntax_problems(SCRIPTS[name]) == []


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_script_uses_only_documented_cmdlets_and_parameters(name):
    problems, used = command_problems(SCRIPTS[name])
    assert problems == []
    assert used, 'the walk found no command at all'


@pytest.mark.parametrize('source, expected', [
    ('Start-Website -Name $n -Force', ['Start-Website -force: no such parameter']),
    ('Get-FileHash -LiteralPath $p -Algorithm SHA256 -ErrorAction Stop', []),
    ('Remove-Website -Name $n -cf', []),
    ('Frobnicate-Site -Name $n', ['Frobnicate-Site: not a documented cmdlet nor a function of the script']),
    ('function Wait-It { param([int]$Seconds) }\nWait-It -Seconds 1 -Minutes 2', ['Wait-It -minutes: no such parameter']),
])
def test_the_checker_itself_catches_mistakes(source, expected):
    assert command_problems(source)[0] == expected


@pytest.mark.parametrize('source', ['if ($a { }', 'function F {', '$x = @(1, 2'])
def test_the_syntax_check_itself_catches_broken_code(source):
    assert syntax_problems(source) != []


def test_every_script_starts_with_its_header_and_takes_one_argument():
    assert _iis_scripts.SITE_SWAP.splitlines()[0] == '# immune.canary:iis_site_swap/2'
    assert _iis_scripts.PACKAGE.splitlines()[0] == '# immune.canary:iis_package/1'
    for script in _iis_scripts.SCRIPTS.values():
        assert script.splitlines()[1] == 'param([string]$InputB64)'


def test_the_staging_check_is_among_the_checked_scripts():
    assert 'extras/iis/Compare-IISSite.ps1' in SCRIPTS


def test_bootstrap_fits_a_command_line():
    # Windows limits a command line to 8191 characters; only the bootstrap travels there.
    assert len(_winrm.encode_command(_winrm.BOOTSTRAP)) < 2000
