"""The IIS service layer through real pywinrm against the WS-Management
double (tests/doubles/winrm_double.py) on loopback."""

from __future__ import annotations

import hashlib
import http.server
import io
import zipfile

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _iis, _winrm
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from doubles.iis_sim import snapshot
from doubles.winrm_double import WinRMDouble, client_params
from support import servers
from support.tls import TestCA

APP = 'app.example.com'
OLD, NEW = APP + '-3456', APP + '-3457'
PUBLIC = dict(port=443, host_header=APP, sni=True)
NEW_SITE = dict(physical_path='D:\\sites\\' + NEW, bindings=[dict(PUBLIC, certificate_thumbprint='A1' * 20)])


@pytest.fixture
def double():
    with WinRMDouble() as d:
        host = d.add_host('web1')
        host.add_site('Default Web Site', [dict(protocol='http', port=80)], physical_path='C:\\inetpub\\wwwroot')
        host.add_site(OLD, [PUBLIC], physical_path='D:\\sites\\' + OLD)
        d.running = d.listen('web1')
        yield d


@pytest.fixture
def host(double):
    return double.hosts['web1']


def swap(double, log=None, **params):
    client = _winrm.WinRMClient(client_params(double, double.running), sleep=lambda s: None, log=log)
    return _iis.SiteSwap(client, 'web1')


def operations(host):
    return [doc.get('operation') for _header, _script, doc in host.scripts]


def test_deploy_flow_stop_start_new_then_prune(double, host):
    events = []
    host.on_site_start.append(lambda h, s: events.append('start ' + s['name']))
    host.on_site_stop.append(lambda h, s: events.append('stop ' + s['name']))
    svc = swap(double)

    stopped = svc.run(dict(app=APP, state='stopped'))
    assert stopped['changed'] is True
    assert stopped['previous_active'] == OLD
    assert stopped['active'] is None
    assert stopped['actions'] == ['stop site ' + OLD, 'stop app pool ' + OLD]
    assert host.running() == ['Default Web Site']

    started = svc.run(dict(app=APP, active=NEW, site=NEW_SITE))
    assert started['changed'] is True
    assert started['previous_active'] is None
    assert started['active'] == NEW
    # Nothing runs: the newest site of the app is the one copied, and a warning says so.
    assert started['copied_from'] == OLD
    assert started['warnings'] == ["no site of app 'app.example.com' runs, so the new site 'app.example.com-3457' copies the newest one, "
                                   "'app.example.com-3456'"]
    assert started['actions'] == ['create app pool %s (copy of %s)' % (NEW, OLD), 'create site %s (copy of %s)' % (NEW, OLD),
                                  'start app pool ' + NEW, 'start site ' + NEW]
    new = host.sites[NEW]
    assert (new['state'], new['physical_path'], new['preload_enabled']) == ('Started', 'D:\\sites\\' + NEW, False)
    assert new['bindings'] == [dict(protocol='https', ip='*', port=443, host_header=APP, certificate_thumbprint='A1' * 20, certificate_store='My',
                                    sni=True)]
    # The pool is a copy of the old one (add_pool's defaults: OnDemand, 20 minutes); the preload the site option
    # leaves unstated comes from the copy too, and the stated bindings replace the copied ones.
    assert host.pools[NEW] == dict(host.pools[OLD], name=NEW, state='Started')
    assert host.pools[OLD]['start_mode'] == 'OnDemand'
    assert [s['name'] for s in started['sites']] == [OLD, NEW]

    pruned = svc.run(dict(app=APP, active=NEW, prune=True))
    assert pruned['actions'] == ['remove site ' + OLD, 'remove app pool ' + OLD]
    assert sorted(host.sites) == ['Default Web Site', NEW]
    assert OLD not in host.pools
    assert events == ['stop ' + OLD, 'start ' + NEW]
    assert double.violations == []


