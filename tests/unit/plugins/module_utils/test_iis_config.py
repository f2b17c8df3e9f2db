"""Pure logic of the copy: option checks, path mapping, values IIS stores, comparison and the diff."""

from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.module_utils import _iis
from ansible_collections.immune.canary.plugins.module_utils import _iis_config as cfg
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

APP = 'app.example.com'
NEW = APP + '-2'
SECRET = 'S3cret-Pool-Pa55!'


def site(**kw):
    return dict(dict(physical_path='D:\\sites\\' + NEW), **kw)


def pool(**kw):
    return dict(site=site(app_pool=kw))


@pytest.mark.parametrize('params, message', [
    (pool(identity='gmsa'), 'Invalid site.app_pool.username: identity gmsa needs the account, for example CORP\\svc-app$'),
    (pool(identity='gmsa', username='CORP\\svc-app'), "Invalid site.app_pool.username 'CORP\\\\svc-app': a group Managed Service Account "
                                                      "is DOMAIN\\name$"),
    (pool(identity='gmsa', username='svc-app$'), "Invalid site.app_pool.username 'svc-app$'"),
    (pool(identity='gmsa', username='CORP\\a-name-far-too-long$'), "Invalid site.app_pool.username 'CORP\\\\a-name-far-too-long$'"),
    (pool(identity='gmsa', username='CORP\\svc-app$', password=SECRET), 'Invalid site.app_pool.password: a group Managed Service Account '
                                                                        'has no password'),
    (pool(identity='specific_user', username='CORP\\svc-app'), "Invalid site.app_pool.password: identity specific_user needs the account's "
                                                               "password"),
    (pool(identity='specific_user', username='CORP\\svc-app$', password=SECRET), "Invalid site.app_pool.username 'CORP\\\\svc-app$': a "
                                                                                 "name ending in $ is a managed service account; use identity gmsa"),
    (pool(identity='specific_user', username='CORP\\svc:app', password=SECRET), "Invalid site.app_pool.username 'CORP\\\\svc:app'"),
    (pool(identity='specific_user', username='CORP/svc', password=SECRET), "Invalid site.app_pool.username 'CORP/svc'"),
    (pool(identity='NetworkService', username='CORP\\svc'), 'Invalid site.app_pool: identity NetworkService is a built-in account and takes '
                                                            'no username or password'),
    (pool(username='CORP\\svc'), 'Invalid site.app_pool: username and password need identity specific_user or gmsa'),
    (pool(password=SECRET), 'Invalid site.app_pool: username and password need identity specific_user or gmsa'),
    (pool(identity='DomainUser'), "Invalid site.app_pool.identity 'DomainUser': use one of ApplicationPoolIdentity"),
    (dict(site=site(sections=[dict(section='windowsAuthentication', attributes={'enabled': True})])),
     "Invalid site.sections[0].section 'windowsAuthentication': not a section of IIS's configuration a site can hold; did you mean "
     "system.webServer/security/authentication/windowsAuthentication?"),
    (dict(site=site(sections=[dict(section='system.webServer/security/authentication/windowsAuthentication', location='../other',
                                   attributes={'enabled': True})])), "Invalid site.sections[0].location '../other'"),
    (dict(site=site(sections=[dict(section='system.webServer/security/requestFiltering', element='request Limits',
                                   attributes={'maxUrl': 1})])), "Invalid site.sections[0].element 'request Limits'"),
    (dict(site=site(sections=[dict(section='system.webServer/security/requestFiltering', attributes={})])),
     'Invalid site.sections[0].attributes: give at least one attribute to set'),
    (dict(site=site(sections=[dict(section='system.webServer/security/requestFiltering', attributes={'a b': 1})])),
     "Invalid site.sections[0].attributes: 'a b' is not an attribute name"),
    (dict(site=site(sections=[dict(section='system.webServer/security/requestFiltering', attributes={'x': [1]})])),
     'Invalid site.sections[0].attributes.x [1]: use a string, a number or true/false'),
    (dict(site=site(), copy=dict(exclude_sections=['system.webServer/security/authentication/WindowsAuthentication'])),
     "Invalid copy.exclude_sections[0] 'system.webServer/security/authentication/WindowsAuthentication': not a section of IIS's "
     "configuration a site can hold; did you mean system.webServer/security/authentication/windowsAuthentication?"),
    (dict(site=site(), copy=dict(shared_paths=['uploads'])), "Invalid copy.shared_paths[0] 'uploads': use an absolute Windows folder"),
    (dict(site=site(), copy=dict(source='a/b')), "Invalid copy.source 'a/b'"),
    (dict(site=site(physical_path='D:\\')), "Invalid site.physical_path 'D:\\\\'"),
])
def test_bad_input_names_the_option_and_never_the_password(params, message):
    with pytest.raises(CanaryError) as err:
        _iis.validate_swap(dict(dict(app=APP, active=NEW), **params))
    assert message in err.value.message
    assert SECRET not in err.value.message and SECRET not in repr(err.value.details)


