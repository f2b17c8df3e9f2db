"""The new site is a faithful copy of the running one: the IIS service layer through real pywinrm
against the WS-Management double, on a host whose applicationHost.config looks like production's."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _iis, _winrm
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.iis_sim import add_production_site, snapshot
from doubles.winrm_double import WinRMDouble, client_params

APP = 'app.example.com'
OLD, NEW = APP + '-3456', APP + '-3457'
ROOT_OLD, ROOT_NEW = 'D:\\sites\\' + OLD, 'D:\\sites\\' + NEW
PUBLIC = dict(port=443, host_header=APP, sni=True, certificate_thumbprint='C3' * 20, certificate_store='My')
POOL_PASSWORD = 'Pool-S3cret-4e1b'
NEW_PASSWORD = 'Rotated-S3cret-77aa'


@pytest.fixture
def double():
    with WinRMDouble() as d:
        host = d.add_host('web1')
        host.add_site('Default Web Site', [dict(protocol='http', port=80)], physical_path='C:\\inetpub\\wwwroot', state='Stopped')
        host.add_location('Default Web Site', '<system.webServer><directoryBrowse enabled="true" /></system.webServer>')
        add_production_site(host, OLD, ROOT_OLD, [PUBLIC], identity='SpecificUser', user_name='CORP\\svc-app', password=POOL_PASSWORD)
        d.running = d.listen('web1')
        yield d


@pytest.fixture
def host(double):
    return double.hosts['web1']


def swap(double):
    return _iis.SiteSwap(_winrm.WinRMClient(client_params(double, double.running), sleep=lambda s: None), 'web1')


def deploy(double, check_mode=False, **site):
    params = dict(app=APP, active=NEW, site=dict(dict(physical_path=ROOT_NEW), **site))
    params.update(site.pop('_params', {}))
    return swap(double).run(params, check_mode=check_mode)


def canonical(element, renames=()):
    """An element as text with the renames applied and the encrypted values left out (they differ on every write)."""
    element = copy.deepcopy(element)
    for sub in element.iter():
        items = sorted(sub.attrib.items())
        sub.attrib.clear()
        for key, value in items:
            text = '(encrypted)' if value.startswith('[enc:') else value
            for old, new in renames:
                text = text.replace(old, new)
            sub.set(key, text)
        sub.text = sub.tail = None
    return ET.tostring(element, encoding='unicode')


def locations(host, site):
    """The <location> tags of a site as the host reads them: path below the site -> attributes and sections."""
    return {path[len(site):]: found for path, found in host.read_config([site])['locations'].items()}


def secret_of(host, pool):
    return host.decrypt(host.pool_element(pool).find('processModel').get('password'))


def everything_sent_and_received(double, host, *results):
    return json.dumps([doc for _h, _s, doc in host.scripts], default=str) + json.dumps(results, default=str)


def test_the_new_site_is_the_running_one_with_only_names_and_paths_changed(double, host):
    result = deploy(double)
    assert result['copied_from'] == OLD and result['warnings'] == []
    assert result['actions'] == ['create app pool %s (copy of %s)' % (NEW, OLD), 'create site %s (copy of %s)' % (NEW, OLD),
                                 'configure system.webServer/httpProtocol of location ' + NEW,
                                 'configure system.webServer/security/authentication/anonymousAuthentication of location ' + NEW,
                                 'configure system.webServer/security/authentication/windowsAuthentication of location ' + NEW,
                                 'configure system.webServer/security/authorization of location ' + NEW,
                                 'configure system.webServer/security/requestFiltering of location ' + NEW,
                                 'configure system.webServer/security/requestFiltering of location %s/api' % NEW,
                                 'configure system.webServer/security/authentication/anonymousAuthentication of location %s/health' % NEW,
                                 'configure system.webServer/security/authentication/windowsAuthentication of location %s/health' % NEW,
                                 'configure system.webServer/security/authorization of location %s/health' % NEW,
                                 'stop site ' + OLD, 'stop app pool ' + OLD, 'start app pool ' + NEW, 'start site ' + NEW]
    assert host.running() == [NEW]
    renames = [(OLD, NEW)]
    old_site, new_site = host.site_element(OLD), host.site_element(NEW)
    # Everything but the name, the id, the run state and the paths (mapped into the release folder) is the same.
    assert (new_site.get('id'), new_site.get('serverAutoStart')) == ('3', 'true')
    expected = canonical(old_site, renames).replace(' id="2"', ' id="3"').replace('serverAutoStart="false"', 'serverAutoStart="true"')
    assert canonical(new_site) == expected
    assert [v.get('physicalPath') for v in new_site.iter('virtualDirectory')] == [ROOT_NEW, ROOT_NEW + '\\static', ROOT_NEW + '\\api']
    assert {a.get('path'): a.get('applicationPool') for a in new_site.iter('application')} == {'/': NEW, '/api': NEW}
    # The pool: every setting, the identity included; the password was copied on the host and decrypts to the same value.
    assert canonical(host.pool_element(NEW)) == canonical(host.pool_element(OLD), renames)
    assert secret_of(host, NEW) == POOL_PASSWORD
    assert host.pool_element(NEW).find('processModel').get('password') != host.pool_element(OLD).find('processModel').get('password')
    # Every <location> of the old site, under the new name; the old site's own are untouched.
    assert locations(host, NEW) == locations(host, OLD)
    assert set(locations(host, NEW)) == {'', '/health', '/api'}
    # The password never travelled: not in any input, result or message.
    assert POOL_PASSWORD not in everything_sent_and_received(double, host, result)
    assert double.violations == []


def test_a_second_run_changes_nothing(double, host):
    deploy(double)
    before = snapshot(host)
    host.scripts.clear()
    again = deploy(double)
    assert (again['changed'], again['actions'], again['site_diff']) == (False, [], [])
    assert again['copied_from'] == NEW  # the running site is the new one now: it is its own source
    assert [doc['operation'] for _h, _s, doc in host.scripts] == ['query']
    assert snapshot(host) == before


def test_check_mode_and_diff_show_section_by_section_what_differs(double, host):
    before = snapshot(host)
    planned = deploy(double, check_mode=True)
    assert planned['changed'] is True and snapshot(host) == before
    differing = {d['section']: d for d in planned['site_diff']}
    assert sorted(differing) == ['app pool', 'site', 'site/application[/]', 'site/application[/]/virtualDirectory[/]',
                                 'site/application[/]/virtualDirectory[/static]', 'site/application[/api]',
                                 'site/application[/api]/virtualDirectory[/]']
    for entry in planned['site_diff']:
        changed = {k for k in set(entry['before']) | set(entry['after']) if entry['before'].get(k) != entry['after'].get(k)}
        assert changed <= {'name', 'id', 'physicalPath', 'applicationPool'}, entry
    text_diff = planned['diff'][1]
    assert text_diff['before_header'] == 'site %s (running)' % OLD and text_diff['after_header'] == 'site ' + NEW
    assert '[location /health: system.webServer/security/authentication/anonymousAuthentication]\n  enabled = true\n' in text_diff['after']
    assert '[app pool/processModel]\n  identityType = SpecificUser\n  idleTimeout = 00:00:00\n  password = (encrypted)\n' in text_diff['after']
    assert POOL_PASSWORD not in json.dumps(planned)


def test_what_site_states_overrides_the_copy(double, host):
    result = deploy(double, bindings=[dict(host_header='beta.example.com', port=8443, sni=True)], preload_enabled=False,
                    app_pool=dict(start_mode='OnDemand', idle_timeout=15, identity='specific_user', username='CORP\\svc-app2',
                                  password=NEW_PASSWORD),
                    sections=[dict(section='system.webServer/security/requestFiltering', location='api', element='requestLimits',
                                   attributes=dict(maxAllowedContentLength=209715200)),
                              dict(section='system.webServer/directoryBrowse', attributes=dict(enabled=False))])
    new_site, new_pool = host.site_element(NEW), host.pool_element(NEW)
    assert [b.get('bindingInformation') for b in new_site.iter('binding')] == ['*:8443:beta.example.com']
    assert new_site.find('applicationDefaults').get('preloadEnabled') == 'false'
    assert next(a for a in new_site.iter('application') if a.get('path') == '/api').get('preloadEnabled') == 'false'
    assert (new_pool.get('startMode'), new_pool.find('processModel').get('idleTimeout')) == ('OnDemand', '00:15:00')
    assert new_pool.find('processModel').get('userName') == 'CORP\\svc-app2' and secret_of(host, NEW) == NEW_PASSWORD
    assert new_pool.find('environmentVariables') is not None  # what is not stated is still copied
    api = host.location_elements(NEW + '/api')[0]
    assert api.find('system.webServer/security/requestFiltering/requestLimits').get('maxAllowedContentLength') == '209715200'
    assert host.location_elements(NEW)[0].find('system.webServer/directoryBrowse').get('enabled') == 'false'
    assert host.site_element(OLD).find('bindings/binding').get('bindingInformation') == '*:443:app.example.com'
    text = everything_sent_and_received(double, host, result).replace(json.dumps(NEW_PASSWORD)[1:-1], '', 1)
    # The password the user gave travels once, in the apply input; nowhere else (results, messages, the diff).
    assert NEW_PASSWORD not in json.dumps(result)
    assert sum(NEW_PASSWORD in json.dumps(doc) for _h, _s, doc in host.scripts) == 2  # the query's check, the apply
    assert POOL_PASSWORD not in text

    again = deploy(double, bindings=[dict(host_header='beta.example.com', port=8443, sni=True)], preload_enabled=False,
                   app_pool=dict(start_mode='OnDemand', idle_timeout=15, identity='specific_user', username='CORP\\svc-app2',
                                 password=NEW_PASSWORD),
                   sections=[dict(section='system.webServer/security/requestFiltering', location='api', element='requestLimits',
                                  attributes=dict(maxAllowedContentLength=209715200)),
                             dict(section='system.webServer/directoryBrowse', attributes=dict(enabled=False))])
    assert (again['changed'], again['actions']) == (False, [])
    rotated = deploy(double, app_pool=dict(identity='specific_user', username='CORP\\svc-app2', password='Another-0ne'))
    assert rotated['actions'][0] == 'configure app pool ' + NEW
    assert secret_of(host, NEW) == 'Another-0ne'
    assert 'Another-0ne' not in json.dumps(rotated)


@pytest.mark.parametrize('identity, username, attrs', [
    ('gmsa', 'CORP\\svc-new$', {'identityType': 'SpecificUser', 'userName': 'CORP\\svc-new$', 'idleTimeout': '00:00:00'}),
    ('NetworkService', None, {'identityType': 'NetworkService', 'idleTimeout': '00:00:00'}),
])
def test_identity_overrides_drop_the_copied_password(double, host, identity, username, attrs):
    deploy(double, app_pool=dict(identity=identity, username=username))
    assert host.pool_element(NEW).find('processModel').attrib == attrs
    assert deploy(double, app_pool=dict(identity=identity, username=username))['changed'] is False


def test_a_path_outside_the_site_folder_is_refused_before_anything_changes(double, host):
    host.add_virtual_directory(OLD, '/uploads', 'D:\\shared\\uploads')
    before = snapshot(host)
    with pytest.raises(CanaryError) as err:
        deploy(double)
    assert err.value.message == ("Failed to copy site 'app.example.com-3456': the physical path of virtual directory /uploads of application / "
                                 "is D:\\shared\\uploads, outside the site's folder D:\\sites\\app.example.com-3456, so it has no place in the "
                                 "release folder D:\\sites\\app.example.com-3457; list it (or a folder above it) in copy.shared_paths to keep it "
                                 "shared between versions")
    assert [doc['operation'] for _h, _s, doc in host.scripts] == ['query'] and snapshot(host) == before
    shared = deploy(double, _params=dict(copy=dict(shared_paths=['D:\\shared'])))
    assert shared['changed'] is True
    vdirs = {v.get('path'): v.get('physicalPath') for v in host.site_element(NEW).iter('virtualDirectory')}
    assert vdirs['/uploads'] == 'D:\\shared\\uploads' and vdirs['/static'] == ROOT_NEW + '\\static'


def test_what_cannot_be_copied_is_named_in_a_warning(double, host):
    host.add_location(OLD + '/legacy', '<system.webServer><myVendorModule enabled="true" /></system.webServer>', inheritInChildApplications='false')
    host.add_application(OLD, '/reports', ROOT_OLD + '\\reports', app_pool='SharedReports')
    host.add_pool('SharedReports')
    result = deploy(double, _params=dict(copy=dict(exclude_sections=['system.webServer/httpProtocol'])))
    assert result['warnings'] == [
        "site 'app.example.com-3456' runs applications in app pool 'SharedReports', which is not named after it: the new site "
        "'app.example.com-3457' shares that pool instead of getting a copy",
        'section system.webServer/httpProtocol of <location path="app.example.com-3456"> is not copied (copy.exclude_sections)',
        '<location path="app.example.com-3456/legacy"> has inheritInChildApplications="false", which the IIS configuration API cannot set: '
        'the new site\'s <location path="app.example.com-3457/legacy"> does not have it',
        'section system.webServer/myVendorModule of <location path="app.example.com-3456/legacy"> of site \'app.example.com-3456\' could not '
        'be read on the host and is not copied: the IIS schema of this host has no section system.webServer/myVendorModule']
    assert host.location_elements(NEW)[0].find('system.webServer/httpProtocol') is None
    assert host.location_elements(NEW + '/legacy') == []
    assert next(a for a in host.site_element(NEW).iter('application') if a.get('path') == '/reports').get('applicationPool') == 'SharedReports'
    assert host.pool_element(NEW + '-reports') is None


def test_a_pool_named_after_the_site_is_copied_under_the_new_name(double, host):
    host.add_pool(OLD + '-api', identity='SpecificUser', user_name='CORP\\svc-api', password='Api-S3cret')
    next(a for a in host.site_element(OLD).iter('application') if a.get('path') == '/api').set('applicationPool', OLD + '-api')
    result = deploy(double)
    assert 'create app pool %s-api (copy of %s-api)' % (NEW, OLD) in result['actions']
    assert 'start app pool %s-api' % NEW in result['actions']
    assert next(a for a in host.site_element(NEW).iter('application') if a.get('path') == '/api').get('applicationPool') == NEW + '-api'
    assert secret_of(host, NEW + '-api') == 'Api-S3cret'
    assert host.pool_state[OLD + '-api'] == 'Stopped'  # the old site's pools all stop with it


def test_revert_leaves_the_fallback_untouched_and_prune_removes_only_the_pruned_version(double, host):
    host.add_site(OLD + '0', [dict(port=9443, host_header='other.example.com')], physical_path='D:\\sites\\x', state='Stopped')
    host.add_location(OLD + '0', '<system.webServer><directoryBrowse enabled="true" /></system.webServer>')  # shares OLD's prefix
    fallback = (canonical(host.site_element(OLD)), canonical(host.pool_element(OLD)), locations(host, OLD))
    deploy(double)
    reverted = swap(double).run(dict(app=APP, active=OLD))
    assert reverted['actions'] == ['stop site ' + NEW, 'stop app pool ' + NEW, 'start app pool ' + OLD, 'start site ' + OLD]
    assert (canonical(host.site_element(OLD)), canonical(host.pool_element(OLD)), locations(host, OLD)) == fallback
    assert secret_of(host, OLD) == POOL_PASSWORD

    pruned = swap(double).run(dict(app=APP, active=OLD, keep=[OLD + '0'], prune=True))
    assert pruned['actions'] == ['remove site ' + NEW, 'remove app pool ' + NEW, 'remove location ' + NEW, 'remove location %s/api' % NEW,
                                 'remove location %s/health' % NEW]
    assert host.location_paths() == sorted(['Default Web Site', OLD, OLD + '/health', OLD + '/api', OLD + '0'])
    assert (canonical(host.site_element(OLD)), canonical(host.pool_element(OLD)), locations(host, OLD)) == fallback
    assert sorted(host.pools) == ['Default Web Site', OLD, OLD + '0']


def test_deploy_refuses_an_unmappable_copy_before_stopping_anything(double, host):
    host.add_virtual_directory(OLD, '/uploads', 'E:\\uploads')
    before = snapshot(host)
    params = dict(app=APP, active=NEW, keep=[], prune=True, site=dict(physical_path=ROOT_NEW),
                  package=dict(url='http://127.0.0.1:9/r.zip', checksum='sha256:' + 'a' * 64))
    with pytest.raises(CanaryError) as err:
        swap(double).deploy(params)
    assert 'copy.shared_paths' in err.value.message
    assert snapshot(host) == before and host.running() == [OLD]


def test_deploy_keeps_the_source_until_the_copy_is_made_then_prunes_it(double, host):
    host.content[ROOT_NEW] = {'files': ['web.config'], 'marker': {'checksum': 'sha256:' + 'b' * 64, 'size': 1}}
    params = dict(app=APP, active=NEW, keep=[], prune=True, site=dict(physical_path=ROOT_NEW),
                  package=dict(url='http://127.0.0.1:9/r.zip', checksum='sha256:' + 'b' * 64))
    done = swap(double).deploy(params)
    assert done['copied_from'] == OLD
    assert done['actions'][:2] == ['stop site ' + OLD, 'stop app pool ' + OLD]
    # The copied site goes only after the new one started.
    assert done['actions'][-5:] == ['remove site ' + OLD, 'remove app pool ' + OLD, 'remove location ' + OLD, 'remove location %s/api' % OLD,
                                    'remove location %s/health' % OLD]
    assert done['actions'].index('start site ' + NEW) < done['actions'].index('remove site ' + OLD)
    assert sorted(host.sites) == ['Default Web Site', NEW]
    assert host.location_paths() == sorted(['Default Web Site', NEW, NEW + '/api', NEW + '/health'])
    assert secret_of(host, NEW) == POOL_PASSWORD


def test_a_rewrite_of_the_running_site_keeps_its_encrypted_values(double, host):
    host.add_virtual_directory(OLD, '/files', ROOT_OLD + '\\files', userName='CORP\\files', password='Vdir-S3cret')
    result = swap(double).run(dict(app=APP, active=OLD, site=dict(physical_path=ROOT_OLD, preload_enabled=False)))
    assert result['actions'] == ['configure site ' + OLD] and result['copied_from'] == OLD
    vdir = next(v for v in host.site_element(OLD).iter('virtualDirectory') if v.get('path') == '/files')
    assert host.decrypt(vdir.get('password')) == 'Vdir-S3cret'
    assert host.site_element(OLD).find('applicationDefaults').get('preloadEnabled') == 'false'


def test_a_first_deploy_uses_the_site_options_alone(double):
    with WinRMDouble() as d:
        empty = d.add_host('web9')
        d.running = d.listen('web9')
        with pytest.raises(CanaryError) as err:
            swap(d).run(dict(app=APP, active=NEW, site=dict(physical_path=ROOT_NEW)))
        assert err.value.message == ("Invalid site.bindings []: give at least one binding (there is no site of app 'app.example.com' to "
                                     "copy them from)")
        assert [doc['operation'] for _h, _s, doc in empty.scripts] == ['query']
        first = swap(d).run(dict(app=APP, active=NEW, site=dict(physical_path=ROOT_NEW, bindings=[PUBLIC],
                                                                app_pool=dict(identity='gmsa', username='CORP\\svc-app$'),
                                                                sections=[dict(section='system.webServer/security/authentication/'
                                                                                       'windowsAuthentication', attributes={'enabled': True})])))
        assert first['copied_from'] is None
        assert first['actions'] == ['create app pool ' + NEW, 'create site ' + NEW,
                                    'configure system.webServer/security/authentication/windowsAuthentication of location ' + NEW,
                                    'start app pool ' + NEW, 'start site ' + NEW]
        assert empty.pools[NEW] == dict(name=NEW, state='Started', managed_runtime='v4.0', pipeline_mode='Integrated', identity='SpecificUser',
                                        start_mode='AlwaysRunning', idle_timeout=0)
        assert empty.pool_element(NEW).find('processModel').get('userName') == 'CORP\\svc-app$'
        assert empty.sites[NEW]['preload_enabled'] is True
        assert empty.sites[NEW]['bindings'] == [dict(protocol='https', ip='*', port=443, host_header=APP, certificate_thumbprint='C3' * 20,
                                                     certificate_store='My', sni=True)]
        assert {d['section'] for d in first['site_diff']} >= {'site', 'app pool/processModel',
                                                              'location /: system.webServer/security/authentication/windowsAuthentication'}
        assert all(d['before'] is None for d in first['site_diff'])
        again = swap(d).run(dict(app=APP, active=NEW, site=dict(physical_path=ROOT_NEW, bindings=[PUBLIC],
                                                                app_pool=dict(identity='gmsa', username='CORP\\svc-app$'),
                                                                sections=[dict(section='system.webServer/security/authentication/'
                                                                                       'windowsAuthentication', attributes={'enabled': True})])))
        assert (again['changed'], again['actions']) == (False, [])


def test_copy_disabled_makes_a_new_site_from_the_options_alone(double, host):
    result = deploy(double, bindings=[PUBLIC], _params=dict(copy=dict(enabled=False)))
    assert result['copied_from'] is None
    assert host.location_elements(NEW) == [] and len(list(host.site_element(NEW).iter('application'))) == 1
    assert host.pool_element(NEW).find('processModel').get('identityType') == 'ApplicationPoolIdentity'


def test_copy_source_names_the_site_to_copy(double, host):
    add_production_site(host, APP + '-template', 'D:\\templates\\app', [dict(port=8080, protocol='http')], state='Stopped', identity='gmsa')
    result = deploy(double, _params=dict(copy=dict(source=APP + '-template')))
    assert result['copied_from'] == APP + '-template'
    assert host.pool_element(NEW).find('processModel').get('userName') == 'CORP\\svc-app$'
    with pytest.raises(CanaryError) as err:
        deploy(double, _params=dict(copy=dict(source='nosuch')))
    assert err.value.message == "Failed to copy site 'nosuch': it does not exist on the host (copy.source)"