def test_revert_flow_starts_the_old_site_again(double, host):
    svc = swap(double)
    svc.run(dict(app=APP, state='stopped'))
    svc.run(dict(app=APP, active=NEW, site=NEW_SITE))
    reverted = svc.run(dict(app=APP, active=OLD))
    assert reverted['previous_active'] == NEW
    assert reverted['active'] == OLD
    assert reverted['actions'] == ['stop site ' + NEW, 'stop app pool ' + NEW, 'start app pool ' + OLD, 'start site ' + OLD]
    assert host.running() == ['Default Web Site', OLD]
    assert host.pools[NEW]['state'] == 'Stopped'


def test_second_run_changes_nothing_and_only_reads(double, host):
    svc = swap(double)
    svc.run(dict(app=APP, active=NEW, site=NEW_SITE, prune=True))
    before = snapshot(host)
    host.scripts.clear()
    again = svc.run(dict(app=APP, active=NEW, site=NEW_SITE, prune=True))
    assert again['changed'] is False
    assert again['actions'] == []
    assert again['previous_active'] == again['active'] == NEW
    assert operations(host) == ['query']
    assert snapshot(host) == before


def test_check_mode_plans_without_changing(double, host):
    before = snapshot(host)
    planned = swap(double).run(dict(app=APP, active=NEW, site=NEW_SITE, prune=True), check_mode=True)
    assert planned['changed'] is True
    assert planned['actions'] == ['create app pool %s (copy of %s)' % (NEW, OLD), 'create site %s (copy of %s)' % (NEW, OLD),
                                  'stop site ' + OLD, 'stop app pool ' + OLD, 'start app pool ' + NEW, 'start site ' + NEW, 'remove site ' + OLD,
                                  'remove app pool ' + OLD]
    assert planned['diff'][0] == {'before': {'running': [OLD]}, 'after': {'running': [NEW]}}
    assert (planned['diff'][1]['before_header'], planned['diff'][1]['after_header']) == ('site %s (running)' % OLD, 'site ' + NEW)
    assert planned['active'] == NEW
    assert operations(host) == ['query']
    assert snapshot(host) == before


def test_query_reports_the_app_sites_only(double, host):
    result = swap(double).run(dict(app=APP, state='query'))
    assert result['changed'] is False
    assert result['active'] == result['previous_active'] == OLD
    assert [(s['name'], s['state'], s['app_pool_state']) for s in result['sites']] == [(OLD, 'Started', 'Started')]


def test_binding_held_by_a_foreign_site_fails_naming_it_and_touches_nothing(double, host):
    host.add_site('legacy.example.com', [dict(port=443, host_header=APP)])
    before = snapshot(host)
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, active=NEW, site=NEW_SITE))
    assert err.value.message == ("Failed to start site 'app.example.com-3457': binding https *:443:app.example.com is held by site "
                                 "'legacy.example.com', which is not a site of app 'app.example.com' (IIS error 0x800700B7)")
    assert snapshot(host) == before


def test_binding_taken_while_applying_is_reported_with_the_holder(double, host):
    # Another actor starts a foreign site between the query and the start.
    host.add_site('legacy.example.com', [dict(port=443, host_header=APP)], state='Stopped')
    host.on_site_stop.append(lambda h, s: h.set_state('site', 'legacy.example.com', 'Started'))
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, active=NEW, site=NEW_SITE))
    assert err.value.message == ("Failed to start site 'app.example.com-3457' on web1: a binding is held by site 'legacy.example.com' "
                                 "(IIS error 0x800700B7)")
    assert err.value.details['conflict_site'] == 'legacy.example.com'
    assert err.value.details['actions'][-1] == 'start_pool ' + NEW
    assert host.sites[NEW]['state'] == 'Stopped'


def test_missing_active_without_site_fails_before_any_change(double, host):
    before = snapshot(host)
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, active=NEW))
    assert err.value.message == ("Failed to start site 'app.example.com-3457': it does not exist on the host and no site definition "
                                 "was given to create it")
    assert operations(host) == ['query']
    assert snapshot(host) == before


def test_start_hook_failure_is_reported(double, host):
    def refuse(h, s):
        raise OSError('port 443 is busy on the lab address')
    host.on_site_start.append(refuse)
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, active=NEW, site=NEW_SITE))
    assert err.value.message == ("Failed to apply the IIS changes for app 'app.example.com' on web1: OSError: port 443 is busy on the lab address")


