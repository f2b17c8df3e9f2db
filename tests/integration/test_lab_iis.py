"""The lab's hosts carry IIS configuration as production's do, and a deploy through the lab copies it.

One lab host (its WinRM listener with TLS on its own loopback address, a real HTTPS listener for the
running site), iis_site_swap through real ansible-playbook with a package the host downloads.
"""

from __future__ import annotations

import ssl

import pytest

from lab.dataplane import PinnedHTTPSConnection
from lab.fleet import APP, LAB_PASSWORD, LAB_POOL_ACCOUNT, PUBLIC_NAME, WINRM_PORT, Lab
from support.ansible_runner import run_module


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    fleet = Lab(tmp_path_factory.mktemp('lab-iis'), hosts=1, drain_seconds=1, cold_start_s=0.2, health_interval=0.2, network='127.0.14',
                region='ca-central-1')
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def deploy(lab, version, keep):
    host = lab.hosts['web1']
    build = lab.build(version)
    site = '%s-%s' % (APP, version)
    args = dict(winrm_host=host['address'], winrm_port=WINRM_PORT, winrm_transport='basic', winrm_user='canary', winrm_password=LAB_PASSWORD,
                winrm_ca_trust_path=str(lab.ca.ca_path), app=APP, active=site, keep=keep, prune=True,
                site=dict(physical_path='D:\\sites\\' + site), package=dict(url=build['url'], checksum=build['checksum']))
    return run_module('iis_site_swap', args)


def answer(lab):
    conn = PinnedHTTPSConnection(lab.hosts['web1']['address'], 443, PUBLIC_NAME, ssl.create_default_context(cafile=str(lab.ca.ca_path)), 10)
    conn.request('GET', '/health', headers={'Host': PUBLIC_NAME})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader('X-App-Version')


def settings(sim, site):
    """What the host reads for a site, with the site's name taken out (what must stay the same from version to version)."""
    config = sim.read_config([site])
    pool = config['pools'][site]
    pool['attrs'].pop('name')
    return pool, {path[len(site):]: found for path, found in config['locations'].items()}


def test_the_lab_host_runs_a_production_like_site(lab):
    sim = lab.hosts['web1']['sim']
    model = sim.pool_element(APP + '-1').find('processModel')
    assert (model.get('identityType'), model.get('userName'), model.get('password')) == ('SpecificUser', LAB_POOL_ACCOUNT, None)
    assert sorted(a.get('path') for a in sim.site_element(APP + '-1').iter('application')) == ['/', '/api']
    assert sorted(sim.location_paths()) == ['Default Web Site', APP + '-1', APP + '-1/api', APP + '-1/health']
    windows = sim.location_elements(APP + '-1')[0].find('system.webServer/security/authentication/windowsAuthentication')
    assert windows.get('enabled') == 'true'


def test_each_deploy_copies_the_running_site_and_prune_takes_only_the_old_version(lab):
    sim = lab.hosts['web1']['sim']
    first = settings(sim, APP + '-1')

    two = deploy(lab, '2', keep=[APP + '-1'])
    assert not two.failed, two.result
    assert two.result['copied_from'] == APP + '-1'
    assert answer(lab) == (200, '2')
    assert settings(sim, APP + '-2') == first
    assert sim.pool_element(APP + '-2').find('processModel').get('userName') == LAB_POOL_ACCOUNT
    root = 'D:\\sites\\' + APP + '-2'
    assert [v.get('physicalPath') for v in sim.site_element(APP + '-2').iter('virtualDirectory')] == [root, root + '\\static', root + '\\api']

    three = deploy(lab, '3', keep=[APP + '-2'])
    assert not three.failed, three.result
    assert three.result['copied_from'] == APP + '-2'
    assert answer(lab) == (200, '3')
    assert 'remove location %s-1' % APP in three.result['actions']
    assert sorted(sim.location_paths()) == sorted(['Default Web Site'] + ['%s-%s%s' % (APP, v, p) for v in '23' for p in ('', '/api', '/health')])
    assert sorted(sim.sites) == ['Default Web Site', APP + '-2', APP + '-3']
    assert sorted(sim.pools) == ['DefaultAppPool', APP + '-2', APP + '-3']
    assert settings(sim, APP + '-3') == first
