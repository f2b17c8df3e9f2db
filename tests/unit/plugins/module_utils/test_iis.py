"""Pure logic of the IIS service layer: validation and planning tables."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _iis, _winrm
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.iis_sim import SimHost

APP = 'app.example.com'
SHA = 'sha256:' + 'ab' * 32


def site(path='D:\\sites\\app.example.com-2', bindings=None, **kw):
    return dict(physical_path=path, bindings=bindings if bindings is not None else [dict(host_header=APP, sni=True)], **kw)


@pytest.mark.parametrize('params, message', [
    (dict(app=''), "Invalid app '': it is empty"),
    (dict(app='a\\b'), "Invalid app 'a\\\\b': it contains a path separator or NUL"),
    (dict(app=APP, state='running', active=APP), "Invalid state 'running': use one of started, stopped, query"),
    (dict(app=APP, state='started'), 'Invalid active: state=started needs the name of the site to run'),
    (dict(app=APP, active='other.example.com-1'), "Invalid active 'other.example.com-1': a site of app 'app.example.com' is named"),
    (dict(app=APP, state='stopped', site=site()), 'Invalid site: it describes the site named by active, which is not set'),
    (dict(app=APP, active=APP + '-a|b', site=site()), 'IIS cannot create a site or app pool whose name contains |'),
    (dict(app=APP, active=APP + '-2', site=site(path='sites\\x')), "Invalid site.physical_path 'sites\\\\x': use an absolute Windows path"),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(port=70000)])), 'Invalid site.bindings[0].port 70000'),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(ip='10.0.0')])), "Invalid site.bindings[0].ip '10.0.0'"),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(host_header='a b')])), "Invalid site.bindings[0].host_header 'a b'"),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(certificate_thumbprint='xyz')])),
     "Invalid site.bindings[0].certificate_thumbprint 'xyz': use the 40 hex digit SHA-1 thumbprint"),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(sni=True)])), 'Invalid site.bindings[0]: sni needs a host_header'),
    (dict(app=APP, active=APP + '-2', site=site(bindings=[dict(host_header=APP), dict(host_header=APP.upper())])),
     'Invalid site.bindings[1] https *:443:APP.EXAMPLE.COM: duplicates site.bindings[0]'),
    (dict(app=APP, active=APP + '-2', site=site(app_pool=dict(idle_timeout=-1))), 'Invalid site.app_pool.idle_timeout -1'),
    (dict(app=APP, state='stopped', prune=True), "Invalid prune=true: without active or keep it would remove every site of app"),
    (dict(app=APP, active=APP, wait_timeout=0), 'Invalid wait_timeout 0: use seconds > 0'),
])
def test_bad_swap_input_is_rejected_with_the_option_and_value(params, message):
    with pytest.raises(CanaryError) as err:
        _iis.validate_swap(params)
    assert message in err.value.message


def test_binding_defaults_follow_the_protocol():
    norm = _iis.normalize_site(APP + '-2', site(bindings=[dict(protocol='http', host_header=APP), dict(certificate_thumbprint='ab ' * 20)]))
    assert norm['bindings'] == [
        dict(protocol='http', ip='*', port=80, host_header=APP, certificate_thumbprint='', certificate_store='', sni=False),
        dict(protocol='https', ip='*', port=443, host_header='', certificate_thumbprint='AB' * 20, certificate_store='My', sni=False),
    ]
    # Nothing stated about the pool: the copy (or, with nothing to copy, the defaults) decides.
    assert norm['app_pool'] == dict(name=None, managed_runtime=None, pipeline_mode=None, identity=None, username=None, password=None,
                                    start_mode=None, idle_timeout=None)
    assert norm['preload_enabled'] is None and norm['sections'] == []


def inv_site(name, state='Started', port=443, host=APP, pool=None, path=None):
    return dict(name=name, state=state, port=port, host=host, pool=pool or name, path=path or 'D:\\sites\\' + name)


def inv(*sites):
    """What the host reports (inventory and configuration) for these sites, read from a simulated host."""
    host = SimHost('unit')
    for s in sites:
        if host.pool_element(s['pool']) is None:
            host.add_pool(s['pool'], state=s['state'], start_mode='AlwaysRunning', idle_timeout=0)
        host.add_site(s['name'], [dict(port=s['port'], host_header=s['host'])], physical_path=s['path'], app_pool=s['pool'], state=s['state'],
                      preload_enabled=True)
    found = host.run_site_swap({'operation': 'query', 'app': APP})
    return dict(found['inventory'], config=found['config'])


OLD, NEW, OLDER = APP + '-1', APP + '-2', APP + '-0'


@pytest.mark.parametrize('params, inventory, expected', [
    (dict(app=APP, state='stopped'), inv(inv_site(OLD)), ['stop_site ' + OLD, 'stop_pool ' + OLD]),
    (dict(app=APP, state='stopped'), inv(inv_site(OLD, 'Stopped')), []),
    (dict(app=APP, active=OLD), inv(inv_site(OLD, 'Stopped'), inv_site(NEW)),
     ['stop_site ' + NEW, 'stop_pool ' + NEW, 'start_pool ' + OLD, 'start_site ' + OLD]),
    (dict(app=APP, active=OLD), inv(inv_site(OLD), inv_site(NEW, 'Stopped')), []),
    (dict(app=APP, active=NEW, site=site(bindings=[dict(host_header=APP)])), inv(inv_site(OLD)),
     ['create_pool ' + NEW, 'create_site ' + NEW, 'stop_site ' + OLD, 'stop_pool ' + OLD, 'start_pool ' + NEW, 'start_site ' + NEW]),
    (dict(app=APP, active=NEW, site=site(path='D:\\x\\' + NEW, bindings=[dict(host_header=APP)])), inv(inv_site(NEW)), ['set_site ' + NEW]),
    (dict(app=APP, active=NEW, site=site(bindings=[dict(host_header='b.example.com')])), inv(inv_site(NEW)), ['set_site ' + NEW]),
    (dict(app=APP, active=NEW, prune=True, keep=[OLD]), inv(inv_site(OLDER, 'Stopped'), inv_site(OLD, 'Stopped'), inv_site(NEW)),
     ['remove_site ' + OLDER, 'remove_pool ' + OLDER]),
    (dict(app=APP, active=NEW, prune=True, prune_content=True), inv(inv_site(OLD, 'Stopped'), inv_site(NEW)),
     ['remove_site ' + OLD, 'remove_pool ' + OLD, 'remove_content ' + OLD]),
    (dict(app=APP, state='query'), inv(inv_site(OLD)), []),
    # a site of another app sharing the prefix without the dash is not ours
    (dict(app=APP, state='stopped'), inv(inv_site(APP + 'x', port=8443)), []),
])
def test_plan(params, inventory, expected):
    site_def = _iis.validate_swap(params)
    actions = _iis.plan_swap(params, site_def, inventory)
    assert ['%s %s' % (a['op'], a['name']) for a in actions] == expected


def test_plan_refuses_a_binding_held_by_a_foreign_site_before_touching_anything():
    params = dict(app=APP, active=NEW, site=site(bindings=[dict(host_header=APP)]))
    with pytest.raises(CanaryError) as err:
        _iis.plan_swap(params, _iis.validate_swap(params), inv(inv_site(OLD), inv_site('legacy', host=APP)))
    assert err.value.message == ("Failed to start site 'app.example.com-2': binding https *:443:app.example.com is held by site 'legacy', "
                                 "which is not a site of app 'app.example.com' (IIS error 0x800700B7)")


def test_plan_refuses_a_missing_active_without_site():
    params = dict(app=APP, active=NEW)
    with pytest.raises(CanaryError) as err:
        _iis.plan_swap(params, None, inv(inv_site(OLD)))
    assert err.value.message == ("Failed to start site 'app.example.com-2': it does not exist on the host and no site definition "
                                 "was given to create it")


@pytest.mark.parametrize('params, message', [
    (dict(checksum='md5:abc', dest='D:\\sites\\a', url='http://x/a.zip'), "Invalid checksum 'md5:abc': use sha256:<64 hex digits>"),
    (dict(checksum=SHA[:-1], dest='D:\\sites\\a', url='http://x/a.zip'), 'use sha256:<64 hex digits>'),
    (dict(checksum=SHA, dest='sites\\a', url='http://x/a.zip'), "Invalid dest 'sites\\\\a': use an absolute Windows folder path"),
    (dict(checksum=SHA, dest='D:\\', url='http://x/a.zip'), "Invalid dest 'D:\\\\'"),
    (dict(checksum=SHA, dest='D:\\sites\\a', url='ftp://x/a.zip'), "Invalid url 'ftp://x/a.zip': use an http:// or https:// URL"),
    (dict(checksum=SHA, dest='D:\\sites\\a', url='http://x/a.zip', timeout=0), 'Invalid timeout 0: use seconds > 0'),
    (dict(checksum=SHA, dest='D:\\sites\\a', url='http://x/a.zip', headers={'X-A': 'a\r\nb'}), "Invalid headers: header 'X-A'"),
])
def test_bad_package_input_is_rejected(params, message):
    with pytest.raises(CanaryError) as err:
        _iis.validate_package(params)
    assert message in err.value.message


def test_upper_case_checksum_is_accepted_and_normalised():
    assert _iis.validate_package(dict(checksum=SHA.upper().replace('SHA256', 'sha256'), dest='D:\\a\\b', url='https://x/y')) == SHA


@pytest.mark.parametrize('stderr, expected', [
    ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">Import-Module : '
     'The specified module &apos;WebAdministration&apos; was not loaded_x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S></Objs>',
     "Import-Module : The specified module 'WebAdministration' was not loaded\r\nAt line:1 char:1"),
    ('plain text error\n', 'plain text error'),
    ('#< CLIXML\r\n<Objs><S S="Verbose">noise</S></Objs>', ''),
])
def test_clixml_stderr_is_decoded(stderr, expected):
    assert _winrm.decode_clixml(stderr) == expected


def test_result_is_found_between_markers_despite_stray_output():
    payload = base64.b64encode(json.dumps({'ok': 'é'}).encode()).decode()
    assert _winrm.parse_result('noise\r\n' + _winrm.RESULT_BEGIN + payload + _winrm.RESULT_END + '\r\nmore') == {'ok': 'é'}
    assert _winrm.parse_result('no markers') is None
    assert _winrm.parse_result(_winrm.RESULT_BEGIN + 'not base64!' + _winrm.RESULT_END) is None


@pytest.mark.parametrize('overrides, message', [
    (dict(winrm_port=0), 'Invalid winrm_port 0'),
    (dict(winrm_operation_timeout=30, winrm_read_timeout=30), 'winrm_read_timeout must be greater than winrm_operation_timeout'),
    (dict(winrm_host='http://web1'), "Invalid winrm_host 'http://web1'"),
])
def test_bad_connection_options(overrides, message):
    params = dict(winrm_host='web1', winrm_port=5986, winrm_operation_timeout=20, winrm_read_timeout=30)
    params.update(overrides)
    with pytest.raises(CanaryError) as err:
        _winrm.validate_winrm_params(params)
    assert message in err.value.message
