"""The junit_report filter as playbooks use it: documented, and turning the
report the role writes into JUnit XML inside a real ansible-playbook run."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

from support.ansible_runner import BIN, ansible_env, run_playbook


def test_ansible_doc_renders_the_filter():
    proc = subprocess.run([str(BIN / 'ansible-doc'), '-t', 'filter', 'immune.canary.junit_report'], capture_output=True, text=True, timeout=120,
                          env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'one test case per host' in proc.stdout and 'suite_name' in proc.stdout
    assert 'ERROR' not in proc.stderr


def test_a_playbook_writes_the_junit_report(tmp_path):
    junit = tmp_path / 'junit.xml'
    playbook = tmp_path / 'junit.yml'
    playbook.write_text('''
- hosts: localhost
  gather_facts: false
  vars:
    report:
      app: app.example.com
      version: "3"
      result: aborted
      hosts:
        web1: {outcome: reverted, site: app.example.com-2, failed_step: bake, reason: "errors 0.3 > 0.05", steps: {drain: 1.25, bake: 6}}
        web2: {outcome: untouched, site: app.example.com-2}
  tasks:
    - name: Write it
      ansible.builtin.copy:
        content: "{{ report | immune.canary.junit_report(suite_name='deploy 3') }}"
        dest: "%s"
        mode: "0644"
''' % junit, encoding='utf-8')
    run = run_playbook(playbook)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    suite = ET.parse(junit).getroot().find('testsuite')
    assert (suite.get('name'), suite.get('tests'), suite.get('failures'), suite.get('skipped')) == ('deploy 3', '2', '1', '1')
    assert suite.find("testcase[@name='web1']/failure").get('message') == 'reverted app.example.com-2: bake: errors 0.3 > 0.05'
    assert suite.find("testcase[@name='web1']").get('time') == '7.250'
