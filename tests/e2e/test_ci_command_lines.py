"""The documented CI command lines, run as Jenkins and Octopus run them,
against the lab: the Jenkinsfile's deploy step (the README's command) and
the Octopus script step. Exit codes, the JSON report and the JUnit report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.traffic import Traffic
from support.ansible_runner import ansible_env
from support.e2e import CUSTOMER_RPS, FAST, ROOT, assert_fleet_converged, running_lab

JENKINSFILE = ROOT / 'extras' / 'jenkins' / 'Jenkinsfile'
OCTOPUS = ROOT / 'extras' / 'octopus' / 'deploy.sh'


def jenkins_deploy_command():
    """The shell script of the Jenkinsfile's Deploy stage, as Jenkins hands it to sh."""
    text = JENKINSFILE.read_text()
    block = re.search(r"// deploy-command:[^\n]*\n\s*sh '''\n(.*?)'''", text, re.S)
    assert block, 'the Deploy stage of the Jenkinsfile has no marked sh step'
    return block.group(1)


def _normalised(text):
    return ' '.join(text.replace('\\\n', ' ').split())


def test_the_readme_documents_the_jenkinsfile_command():
    command = jenkins_deploy_command()
    playbook = [line for line in command.splitlines() if 'ansible-playbook' in line]
    start = command.index(playbook[0].strip())
    assert _normalised(command[start:]) in _normalised((ROOT / 'README.md').read_text())


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-ci'), 2, '127.0.41', region='ap-south-1') as lab:
        yield lab


def _workspace(lab, tmp_path):
    """A CI workspace: the application's variables file and a .venv with ansible-playbook."""
    (tmp_path / '.venv').symlink_to(Path(sys.executable).parent.parent)
    variables = dict(json.loads(lab.vars_path.read_text()), **{k: v for k, v in FAST.items() if k != 'rollout_bake_seconds'})
    (tmp_path / 'app.json').write_text(json.dumps(variables), encoding='utf-8')
    return tmp_path


def _run(lab, script, env, cwd):
    traffic = Traffic(lab.plane.url, CUSTOMER_RPS, lab.ca.ca_path, 'app.example.com').start()
    try:
        done = subprocess.run(['bash', '-c', script], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900)
    finally:
        customers = traffic.stop()
    return done, customers


def _junit(path):
    suite = ET.parse(path).getroot().find('testsuite')
    verdicts = {}
    for case in suite.findall('testcase'):
        tags = [child.tag for child in case if child.tag in ('failure', 'error', 'skipped')]
        verdicts[case.get('name')] = tags[0] if tags else 'passed'
    return suite, verdicts


def test_jenkins_promotes_a_good_release_with_exit_0_and_a_passing_junit_report(lab, tmp_path):
    work = _workspace(lab, tmp_path)
    build = lab.build('2')
    env = ansible_env({'INVENTORY': str(lab.inventory_path), 'VARS_FILE': str(work / 'app.json'), 'VERSION': '2',
                       'PACKAGE_URL': build['url'], 'PACKAGE_SHA256': build['checksum'].removeprefix('sha256:'),
                       'SERIAL': '1', 'BAKE_SECONDS': '6', 'FORKS': '25', 'ANSIBLE_COLLECTIONS_PATH': str(ROOT / '.build')})
    done, _customers = _run(lab, jenkins_deploy_command(), env, work)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((work / 'rollout-report.json').read_text())
    assert report['result'] == 'promoted'
    suite, verdicts = _junit(work / 'rollout-junit.xml')
    assert verdicts == {'web1': 'passed', 'web2': 'passed'}
    assert (suite.get('tests'), suite.get('failures'), suite.get('errors'), suite.get('skipped')) == ('2', '0', '0', '0')
    assert_fleet_converged(lab, 'app.example.com-2')


def octopus_functions(work, variables):
    """What Octopus provides to a Bash script step: get_octopusvariable (reading ``variables``) and set_octopusvariable."""
    (work / 'octopus.json').write_text(json.dumps(variables), encoding='utf-8')
    return ('get_octopusvariable() { python3 -c "import json,sys; print(json.load(open(\'%s\')).get(sys.argv[1], \'\'))" "$1"; }\n'
            'set_octopusvariable() { echo "##octopus[setVariable name=$1 value=$2]"; }\n' % (work / 'octopus.json'))