INJECTION_NAMES = [
    "it's",
    'dq"quote',
    'back`tick',
    'semi;colon Remove-Item C:*',
    '$(Stop-Computer -Force)',
    'pipe | Out-File x',
    'new\nline\r\nand more',
    'ünïcødé-网站-🚀',
]


@pytest.mark.parametrize('suffix', INJECTION_NAMES)
def test_hostile_names_travel_as_data_and_round_trip(double, host, suffix):
    app = "evil'app\"`;$(x)|" + suffix
    active = app + '-' + suffix
    host.add_site(active, [dict(port=8443, host_header='evil.example.com')], physical_path='D:\\sites\\' + suffix, state='Stopped')
    host.add_site(app + '-old', [dict(port=8443, host_header='evil.example.com')], physical_path='D:\\old\\' + suffix)
    result = swap(double).run(dict(app=app, active=active, keep=[], prune=True, prune_content=True))
    assert double.violations == []
    assert result['active'] == active
    assert result['previous_active'] == app + '-old'
    assert [s['name'] for s in result['sites']] == [active]
    assert result['sites'][0]['physical_path'] == 'D:\\sites\\' + suffix
    assert host.running() == ['Default Web Site', OLD, active]
    applied = host.scripts[-1][2]['actions']
    assert {a['name'] for a in applied} == {active, app + '-old'}
    for _header, script, _doc in host.scripts:
        assert suffix not in script and app not in script


def test_the_double_catches_a_value_spliced_into_the_script(double, host):
    client = _winrm.WinRMClient(client_params(double, double.running))
    spliced = "# immune.canary:iis_site_swap/2\n$site = 'app.example.com-spliced'\n"
    with pytest.raises(CanaryError) as err:
        client.run(spliced, {'operation': 'query', 'target': 'app.example.com-spliced'}, 'run a spliced script')
    assert err.value.message == ("Failed to run a spliced script: PowerShell error (exit code 1): input value(s) found in the script text: "
                                 "['app.example.com-spliced']")
    assert double.violations == [('# immune.canary:iis_site_swap/2', ['app.example.com-spliced'])]


def test_the_double_catches_a_script_built_at_run_time(double, host):
    from ansible_collections.immune.canary.plugins.module_utils import _iis_scripts
    client = _winrm.WinRMClient(client_params(double, double.running))
    built = _iis_scripts.SITE_SWAP.replace("$doc.operation -eq 'query'", "$doc.operation -eq 'q' + 'uery'")
    with pytest.raises(CanaryError) as err:
        client.run(built, {'operation': 'query', 'app': APP}, 'run a rebuilt script')
    assert 'the script is not one of the constants of _iis_scripts' in err.value.message
    # The constant itself passes, with a configuration tree whose values are checked and whose schema names are not.
    assert client.run(_iis_scripts.SITE_SWAP, {'operation': 'query', 'app': APP, 'sites': [], 'checks': []}, 'query')['failed'] is False
    assert len(double.violations) == 1


def test_huge_input_goes_over_stdin_not_the_command_line(double, host):
    bindings = [dict(protocol='https', port=20000 + i, host_header='h%d.example.com' % i, sni=True) for i in range(500)]
    result = swap(double).run(dict(app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW, bindings=bindings)))
    assert result['active'] == NEW
    assert len(host.sites[NEW]['bindings']) == 500
    assert host.sites[NEW]['bindings'][499]['host_header'] == 'h499.example.com'
    apply_command = double.commands[-1]
    assert apply_command['sends'] > 1  # the stdin needed several Send operations
    assert max(c['command_line'] for c in double.commands) < 2100  # Windows' limit is 8191