@pytest.mark.parametrize('identity, username', [
    ('gmsa', 'CORP\\svc-app$'), ('gmsa', 'corp.example.com\\svc-app$'), ('specific_user', 'CORP\\svc-app'),
    ('specific_user', '.\\localsvc'), ('specific_user', 'svc-app@corp.example.com'), ('LocalSystem', None),
])
def test_valid_identities_pass(identity, username):
    password = SECRET if identity == 'specific_user' else None
    checked = _iis.validate_swap(dict(app=APP, active=NEW, site=site(app_pool=dict(identity=identity, username=username, password=password))))
    assert checked['app_pool']['identity'] == identity


@pytest.mark.parametrize('path, expected', [
    ('D:\\sites\\app-1', 'E:\\rel\\app-2'),
    ('D:\\Sites\\APP-1\\api', 'E:\\rel\\app-2\\api'),
    ('D:\\sites\\app-1\\static\\..\\img', 'E:\\rel\\app-2\\img'),
    ('D:\\shared\\uploads\\2024', 'D:\\shared\\uploads\\2024'),
    ('\\\\files\\share\\app', '\\\\files\\share\\app'),
])
def test_paths_move_into_the_release_or_stay_shared(path, expected):
    shared = ['D:\\shared\\uploads', '\\\\files\\share']
    assert cfg.map_path(path, 'D:\\sites\\app-1', 'E:\\rel\\app-2', shared, 'x', 'app-1') == expected


@pytest.mark.parametrize('path', ['D:\\sites\\app-10\\api', 'D:\\sites\\app-1\\..\\app-0', 'C:\\inetpub\\wwwroot', '%SystemDrive%\\x'])
def test_a_path_outside_the_running_site_is_refused_naming_the_option(path):
    with pytest.raises(CanaryError) as err:
        cfg.map_path(path, 'D:\\sites\\app-1', 'E:\\rel\\app-2', ['D:\\shared'], 'virtual directory /x of application /', 'app-1')
    assert err.value.message.startswith("Failed to copy site 'app-1': the physical path of virtual directory /x of application / is %s, "
                                        "outside the site's folder D:\\sites\\app-1" % path)
    assert err.value.message.endswith('list it (or a folder above it) in copy.shared_paths to keep it shared between versions')


@pytest.mark.parametrize('minutes, text', [(0, '00:00:00'), (20, '00:20:00'), (90, '01:30:00'), (1440, '1.00:00:00'), (2905, '2.00:25:00')])
def test_timespans_are_written_as_iis_stores_them(minutes, text):
    assert cfg.timespan(minutes) == text
    assert cfg.minutes_of(text) == minutes


@pytest.mark.parametrize('text, flags', [('1', 1), ('Sni', 1), ('Sni, CentralCertStore', 3), ('0', 0), ('None', 0), ('', 0)])
def test_ssl_flags_in_either_spelling(text, flags):
    assert cfg.ssl_flags(text) == flags


def tree(tag, attrs=None, *children, **extra):
    return dict(cfg.new(tag, attrs, list(children)), **extra)


def test_same_folds_iis_spellings_and_compares_secrets_by_fingerprint():
    a = tree('binding', {'protocol': 'https', 'bindingInformation': '*:443:x', 'sslFlags': 'Sni', 'certificateHash': 'ab' * 20})
    b = tree('binding', {'protocol': 'https', 'bindingInformation': '*:443:x', 'sslFlags': '1', 'certificateHash': 'AB' * 20})
    assert cfg.same(a, b)
    assert cfg.same(tree('x', {'enabled': 'True'}), tree('x', {'enabled': 'true'}))
    assert not cfg.same(tree('x', {'a': '1'}), tree('x', {'a': '2'}))
    stored = tree('processModel', {'userName': 'CORP\\svc'}, secret={'password': 'fp1'})
    assert cfg.same(stored, tree('processModel', {'userName': 'CORP\\svc'}, expect={'password': 'fp1'}, copy_secret={'attributes': ['password']}))
    assert not cfg.same(stored, tree('processModel', {'userName': 'CORP\\svc'}, expect={'password': 'fp2'}))
    # A value the user gives without a fingerprint to compare it with is always written.
    assert not cfg.same(stored, tree('processModel', {'userName': 'CORP\\svc'}, secret_values={'password': SECRET}))