def test_octopus_reverts_a_bad_release_with_a_non_zero_exit_and_a_failing_junit_report(lab, tmp_path):
    work = _workspace(lab, tmp_path)
    build = lab.build('3', error_rate=0.3)
    octopus = {'Canary.Inventory': str(lab.inventory_path), 'Canary.VarsFile': str(work / 'app.json'), 'Octopus.Release.Number': '3',
               'Canary.PackageUrl': build['url'], 'Canary.PackageSha256': build['checksum'].removeprefix('sha256:'), 'Canary.BakeSeconds': '6'}
    functions = octopus_functions(work, octopus)
    env = ansible_env({'ANSIBLE_COLLECTIONS_PATH': str(ROOT / '.build'), 'PATH': '%s:%s' % (Path(sys.executable).parent, os.environ['PATH'])})
    done, _customers = _run(lab, functions + 'source %s\n' % OCTOPUS, env, work)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-2000:]
    assert 'Rollout of 3: aborted (ansible-playbook exit code 2)' in done.stdout
    assert '##octopus[setVariable name=RolloutResult value=aborted]' in done.stdout
    report = json.loads((work / 'rollout-report.json').read_text())
    assert report['result'] == 'aborted'
    suite, verdicts = _junit(work / 'rollout-junit.xml')
    assert verdicts == {'web1': 'failure', 'web2': 'skipped'}
    failure = suite.find("testcase[@name='web1']/failure")
    # The JUnit failure carries what the JSON report says about the canary (the gate, or the warm-up on a loaded machine).
    web1 = report['hosts']['web1']
    assert failure.get('type') == 'reverted'
    assert failure.get('message') == 'reverted app.example.com-2: %s: %s' % (web1['failed_step'], ' '.join(web1['reason'].split()))
    assert_fleet_converged(lab, 'app.example.com-2')


def test_octopus_refuses_without_its_variables(tmp_path):
    done = subprocess.run(['bash', str(OCTOPUS)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 5
    assert done.stderr.strip() == "Octopus variable for inventory is empty; set it in the project's variables"


def _octopus_with_a_recording_playbook(tmp_path, variables):
    """Run the Octopus script with an ansible-playbook that records its arguments (and writes no report)."""
    functions = octopus_functions(tmp_path, variables)
    fake = tmp_path / 'bin' / 'ansible-playbook'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%%s\\n" "$@" > %s\nexit 0\n' % (tmp_path / 'argv'), encoding='utf-8')
    fake.chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (fake.parent, os.environ['PATH']))
    done = subprocess.run(['bash', '-c', functions + 'source %s\n' % OCTOPUS], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    argv = (tmp_path / 'argv').read_text().splitlines() if (tmp_path / 'argv').exists() else None
    return done, argv


OCTOPUS_VARIABLES = {'Canary.Inventory': 'inventory/prod.yml', 'Canary.VarsFile': 'vars/app.yml', 'Octopus.Release.Number': '3457',
                     'Canary.PackageUrl': 'https://packages.example.com/app-3457.zip', 'Canary.PackageSha256': 'ab' * 32}


@pytest.mark.parametrize('forks, expected', [(None, '25'), ('40', '40')])
def test_octopus_runs_enough_forks_to_revert_a_fleet_in_parallel(tmp_path, forks, expected):
    variables = dict(OCTOPUS_VARIABLES, **({'Canary.Forks': forks} if forks else {}))
    done, argv = _octopus_with_a_recording_playbook(tmp_path, variables)
    assert done.returncode == 0, done.stderr
    assert argv[argv.index('-f') + 1] == expected
    assert argv[:3] == ['-i', 'inventory/prod.yml', 'immune.canary.deploy'] and 'rollout_version=3457' in argv


@pytest.mark.parametrize('forks', ['0', 'many', '-3', '5 -e x=1'])
def test_octopus_refuses_a_bad_forks_value_before_running_anything(tmp_path, forks):
    done, argv = _octopus_with_a_recording_playbook(tmp_path, dict(OCTOPUS_VARIABLES, **{'Canary.Forks': forks}))
    assert done.returncode == 5 and argv is None
    assert done.stderr.strip() == ("Octopus variable Canary.Forks is '%s'; set it to a whole number of hosts of at least 1 (default 25)"
                                   % forks)