def test_wrong_password_is_named_without_the_password(double):
    params = client_params(double, double.running, winrm_password='wr0ng-Secret!')
    with pytest.raises(CanaryError) as err:
        _iis.SiteSwap(_winrm.WinRMClient(params), 'web1').run(dict(app=APP, state='query'))
    assert err.value.message == ("Failed to read the IIS sites of app 'app.example.com' on web1: the credentials of user 'canary' were rejected "
                                 "by %s/wsman (HTTP 401)" % double.running.url)
    assert 'wr0ng-Secret!' not in repr(err.value.__dict__)
    assert err.value.details == {'winrm_error': 'credentials'}


def test_unreachable_host_is_retried_then_named(double):
    spare = servers.start(http.server.BaseHTTPRequestHandler)
    port = spare.port
    spare.stop()
    logged = []
    params = client_params(double, double.running, winrm_port=port)
    client = _winrm.WinRMClient(params, sleep=lambda s: None, log=logged.append)
    with pytest.raises(CanaryError) as err:
        _iis.SiteSwap(client, 'web1').run(dict(app=APP, state='query'))
    assert err.value.message.startswith("Failed to read the IIS sites of app 'app.example.com' on web1: host unreachable at "
                                        "http://127.0.0.1:%d/wsman (" % port)
    assert len(logged) == _winrm.CONNECT_ATTEMPTS - 1
    assert logged[0].startswith('WinRM http://127.0.0.1:%d/wsman: ' % port)


def test_a_host_that_drops_connections_is_unreachable(double, host):
    host.fault = 'down'
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, state='query'))
    assert 'host unreachable at ' in err.value.message
    assert host.scripts == []


def test_output_without_our_result_is_reported(double, host):
    host.fault = 'garbage'
    with pytest.raises(CanaryError) as err:
        swap(double).run(dict(app=APP, state='query'))
    assert err.value.message == ("Failed to read the IIS sites of app 'app.example.com' on web1: the output is not the expected JSON result: "
                                 "'Get-Website : not what the client expects\\r\\n'")


def test_unknown_script_surfaces_the_powershell_error_text(double):
    client = _winrm.WinRMClient(client_params(double, double.running))
    with pytest.raises(CanaryError) as err:
        client.run('# something else\n', {}, 'run a foreign script')
    assert err.value.message == "Failed to run a foreign script: PowerShell error (exit code 1): unknown script '# something else'"


def test_tls_validation_failure_and_success_with_the_ca(tmp_path):
    ca = TestCA(tmp_path)
    cert, key = ca.issue(['127.0.0.1'])
    with WinRMDouble() as d:
        d.add_host('web1').add_site(OLD, [PUBLIC])
        running = d.listen('web1', tls_context=servers.server_tls_context(cert, key))
        stranger = TestCA(tmp_path / 'stranger')
        untrusted = _winrm.WinRMClient(client_params(d, running, winrm_ca_trust_path=str(stranger.ca_path)))
        with pytest.raises(CanaryError) as err:
            _iis.SiteSwap(untrusted, 'web1').run(dict(app=APP, state='query'))
        assert err.value.message.startswith("Failed to read the IIS sites of app 'app.example.com' on web1: TLS validation of "
                                            "https://127.0.0.1:%d/wsman failed (" % running.port)
        trusted = _winrm.WinRMClient(client_params(d, running, winrm_ca_trust_path=str(ca.ca_path)))
        assert _iis.SiteSwap(trusted, 'web1').run(dict(app=APP, state='query'))['active'] == OLD


def test_many_hosts_in_one_process(double):
    other = double.add_host('web2')
    other.add_site(NEW, [PUBLIC])
    second = double.listen('web2')
    shared = double.listen()  # routes on the Host header
    double.add_host('localhost').add_site(APP + '-1', [PUBLIC])
    one = swap(double).run(dict(app=APP, state='query'))
    two = _iis.SiteSwap(_winrm.WinRMClient(client_params(double, second)), 'web2').run(dict(app=APP, state='query'))
    by_name = _iis.SiteSwap(_winrm.WinRMClient(client_params(double, shared, winrm_host='localhost')), 'localhost').run(
        dict(app=APP, state='query'))
    assert (one['active'], two['active'], by_name['active']) == (OLD, NEW, APP + '-1')


# -- iis_package -------------------------------------------------------------

def make_zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


