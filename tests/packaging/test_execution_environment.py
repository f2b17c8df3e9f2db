"""execution-environment.yml makes a build context for AWX / Automation
Controller offline (no container runtime), and the collection's own
meta/execution-environment.yml feeds ansible-builder's introspection."""

from __future__ import annotations

import shutil
import subprocess
import tarfile

import pytest
import yaml
from collection_build import BIN, GALAXY, ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

EE = yaml.safe_load((ROOT / 'execution-environment.yml').read_text())


def _requirements(text):
    return {Requirement(line.split('#')[0]).name: Requirement(line.split('#')[0]) for line in text.splitlines()
            if line.split('#')[0].strip() and not line.startswith('-')}


def _bindep(text):
    return [line.split('#')[0].strip() for line in text.splitlines() if line.split('#')[0].strip()]


@pytest.fixture(scope='module')
def context(collection_tarball, tmp_path_factory):
    """The build context of a checkout with the tarball in dist/, as the EE file's header says."""
    work = tmp_path_factory.mktemp('ee')
    for name in ('execution-environment.yml', 'requirements.txt', 'meta/ee-bindep.txt'):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    (work / 'dist').mkdir()
    shutil.copy2(collection_tarball, work / 'dist' / collection_tarball.name)
    done = subprocess.run([str(BIN / 'ansible-builder'), 'create', '--file', str(work / 'execution-environment.yml'),
                           '--context', str(work / 'context'), '--output-filename', 'Containerfile'],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return work / 'context'


def test_the_containerfile_installs_the_newest_core_on_python_3_12_and_the_collection(context):
    containerfile = (context / 'Containerfile').read_text()
    assert 'ARG EE_BASE_IMAGE="docker.io/redhat/ubi9:latest"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.21,<2.22 ansible-runner>=2.4"' in containerfile
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in containerfile
    assert '--user-pip=requirements.txt --user-bindep=bindep.txt' in containerfile


def test_the_pinned_core_is_the_newest_release_the_collection_supports_and_tests():
    pinned = Requirement(EE['dependencies']['ansible_core']['package_pip'])
    required = _requirements((ROOT / 'requirements.txt').read_text())['ansible-core']
    runtime = SpecifierSet(yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text())['requires_ansible'])
    assert pinned.name == 'ansible-core'
    # The newest minor of the supported range, which CI's main test venv installs.
    for version in ('2.21.0', '2.21.5'):
        assert version in pinned.specifier and version in required.specifier and version in runtime, version
    assert '2.20.9' not in pinned.specifier and '2.22.0' not in pinned.specifier and '2.22.0' not in required.specifier
    assert '2.18.0' in required.specifier and '2.18.0' in runtime and '2.17.14' not in runtime
    # The Python of the image runs that ansible-core.
    assert EE['dependencies']['python_interpreter']['python_path'] == '/usr/bin/python3.12'


def test_the_context_carries_the_python_and_system_requirements(context):
    assert _requirements((context / '_build' / 'requirements.txt').read_text()) == _requirements((ROOT / 'requirements.txt').read_text())
    assert _bindep((context / '_build' / 'bindep.txt').read_text()) == _bindep((ROOT / 'meta' / 'ee-bindep.txt').read_text())
    assert set(_requirements((context / '_build' / 'requirements.txt').read_text())) >= {'boto3', 'botocore', 'pywinrm', 'elasticsearch', 'jmespath'}


def test_the_collection_comes_from_the_context_not_from_galaxy(context, collection_tarball):
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert galaxy == {'collections': [{'name': '/build/collections/%s' % collection_tarball.name, 'type': 'file'}]}
    # The galaxy stage copies _build to /build.
    shipped = context / '_build' / 'collections' / collection_tarball.name
    assert shipped.read_bytes() == collection_tarball.read_bytes()
    assert collection_tarball.name == 'immune-canary-%s.tar.gz' % GALAXY['version']


def test_introspection_of_the_installed_collection_finds_its_requirements(context, collection_tarball, tmp_path):
    installed = tmp_path / 'collections'
    with tarfile.open(collection_tarball) as tar:
        tar.extractall(installed / 'ansible_collections' / 'immune' / 'canary', filter='data')
    out_pip, out_bindep = tmp_path / 'pip.txt', tmp_path / 'bindep.txt'
    done = subprocess.run([str(BIN / 'python'), str(context / '_build' / 'scripts' / 'introspect.py'), 'introspect', str(installed),
                           '--write-pip', str(out_pip), '--write-bindep', str(out_bindep)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    pip_lines = out_pip.read_text().splitlines()
    assert all(line.endswith('# from collection immune.canary') for line in pip_lines), pip_lines
    assert _requirements(out_pip.read_text()) == _requirements((ROOT / 'meta' / 'ee-requirements.txt').read_text())
    assert [line.split('  #')[0] for line in out_bindep.read_text().splitlines()] == _bindep((ROOT / 'meta' / 'ee-bindep.txt').read_text())


def test_the_collection_requirements_are_the_tested_ones_with_lower_bounds_only():
    tested = _requirements((ROOT / 'requirements.txt').read_text())
    collection = _requirements((ROOT / 'meta' / 'ee-requirements.txt').read_text())
    assert sorted(collection) == sorted(name for name in tested if name != 'ansible-core')
    for name, requirement in collection.items():
        assert {spec.operator for spec in requirement.specifier} == {'>='}, requirement
        lower = {spec.version for spec in tested[name].specifier if spec.operator == '>='}
        assert {spec.version for spec in requirement.specifier} == lower, name


def test_the_image_can_talk_kerberos_to_domain_joined_hosts():
    collection = _requirements((ROOT / 'meta' / 'ee-requirements.txt').read_text())
    assert 'kerberos' in collection['pywinrm'].extras
    bindep = _bindep((ROOT / 'meta' / 'ee-bindep.txt').read_text())
    # kinit at run time; the Kerberos headers only to build the bindings.
    assert {'krb5-workstation [platform:rpm]', 'krb5-user [platform:dpkg]'} <= set(bindep)
    assert {'krb5-devel [platform:rpm compile]', 'libkrb5-dev [platform:dpkg compile]'} <= set(bindep)