def test_the_wire_form_keeps_instructions_and_drops_fingerprints():
    t = tree('add', {'name': 'p'}, tree('processModel', {}, secret={'password': 'fp'}, expect={'password': 'fp'},
                                        copy_secret={'from': {'kind': 'pool', 'name': 'old', 'steps': []}, 'attributes': ['password']}))
    wire = cfg.strip_secrets(t)
    instruction = {'from': {'kind': 'pool', 'name': 'old', 'steps': []}, 'attributes': ['password']}
    assert wire == {'tag': 'add', 'attrs': {'name': 'p'}, 'children': [
        {'tag': 'processModel', 'attrs': {}, 'children': [], 'copy_secret': instruction}]}


def test_item_keys_and_steps_name_each_element_as_the_host_finds_it():
    site_tree = tree('site', {'name': 's'},
                     tree('application', {'path': '/'}, tree('virtualDirectory', {'path': '/', 'physicalPath': 'D:\\s'}),
                          tree('virtualDirectory', {'path': '/x', 'physicalPath': 'D:\\x'})),
                     tree('bindings', {}, tree('binding', {'protocol': 'https', 'bindingInformation': '*:443:', 'sslFlags': '1'})),
                     tree('limits', {'connectionTimeout': '00:01:00'}))
    steps = {e['tag'] + e['attrs'].get('path', ''): s for e, s in cfg.walk(site_tree)}
    assert steps['virtualDirectory/x'] == [['application', {'path': '/'}], ['virtualDirectory', {'path': '/x'}]]
    assert steps['binding'] == [['bindings', {}], ['binding', {'protocol': 'https', 'bindingInformation': '*:443:'}]]
    assert steps['limits'] == [['limits', {}]]


def test_the_diff_names_only_the_sections_that_differ_and_hides_secrets():
    before = cfg.sections_of(tree('site', {'name': 'a-1', 'id': '1', 'serverAutoStart': 'true'},
                                  tree('limits', {'connectionTimeout': '00:01:00'})),
                             [('a-1', tree('add', {'name': 'a-1'}, tree('processModel', {'userName': 'CORP\\svc'}, secret={'password': 'fp'})))],
                             {}, 'a-1')
    after = cfg.sections_of(tree('site', {'name': 'a-2', 'id': '2'}, tree('limits', {'connectionTimeout': '00:01:00'})),
                            [('a-2', tree('add', {'name': 'a-2'}, tree('processModel', {'userName': 'CORP\\svc'}, expect={'password': 'fp'})))],
                            {}, 'a-2')
    diff = cfg.section_diff(before, after)
    assert diff == [{'section': 'app pool', 'before': {'name': 'a-1'}, 'after': {'name': 'a-2'}},
                    {'section': 'site', 'before': {'name': 'a-1', 'id': '1'}, 'after': {'name': 'a-2', 'id': '2'}}]
    text = cfg.render(after)
    assert '[app pool/processModel]\n  password = (encrypted)\n  userName = CORP\\svc\n' in text
    model = tree('processModel', {'userName': 'CORP\\svc'}, secret_values={'password': SECRET})
    changed = cfg.sections_of(None, [('a-2', tree('add', {'name': 'a-1'}, model))], {}, 'a-2')
    diff = cfg.section_diff(before, changed)
    assert {'section': 'app pool/processModel', 'before': {'password': '(encrypted)', 'userName': 'CORP\\svc'},
            'after': {'password': '(encrypted, set by this task)', 'userName': 'CORP\\svc'}} in diff
    assert SECRET not in repr(diff) + cfg.render(changed)


def test_pools_named_after_a_site_belong_to_it():
    assert cfg.named_after('app-1-api', 'app-1') and cfg.named_after('APP-1', 'app-1') and cfg.named_after('app-1_jobs', 'app-1')
    assert not cfg.named_after('app-10', 'app-1') and not cfg.named_after('shared', 'app-1')


def test_every_known_section_is_a_full_path():
    assert all(s.startswith(('system.webServer/', 'system.ftpServer/')) and '//' not in s for s in cfg.SECTIONS)
    assert 'system.webServer/security/authentication/windowsAuthentication' in cfg.SECTIONS