RELEASE = make_zip({'web.config': '<configuration/>', 'bin/App.dll': b'\x00MZ'})
RELEASE_SHA = 'sha256:' + hashlib.sha256(RELEASE).hexdigest()
DEST = 'D:\\sites\\' + NEW


@pytest.fixture
def artifacts():
    seen = []

    class Handler(servers.QuietHandler):
        def do_GET(self):  # noqa: N802 - stdlib name
            seen.append((self.path, self.headers.get('Authorization')))
            if self.headers.get('Authorization') != 'Bearer t0ken':
                self.send_response(403)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header('Content-Length', str(len(RELEASE)))
            self.end_headers()
            self.wfile.write(RELEASE)

    with servers.serving(Handler) as running:
        running.seen = seen
        yield running


def package(double, **params):
    return _iis.Package(_winrm.WinRMClient(client_params(double, double.running)), 'web1').run(params, check_mode=params.pop('check', False))


def test_package_happy_path_then_idempotent(double, host, artifacts):
    args = dict(url=artifacts.url + '/r/3457.zip', checksum=RELEASE_SHA, dest=DEST, headers={'Authorization': 'Bearer t0ken'})
    planned = package(double, check=True, **args)
    assert (planned['changed'], host.content) == (True, {})
    assert artifacts.seen == []
    done = package(double, **args)
    assert done == dict(changed=True, dest=DEST, checksum=RELEASE_SHA, size=len(RELEASE))
    assert host.content[DEST]['files'] == ['bin/App.dll', 'web.config']
    again = package(double, **args)
    assert again == dict(changed=False, dest=DEST, checksum=RELEASE_SHA, size=len(RELEASE))
    assert len(artifacts.seen) == 1
    assert double.violations == []
    gone = package(double, **dict(args, state='absent'))
    assert gone['changed'] is True and DEST not in host.content


def test_package_checksum_mismatch_leaves_dest_untouched(double, host, artifacts):
    host.content[DEST] = {'files': ['old.txt'], 'marker': {'checksum': 'sha256:' + '0' * 64, 'size': 3}}
    wrong = 'sha256:' + 'f' * 64
    with pytest.raises(CanaryError) as err:
        package(double, url=artifacts.url + '/r.zip', checksum=wrong, dest=DEST, headers={'Authorization': 'Bearer t0ken'})
    assert err.value.message == ('Failed to install package D:\\sites\\app.example.com-3457 on web1: checksum mismatch: expected %s, '
                                 'downloaded file has %s' % (wrong, RELEASE_SHA))
    assert host.content[DEST] == {'files': ['old.txt'], 'marker': {'checksum': 'sha256:' + '0' * 64, 'size': 3}}


def test_package_download_refused_is_reported(double, host, artifacts):
    with pytest.raises(CanaryError) as err:
        package(double, url=artifacts.url + '/r.zip', checksum=RELEASE_SHA, dest=DEST, headers={'Authorization': 'Bearer nope'})
    assert err.value.message == 'Failed to install package D:\\sites\\app.example.com-3457 on web1: The remote server returned an error: (403) Forbidden.'
    assert host.content == {}


# -- iis_site_swap with package: stop, install, start in one call ------------

def deploy_params(artifacts, **overrides):
    params = dict(app=APP, active=NEW, keep=[OLD], prune=True, site=dict(NEW_SITE, physical_path=DEST),
                  package=dict(url=artifacts.url + '/r/3457.zip', checksum=RELEASE_SHA, headers={'Authorization': 'Bearer t0ken'}))
    params.update(overrides)
    return params


