"""iis_site_swap through real ansible-playbook against the WS-Management double."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile

import pytest

from doubles.iis_sim import add_production_site, snapshot
from doubles.winrm_double import WinRMDouble
from support import servers
from support.ansible_runner import BIN, ansible_env, run_module

APP = 'app.example.com'
OLD, NEW = APP + '-3456', APP + '-3457'
PUBLIC = dict(port=443, host_header=APP, sni=True)
SITE = dict(physical_path='D:\\sites\\' + NEW, bindings=[dict(PUBLIC, certificate_thumbprint='B2' * 20)])
KEYS = {'changed', 'previous_active', 'active', 'sites', 'actions', 'copied_from', 'site_diff', 'elapsed'}


@pytest.fixture
def double():
    with WinRMDouble() as d:
        host = d.add_host('web1')
        host.add_site('Default Web Site', [dict(protocol='http', port=80)])
        host.add_site(OLD, [PUBLIC], physical_path='D:\\sites\\' + OLD)
        d.running = d.listen('web1')
        yield d


def connection(double):
    return dict(winrm_host=double.running.host, winrm_port=double.running.port, winrm_scheme='http', winrm_transport='basic',
                winrm_user=double.user, winrm_password=double.password)


def run(double, check=False, diff=False, verbosity=0, **args):
    result = run_module('iis_site_swap', dict(connection(double), **args), check=check, diff=diff, verbosity=verbosity)
    assert double.password not in result.stdout + result.stderr
    return result


def test_deploy_check_real_idempotent(double):
    host = double.hosts['web1']
    args = dict(app=APP, active=NEW, site=SITE, prune=True)
    before = snapshot(host)

    check = run(double, check=True, diff=True, **args)
    assert not check.failed, check.result
    assert check.result['changed'] is True
    assert set(check.result) >= KEYS
    # the results callback drops 'diff'; the default callback prints it
    changed_lines = [line.strip() for line in check.stdout.splitlines() if line[:1] in '+-' and not line.startswith(('---', '+++'))]
    assert any(line.startswith('-') and OLD in line for line in changed_lines), check.stdout
    assert any(line.startswith('+') and NEW in line for line in changed_lines), check.stdout
    assert snapshot(host) == before

    real = run(double, diff=True, **args)
    assert real.result['changed'] is True
    assert real.result['previous_active'] == OLD
    assert real.result['active'] == NEW
    assert real.result['actions'] == ['create app pool %s (copy of %s)' % (NEW, OLD), 'create site %s (copy of %s)' % (NEW, OLD),
                                      'stop site ' + OLD, 'stop app pool ' + OLD, 'start app pool ' + NEW, 'start site ' + NEW,
                                      'remove site ' + OLD, 'remove app pool ' + OLD]
    assert [s['name'] for s in real.result['sites']] == [NEW]
    assert host.running() == ['Default Web Site', NEW]

    again_check = run(double, check=True, **args)
    assert again_check.result['changed'] is False
    again = run(double, **args)
    assert again.result['changed'] is False
    assert again.result['actions'] == []
    assert set(again.result) >= KEYS


def test_stop_then_revert(double):
    host = double.hosts['web1']
    stopped = run(double, app=APP, state='stopped')
    assert (stopped.result['changed'], stopped.result['previous_active'], stopped.result['active']) == (True, OLD, None)
    assert run(double, app=APP, state='stopped').result['changed'] is False
    started = run(double, app=APP, active=OLD)
    assert (started.result['changed'], started.result['active']) == (True, OLD)
    assert host.running() == ['Default Web Site', OLD]


def test_failures_name_the_cause(double):
    missing = run(double, app=APP, active=NEW)
    assert missing.failed
    assert missing.result['msg'] == ("Failed to start site 'app.example.com-3457': it does not exist on the host and no site definition "
                                     "was given to create it")
    assert 'elapsed' in missing.result

    bad = run_module('iis_site_swap', dict(connection(double), app=APP, active=NEW, winrm_password='not-the-Secret'))
    assert bad.failed
    assert bad.result['msg'] == ("Failed to read the IIS sites of app 'app.example.com' on %s: the credentials of user 'canary' were rejected "
                                 "by %s/wsman (HTTP 401)" % (double.running.host, double.running.url))
    assert 'not-the-Secret' not in bad.stdout + bad.stderr

    wrong = run(double, app=APP, active=NEW, site=dict(SITE, bindings=[dict(port=443, host_header='bad host')]))
    assert wrong.result['msg'] == "Invalid site.bindings[0].host_header 'bad host': use a DNS name (letters, digits, dots, hyphens) or an empty string"
    assert double.hosts['web1'].scripts == [s for s in double.hosts['web1'].scripts if s[2]['operation'] == 'query']


def test_ansible_doc_renders_both_modules():
    for name in ('iis_site_swap', 'iis_package'):
        proc = subprocess.run([str(BIN / 'ansible-doc'), 'immune.canary.' + name], capture_output=True, text=True, env=ansible_env(), check=False)
        assert proc.returncode == 0, proc.stderr
        assert 'winrm_password' in proc.stdout
        assert 'RETURN VALUES' in proc.stdout


def release_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as archive:
        archive.writestr('index.html', 'v3457')
    return buf.getvalue()


RELEASE = release_zip()
TOKEN = 'Bearer deploy-T0ken-9c1'


@pytest.fixture
def artifacts():
    class Handler(servers.QuietHandler):
        def do_GET(self):  # noqa: N802 - stdlib name
            body = RELEASE if self.headers.get('Authorization') == TOKEN else b''
            self.send_response(200 if body else 403)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with servers.serving(Handler) as running:
        yield running


def test_deploy_with_package_is_one_task_and_keeps_the_token_out(double, artifacts):
    host = double.hosts['web1']
    package = dict(url=artifacts.url + '/3457.zip', checksum='sha256:' + hashlib.sha256(RELEASE).hexdigest(), headers={'Authorization': TOKEN})
    args = dict(app=APP, active=NEW, keep=[OLD], prune=True, site=SITE, package=package)
    done = run(double, **args)
    assert not done.failed, done.result
    assert TOKEN not in done.stdout + done.stderr
    assert done.result['previous_active'] == OLD and done.result['active'] == NEW
    assert done.result['actions'][:2] == ['stop site ' + OLD, 'stop app pool ' + OLD]
    assert 'install package ' + SITE['physical_path'] in done.result['actions']
    assert done.result['actions'][-1] == 'start site ' + NEW
    assert set(done.result['timings']) == {'stop', 'package', 'start'}
    assert done.result['package']['changed'] is True and done.result['package']['size'] == len(RELEASE)
    assert host.running() == ['Default Web Site', NEW]
    assert host.content[SITE['physical_path']]['files'] == ['index.html']

    bad = run(double, **{**args, 'package': dict(package, headers={'Authorization': 'Bearer wrong-T0ken'})})
    assert bad.failed is False and bad.result['changed'] is False  # the release is in place: nothing is downloaded
    assert 'wrong-T0ken' not in bad.stdout + bad.stderr


# -- the new site is a copy of the running one -----------------------------------

POOL_SECRET = 'Pool-PW-MARK-51c9e2'
OVERRIDE_SECRET = 'Override-PW-MARK-0d7f3a'


@pytest.fixture
def production():
    """A host whose running site looks like production's: /api, /static, Windows authentication in a <location>,
    request limits, and a pool running as a domain account whose password IIS keeps encrypted."""
    with WinRMDouble() as d:
        host = d.add_host('web1')
        add_production_site(host, OLD, 'D:\\sites\\' + OLD, [dict(PUBLIC, certificate_thumbprint='B2' * 20)], identity='SpecificUser',
                            user_name='CORP\\svc-app', password=POOL_SECRET)
        host.add_location(OLD + '/legacy', '<system.webServer><myVendorModule enabled="true" /></system.webServer>')
        d.running = d.listen('web1')
        yield d


def test_copy_check_real_idempotent_shows_the_diff_and_never_the_password(production):
    host = production.hosts['web1']
    args = dict(app=APP, active=NEW, prune=True, keep=[OLD], site=dict(physical_path='D:\\sites\\' + NEW, app_pool=dict(idle_timeout=5)))
    before = snapshot(host)

    check = run(production, check=True, diff=True, verbosity=3, **args)
    assert not check.failed, check.result
    assert check.result['changed'] is True and check.result['copied_from'] == OLD
    assert snapshot(host) == before
    # --diff: which site runs, then the running site's configuration against the new one's, section by section.
    assert '--- before: site %s (running)' % OLD in check.stdout and '+++ after: site %s' % NEW in check.stdout
    assert '-  idleTimeout = 00:00:00' in check.stdout and '+  idleTimeout = 00:05:00' in check.stdout
    assert '+  physicalPath = D:\\sites\\%s\\api' % NEW in check.stdout
    # The <location> sections are copied as they are: none of them is a changed line.
    assert not [line for line in check.stdout.splitlines() if line.startswith(('-[location', '+[location'))]
    # The section the host cannot read is named in a warning.
    # ansible-core 2.18 wraps warnings at 80 columns.
    assert 'section system.webServer/myVendorModule of <location path="%s/legacy">' % OLD in ' '.join((check.stdout + check.stderr).split())
    sections = {d['section'] for d in check.result['site_diff']}
    assert 'app pool/processModel' in sections and 'site/application[/api]/virtualDirectory[/]' in sections

    real = run(production, diff=True, **args)
    assert real.result['changed'] is True and host.running() == [NEW]
    assert host.decrypt(host.pool_element(NEW).find('processModel').get('password')) == POOL_SECRET
    assert host.location_elements(NEW)[0].find('system.webServer/security/authentication/windowsAuthentication').get('enabled') == 'true'

    again_check = run(production, check=True, **args)
    assert again_check.result['changed'] is False
    again = run(production, **args)
    assert (again.result['changed'], again.result['actions'], again.result['site_diff']) == (False, [], [])
    for done in (check, real, again_check, again):
        assert POOL_SECRET not in done.stdout + done.stderr


def test_identity_override_with_a_password_is_never_shown(production):
    host = production.hosts['web1']
    args = dict(app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW,
                                               app_pool=dict(identity='specific_user', username='CORP\\svc-new', password=OVERRIDE_SECRET)))
    first = run(production, diff=True, verbosity=3, **args)
    assert not first.failed, first.result
    assert host.pool_element(NEW).find('processModel').get('userName') == 'CORP\\svc-new'
    assert host.decrypt(host.pool_element(NEW).find('processModel').get('password')) == OVERRIDE_SECRET
    second = run(production, check=True, diff=True, verbosity=3, **args)
    assert second.result['changed'] is False
    for done in (first, second):
        assert OVERRIDE_SECRET not in done.stdout + done.stderr
        assert POOL_SECRET not in done.stdout + done.stderr

    gmsa = dict(identity='gmsa', username='CORP\\svc-new$', password=OVERRIDE_SECRET)
    bad = run(production, app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW, app_pool=gmsa))
    assert bad.failed and bad.result['msg'] == ('Invalid site.app_pool.password: a group Managed Service Account has no password (Windows '
                                                'gets it from Active Directory); leave it empty')
    assert OVERRIDE_SECRET not in bad.stdout + bad.stderr


def test_a_copy_that_would_leave_the_release_folder_is_refused(production):
    host = production.hosts['web1']
    host.add_virtual_directory(OLD, '/uploads', 'E:\\uploads')
    before = snapshot(host)
    refused = run(production, app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW))
    assert refused.failed
    assert refused.result['msg'].startswith("Failed to copy site 'app.example.com-3456': the physical path of virtual directory /uploads of "
                                            "application / is E:\\uploads, outside the site's folder")
    assert snapshot(host) == before
    shared = run(production, app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW), copy=dict(shared_paths=['E:\\uploads']))
    assert shared.result['changed'] is True