def test_deploy_stops_installs_and_starts_in_one_call(double, host, artifacts):
    host.add_site(APP + '-3455', [PUBLIC], physical_path='D:\\sites\\' + APP + '-3455', state='Stopped')
    events = []
    host.on_site_start.append(lambda h, s: events.append(('start', s['name'], sorted(host.content))))
    host.on_site_stop.append(lambda h, s: events.append(('stop', s['name'], sorted(host.content))))
    svc = swap(double)

    planned = svc.deploy(deploy_params(artifacts), check_mode=True)
    assert planned['changed'] is True and planned['active'] == NEW and planned['previous_active'] == OLD
    assert (host.running(), host.content, artifacts.seen) == (['Default Web Site', OLD], {}, [])

    done = svc.deploy(deploy_params(artifacts))
    assert done['previous_active'] == OLD and done['active'] == NEW
    # Stopped before the download, the content in place before the start.
    assert events == [('stop', OLD, []), ('start', NEW, [DEST])]
    assert done['actions'] == ['stop site ' + OLD, 'stop app pool ' + OLD, 'remove site ' + APP + '-3455',
                               'remove app pool ' + APP + '-3455', 'install package ' + DEST,
                               'create app pool %s (copy of %s)' % (NEW, OLD), 'create site %s (copy of %s)' % (NEW, OLD),
                               'start app pool ' + NEW, 'start site ' + NEW]
    assert done['copied_from'] == OLD
    assert done['package'] == dict(changed=True, dest=DEST, checksum=RELEASE_SHA, size=len(RELEASE))
    assert set(done['timings']) == {'stop', 'package', 'start'} and all(t >= 0 for t in done['timings'].values())
    assert sorted(host.sites) == ['Default Web Site', OLD, NEW]
    assert host.running() == ['Default Web Site', NEW]
    assert double.violations == []

    again = svc.deploy(deploy_params(artifacts))
    assert (again['changed'], again['actions']) == (False, [])
    assert again['package'] == dict(changed=False, dest=DEST, checksum=RELEASE_SHA, size=len(RELEASE))
    assert again['timings']['stop'] == again['timings']['package'] == 0.0
    assert len(artifacts.seen) == 1


def test_deploy_keeps_a_new_site_left_by_a_failed_attempt(double, host, artifacts):
    host.add_site(NEW, [PUBLIC], physical_path=DEST, state='Stopped')
    done = swap(double).deploy(deploy_params(artifacts))
    assert 'remove site ' + NEW not in done['actions']
    assert done['actions'][-1] == 'start site ' + NEW
    assert host.running() == ['Default Web Site', NEW]


def test_deploy_bad_checksum_stops_before_the_start_and_names_what_was_done(double, host, artifacts):
    wrong = 'sha256:' + 'f' * 64
    with pytest.raises(CanaryError) as err:
        swap(double).deploy(deploy_params(artifacts, package=dict(url=artifacts.url + '/r.zip', checksum=wrong,
                                                                  headers={'Authorization': 'Bearer t0ken'})))
    assert err.value.message.startswith('Failed to install package %s on web1: checksum mismatch' % DEST)
    assert err.value.details['actions'] == ['stop site ' + OLD, 'stop app pool ' + OLD]
    assert err.value.details['previous_active'] == OLD
    assert NEW not in host.sites and host.content == {}
    assert host.running() == ['Default Web Site']


@pytest.mark.parametrize('overrides, message', [
    (dict(package=dict(url='ftp://x/a.zip', checksum=RELEASE_SHA)), "Invalid package.url 'ftp://x/a.zip': use an http:// or https:// URL"),
    (dict(package=dict(url='http://x/a.zip', checksum='md5:1')), "Invalid package.checksum 'md5:1': use sha256:<64 hex digits>"),
    (dict(package=dict(url='http://x/a.zip', checksum=RELEASE_SHA, timeout=-1)), 'Invalid package.timeout -1: use seconds > 0'),
    (dict(site=None), 'Invalid package: it is unpacked into site.physical_path, so it needs the site option'),
    (dict(state='stopped'), 'Invalid package: it installs the release of the site to start, so it needs state=started (not stopped)'),
    (dict(site=dict(NEW_SITE, physical_path='sites\\x')), "Invalid site.physical_path 'sites\\\\x'"),
])
def test_deploy_bad_input_is_refused_before_the_host_is_read(double, host, artifacts, overrides, message):
    with pytest.raises(CanaryError) as err:
        swap(double).deploy(deploy_params(artifacts, **overrides))
    assert message in err.value.message
    assert host.scripts == [] and artifacts.seen == []
