# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IIS configuration as data: copy the running site, apply what the user states, compare.

The host reports parts of ``applicationHost.config`` as trees, one JSON
object per XML element::

    {"tag": "add", "attrs": {"name": "app-1", "startMode": "AlwaysRunning"},
     "children": [{"tag": "processModel", "attrs": {...}, "children": [],
                   "secret": {"password": "<fingerprint>"}}]}

Attribute values are the text IIS stored. An encrypted attribute (a pool's
password, a virtual directory's password, ...) never leaves the host: the
tree names it in ``secret`` with a fingerprint (a keyed hash whose key the
host draws for each read and forgets), so two reads in one query can be
compared without anyone learning the value.

A desired tree that needs an encrypted attribute carries either
``copy_secret`` (where on the host to copy it from: the host reads and
writes it inside IIS's configuration system) or ``secret_values`` (a value
the user gave, for example ``site.app_pool.password``).

The configuration the module reads for a site:

- the ``<site>`` element (bindings, applications, virtual directories,
  limits, logging, ...);
- the ``<add>`` element of each app pool its applications run in;
- every ``<location path="SITE">`` and ``<location path="SITE/...">`` and the
  sections in them (authentication, authorization, request filtering, ...).

Knows nothing about Ansible or WinRM; raises CanaryError.
"""

from __future__ import annotations

import copy
import ntpath
import re

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

# Sections an IIS site's <location> can hold (IIS configuration reference,
# https://learn.microsoft.com/iis/configuration/; the last groups are the
# URL Rewrite, ASP.NET Core Module, HttpPlatformHandler, CORS and ARR
# modules). Options that name a section are checked against this list.
SECTIONS = frozenset("""
system.webServer/applicationInitialization
system.webServer/asp
system.webServer/caching
system.webServer/cgi
system.webServer/defaultDocument
system.webServer/directoryBrowse
system.webServer/handlers
system.webServer/httpCompression
system.webServer/httpErrors
system.webServer/httpLogging
system.webServer/httpProtocol
system.webServer/httpRedirect
system.webServer/httpTracing
system.webServer/isapiFilters
system.webServer/modules
system.webServer/odbcLogging
system.webServer/security/access
system.webServer/security/applicationDependencies
system.webServer/security/authentication/anonymousAuthentication
system.webServer/security/authentication/basicAuthentication
system.webServer/security/authentication/clientCertificateMappingAuthentication
system.webServer/security/authentication/digestAuthentication
system.webServer/security/authentication/iisClientCertificateMappingAuthentication
system.webServer/security/authentication/windowsAuthentication
system.webServer/security/authorization
system.webServer/security/dynamicIpSecurity
system.webServer/security/ipSecurity
system.webServer/security/isapiCgiRestriction
system.webServer/security/requestFiltering
system.webServer/serverRuntime
system.webServer/serverSideInclude
system.webServer/staticContent
system.webServer/tracing/traceFailedRequests
system.webServer/tracing/traceProviderDefinitions
system.webServer/urlCompression
system.webServer/validation
system.webServer/webdav/authoring
system.webServer/webdav/authoringRules
system.webServer/webSocket
system.ftpServer/caching
system.ftpServer/firewallSupport
system.ftpServer/log
system.ftpServer/security/authorization
system.ftpServer/security/ipSecurity
system.ftpServer/security/requestFiltering
system.ftpServer/serverRuntime
system.webServer/rewrite/allowedServerVariables
system.webServer/rewrite/outboundRules
system.webServer/rewrite/rewriteMaps
system.webServer/rewrite/rules
system.webServer/aspNetCore
system.webServer/httpPlatform
system.webServer/cors
system.webServer/proxy
""".split())

# Attributes that tell two collection items apart, in order of preference.
KEY_ATTRS = ('name', 'path', 'value', 'key', 'fileExtension', 'statusCode', 'ipAddress', 'verb', 'url', 'users', 'roles', 'id')
# Tags of collection items (repeatable children) in the sections above.
ITEM_TAGS = frozenset(('add', 'remove', 'clear', 'application', 'virtualDirectory', 'binding', 'rule', 'error', 'mimeMap', 'provider',
                       'scheduledTask', 'environmentVariable'))
# Attributes of a site that the start and stop steps own: never copied, never compared.
RUNTIME_SITE_ATTRS = ('serverAutoStart',)
# <location> attributes the IIS configuration API can set (ConfigurationSection.OverrideMode);
# any other one (inheritInChildApplications, allowOverride) is named in a warning.
LOCATION_ATTRS = ('overrideMode',)

BUILT_IN_IDENTITIES = ('ApplicationPoolIdentity', 'NetworkService', 'LocalService', 'LocalSystem')
IDENTITIES = BUILT_IN_IDENTITIES + ('specific_user', 'gmsa')
IDENTITY_TYPE = {'specific_user': 'SpecificUser', 'gmsa': 'SpecificUser'}
# sAMAccountName: at most 20 characters, none of " / \ [ ] : ; | = , + * ? < > @ (a gMSA: at most 15, then $).
_ACCOUNT_CHARS = r'[^"/\\\[\]:;|=,+*?<>@\x00-\x1f]'
_DOMAIN = r'(?:[A-Za-z0-9][A-Za-z0-9-]{0,14}|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)'
DOMAIN_ACCOUNT_RE = re.compile(r'^(?:%s|\.)\\%s{1,20}$' % (_DOMAIN, _ACCOUNT_CHARS))
UPN_RE = re.compile(r'^%s{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$' % _ACCOUNT_CHARS)
GMSA_RE = re.compile(r'^%s\\%s{1,15}\$$' % (_DOMAIN, _ACCOUNT_CHARS))
NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_.-]*$')
WINDOWS_PATH_RE = re.compile(r'^([A-Za-z]:\\|\\\\[^\\]+\\[^\\]+)')

POOL_DEFAULTS = dict(managed_runtime='v4.0', pipeline_mode='Integrated', identity='ApplicationPoolIdentity', start_mode='AlwaysRunning',
                     idle_timeout=0)


# -- trees ---------------------------------------------------------------------

def new(tag, attrs=None, children=None):
    return {'tag': tag, 'attrs': dict(attrs or {}), 'children': list(children or [])}


def child(tree, tag):
    """The first child element ``tag`` of ``tree``, or None."""
    return next((c for c in tree['children'] if c['tag'] == tag), None)


def ensure_child(tree, tag):
    found = child(tree, tag)
    if found is None:
        found = new(tag)
        tree['children'].append(found)
    return found


def item_key(tree, siblings=None):
    """The attributes that identify ``tree`` among its siblings ({} for a single child element)."""
    attrs = tree['attrs']
    if tree['tag'] == 'binding':
        return {k: attrs[k] for k in ('protocol', 'bindingInformation') if k in attrs}
    repeated = siblings is not None and sum(1 for s in siblings if s['tag'] == tree['tag']) > 1
    if tree['tag'] not in ITEM_TAGS and not repeated:
        return {}
    for name in KEY_ATTRS:
        if name in attrs:
            return {name: attrs[name]}
    return dict(attrs)


def walk(tree, steps=()):
    """(element, steps from ``tree``) for ``tree`` and every element below it."""
    yield tree, list(steps)
    for c in tree['children']:
        yield from walk(c, list(steps) + [[c['tag'], item_key(c, tree['children'])]])


def strip_secrets(tree):
    """A copy of ``tree`` for the wire: no fingerprints, no expectations."""
    out = {'tag': tree['tag'], 'attrs': dict(tree['attrs']), 'children': [strip_secrets(c) for c in tree['children']]}
    for key in ('copy_secret', 'secret_values'):
        if tree.get(key):
            out[key] = copy.deepcopy(tree[key])
    return out


def _norm_value(name, value):
    text = str(value)
    if text in ('True', 'False'):
        return text.lower()
    if name == 'certificateHash':
        return text.upper()
    if name == 'sslFlags':
        return str(ssl_flags(text))
    return text


def ssl_flags(text):
    names = {'none': 0, 'sni': 1, 'centralcertstore': 2, 'disablehttp2': 4, 'disableocspstp': 8, 'disablequic': 16, 'disabletls13': 32,
             'disablelegacytls': 64}
    total = 0
    for part in str(text).replace(' ', '').split(','):
        if part.isdigit():
            total |= int(part)
        elif part:
            total |= names.get(part.lower(), 0)
    return total


def canonical(tree, ignore=()):
    """A comparable form of ``tree``: secrets by fingerprint, IIS's spellings of flags and booleans folded."""
    attrs = {k: _norm_value(k, v) for k, v in tree['attrs'].items() if k not in ignore}
    if tree['tag'] == 'binding' and attrs.get('sslFlags') == '0':
        del attrs['sslFlags']
    secrets = dict(tree.get('secret') or {})
    secrets.update(tree.get('expect') or {})
    for name in list((tree.get('copy_secret') or {}).get('attributes') or []) + list(tree.get('secret_values') or {}):
        secrets.setdefault(name, None)
    return (tree['tag'], tuple(sorted(attrs.items())), tuple(sorted(secrets.items())), tuple(canonical(c) for c in tree['children']))


def same(a, b, ignore=()):
    """Whether two trees hold the same configuration (a secret whose fingerprint is unknown differs)."""
    if a is None or b is None:
        return a is b
    ca, cb = canonical(a, ignore), canonical(b, ignore)
    if any(fp is None for _n, fp in ca[2] + cb[2]):
        return False
    return ca == cb


# -- values IIS stores -------------------------------------------------------------

def timespan(minutes):
    days, rest = divmod(int(minutes), 24 * 60)
    text = '%02d:%02d:00' % divmod(rest, 60)
    return '%d.%s' % (days, text) if days else text


def minutes_of(text):
    match = re.match(r'^(?:(\d+)\.)?(\d+):(\d+):(\d+)', str(text or ''))
    if not match:
        return None
    days, hours, mins, _secs = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + mins


def bool_text(value):
    return 'true' if value else 'false'


def scalar_text(option, value):
    if isinstance(value, bool):
        return bool_text(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    raise CanaryError('Invalid %s %r: use a string, a number or true/false' % (option, value))


# -- paths -------------------------------------------------------------------------

def norm_path(path):
    return ntpath.normpath(path).rstrip('\\') if path else path


def is_under(path, root):
    """Whether Windows path ``path`` is ``root`` or inside it (case-insensitive, after resolving ..)."""
    p, r = norm_path(path).lower(), norm_path(root).lower()
    return p == r or p.startswith(r + '\\')


def map_path(path, source_root, release_root, shared, where, source, option_hint='copy.shared_paths'):
    """Where ``path`` of the running site goes in the release: inside the running
    site's folder it moves into the release folder; a listed shared folder
    stays; anything else is refused (nothing on the host is touched yet)."""
    if is_under(path, source_root):
        rest = norm_path(path)[len(norm_path(source_root)):]
        mapped = norm_path(release_root) + rest
        if not is_under(mapped, release_root):  # pragma: no cover - normpath makes this impossible; kept as the rule
            raise CanaryError('Failed to copy site %r: %s maps to %s, outside the release folder %s' % (source, where, mapped, release_root))
        return mapped
    for folder in shared:
        if is_under(path, folder):
            return path
    raise CanaryError('Failed to copy site %r: the physical path of %s is %s, outside the site\'s folder %s, so it has no place in the '
                      'release folder %s; list it (or a folder above it) in %s to keep it shared between versions'
                      % (source, where, path, source_root, release_root, option_hint))


# -- validation of the options -----------------------------------------------------

def validate_section(option, value):
    if value not in SECTIONS:
        close = sorted(s for s in SECTIONS if s.lower() == str(value).lower() or s.rsplit('/', 1)[-1].lower() == str(value).rsplit('/', 1)[-1].lower())
        example = 'system.webServer/security/authentication/windowsAuthentication'
        hint = ('; did you mean %s?' % ' or '.join(close)) if close else '; use the full section path, for example ' + example
        raise CanaryError('Invalid %s %r: not a section of IIS\'s configuration a site can hold%s' % (option, value, hint))
    return value


def validate_identity(pool):
    """Check the identity options of ``site.app_pool``; the password is never part of a message."""
    identity, username, password = pool.get('identity'), pool.get('username'), pool.get('password')
    if identity is None:
        if username or password:
            raise CanaryError('Invalid site.app_pool: username and password need identity specific_user or gmsa')
        return
    if identity not in IDENTITIES:
        raise CanaryError('Invalid site.app_pool.identity %r: use one of %s' % (identity, ', '.join(IDENTITIES)))
    if identity in BUILT_IN_IDENTITIES:
        if username or password:
            raise CanaryError('Invalid site.app_pool: identity %s is a built-in account and takes no username or password; use identity '
                              'specific_user or gmsa for a domain account' % identity)
        return
    if not username:
        raise CanaryError('Invalid site.app_pool.username: identity %s needs the account, for example %s'
                          % (identity, 'CORP\\svc-app$' if identity == 'gmsa' else 'CORP\\svc-app'))
    if identity == 'gmsa':
        if not GMSA_RE.match(username):
            raise CanaryError('Invalid site.app_pool.username %r: a group Managed Service Account is DOMAIN\\name$ (at most 15 characters '
                              'before the $, none of " / \\ [ ] : ; | = , + * ? < > @)' % username)
        if password:
            raise CanaryError('Invalid site.app_pool.password: a group Managed Service Account has no password (Windows gets it from '
                              'Active Directory); leave it empty')
        return
    if username.endswith('$'):
        raise CanaryError('Invalid site.app_pool.username %r: a name ending in $ is a managed service account; use identity gmsa' % username)
    if not (DOMAIN_ACCOUNT_RE.match(username) or UPN_RE.match(username)):
        raise CanaryError('Invalid site.app_pool.username %r: use DOMAIN\\name, .\\name (a local account) or name@domain.example.com '
                          '(at most 20 characters in the name, none of " / \\ [ ] : ; | = , + * ? < >)' % username)
    if not password:
        raise CanaryError('Invalid site.app_pool.password: identity specific_user needs the account\'s password')


def validate_overrides(sections):
    """``site.sections``: settings stated for the new site's <location> sections."""
    out = []
    for i, entry in enumerate(sections or []):
        option = 'site.sections[%d]' % i
        section = validate_section(option + '.section', entry.get('section'))
        location = (entry.get('location') or '').strip('/')
        if location and (not re.match(r'^[^\\:*?"<>|\x00-\x1f]+$', location) or any(part in ('', '.', '..') for part in location.split('/'))):
            raise CanaryError('Invalid %s.location %r: use a path below the site such as api or api/health (no .., no backslash)'
                              % (option, entry.get('location')))
        element = [p for p in (entry.get('element') or '').split('/') if p]
        for part in element:
            if not NAME_RE.match(part):
                raise CanaryError('Invalid %s.element %r: use child element names separated by /, such as requestLimits' % (option, entry.get('element')))
        attributes = entry.get('attributes') or {}
        if not attributes:
            raise CanaryError('Invalid %s.attributes: give at least one attribute to set' % option)
        values = {}
        for name, value in attributes.items():
            if not NAME_RE.match(str(name)):
                raise CanaryError('Invalid %s.attributes: %r is not an attribute name' % (option, name))
            values[str(name)] = scalar_text('%s.attributes.%s' % (option, name), value)
        out.append({'section': section, 'location': location, 'element': element, 'attributes': values})
    return out


def validate_copy(copy_opt):
    """The ``copy`` option, normalised."""
    copy_opt = dict(copy_opt or {})
    out = {'enabled': copy_opt.get('enabled', True) is not False, 'source': copy_opt.get('source') or None, 'shared_paths': [],
           'exclude_sections': []}
    for i, path in enumerate(copy_opt.get('shared_paths') or []):
        if not isinstance(path, str) or not WINDOWS_PATH_RE.match(path) or '\x00' in path:
            raise CanaryError('Invalid copy.shared_paths[%d] %r: use an absolute Windows folder such as D:\\shared\\uploads or \\\\files\\uploads'
                              % (i, path))
        out['shared_paths'].append(path)
    for i, name in enumerate(copy_opt.get('exclude_sections') or []):
        out['exclude_sections'].append(validate_section('copy.exclude_sections[%d]' % i, name))
    return out


# -- building the new site -----------------------------------------------------------

def site_pools(tree, root_pool=None):
    """App pools the applications of site ``tree`` run in, the root application's first."""
    pools = [root_pool] if root_pool else []
    for element, _steps in walk(tree):
        name = element['attrs'].get('applicationPool')
        if element['tag'] in ('application', 'applicationDefaults') and name and name not in pools:
            pools.append(name)
    return pools


def named_after(name, site):
    """Whether app pool ``name`` belongs to ``site`` by its name (the site's name, then - _ or . and more)."""
    low, base = name.lower(), site.lower()
    return low == base or (low.startswith(base) and low[len(base)] in '-_.')


def location_paths(config, site):
    """Location paths of ``site`` (its own and those below it) in ``config``."""
    low = site.lower()
    return sorted(p for p in (config.get('locations') or {}) if p.lower() == low or p.lower().startswith(low + '/'))


def _rebase_location(path, source, active):
    return active + path[len(source):]


def _mark_copy(tree, locator_base):
    """Replace fingerprints by instructions to copy each encrypted attribute on the host."""
    for element, steps in walk(tree):
        if element.get('secret'):
            element['copy_secret'] = {'from': dict(locator_base, steps=steps), 'attributes': sorted(element['secret'])}
            element['expect'] = dict(element.pop('secret'))
    return tree


def binding_tree(b):
    attrs = {'protocol': b['protocol'], 'bindingInformation': '%s:%s:%s' % (b['ip'], b['port'], b['host_header'])}
    if b['protocol'] == 'https':
        if b.get('sni'):
            attrs['sslFlags'] = '1'
        if b.get('certificate_thumbprint'):
            attrs['certificateHash'] = b['certificate_thumbprint']
            attrs['certificateStoreName'] = b.get('certificate_store') or 'My'
    return new('binding', attrs)


def tree_bindings(tree):
    """The bindings of site ``tree`` as the module's binding dicts."""
    out = []
    for b in (child(tree, 'bindings') or new('bindings'))['children']:
        if b['tag'] != 'binding':
            continue
        info = b['attrs'].get('bindingInformation', '')
        last = info.rfind(':')
        middle = info.rfind(':', 0, last)
        try:
            port = int(info[middle + 1:last])
        except ValueError:
            port = 0
        out.append({'protocol': b['attrs'].get('protocol', 'http'), 'ip': info[:middle], 'port': port, 'host_header': info[last + 1:],
                    'certificate_thumbprint': b['attrs'].get('certificateHash', '').upper(), 'certificate_store': b['attrs'].get('certificateStoreName', ''),
                    'sni': bool(ssl_flags(b['attrs'].get('sslFlags', '0')) & 1)})
    return out


def fresh_site(active, site_id, release_root, pool_name):
    root = new('application', {'path': '/', 'applicationPool': pool_name}, [new('virtualDirectory', {'path': '/', 'physicalPath': release_root})])
    return new('site', {'name': active, 'id': str(site_id)}, [root, new('bindings')])


def fresh_pool(pool_name):
    return new('add', {'name': pool_name}, [new('processModel')])


def apply_pool_overrides(tree, pool, check_fp):
    """What ``site.app_pool`` states, written over the pool ``tree``."""
    attrs = tree['attrs']
    for option, attr in (('managed_runtime', 'managedRuntimeVersion'), ('pipeline_mode', 'managedPipelineMode'), ('start_mode', 'startMode')):
        if pool.get(option) is not None:
            attrs[attr] = str(pool[option])
    model = ensure_child(tree, 'processModel')
    if pool.get('idle_timeout') is not None:
        model['attrs']['idleTimeout'] = timespan(pool['idle_timeout'])
    identity = pool.get('identity')
    if identity is None:
        return
    model['attrs']['identityType'] = IDENTITY_TYPE.get(identity, identity)
    for key in ('copy_secret', 'secret', 'expect', 'secret_values'):
        model.pop(key, None)
    model['attrs'].pop('password', None)
    if identity in BUILT_IN_IDENTITIES:
        model['attrs'].pop('userName', None)
        return
    model['attrs']['userName'] = pool['username']
    if identity == 'specific_user':
        model['secret_values'] = {'password': pool['password']}
        if check_fp:
            model['expect'] = {'password': check_fp}
    else:
        # A gMSA has an empty password: the attribute is left out.
        model['attrs'].pop('password', None)


def apply_site_overrides(tree, site):
    if site.get('bindings'):
        bindings = ensure_child(tree, 'bindings')
        bindings['children'] = [binding_tree(b) for b in site['bindings']]
        bindings['attrs'] = {}
    if site.get('preload_enabled') is not None:
        ensure_child(tree, 'applicationDefaults')['attrs']['preloadEnabled'] = bool_text(site['preload_enabled'])
        for app in tree['children']:
            if app['tag'] == 'application' and 'preloadEnabled' in app['attrs']:
                app['attrs']['preloadEnabled'] = bool_text(site['preload_enabled'])


def apply_section_overrides(locations, active, overrides):
    for entry in overrides:
        path = active + ('/' + entry['location'] if entry['location'] else '')
        location = locations.setdefault(path, {'attrs': {}, 'sections': {}})
        section = entry['section']
        tree = location['sections'].get(section)
        if tree is None:
            tree = location['sections'][section] = new(section.rsplit('/', 1)[-1])
        for part in entry['element']:
            tree = ensure_child(tree, part)
        tree['attrs'].update(entry['attributes'])


def choose_source(app, active, inventory, copy_opt):
    """(source site name or None, warning or None): what the new site copies.

    The site named in copy.source; else the app's running site (the active
    one itself when it runs); else, when none runs, the active site if it
    exists (it was copied before); else the newest site of the app."""
    sites = {s['name']: s for s in inventory['sites']}
    if copy_opt['source']:
        if copy_opt['source'] not in sites:
            raise CanaryError('Failed to copy site %r: it does not exist on the host (copy.source)' % copy_opt['source'])
        return copy_opt['source'], None
    if active in sites and not copy_opt['enabled']:
        return active, None
    if not copy_opt['enabled']:
        return None, None
    app_sites = [s for s in inventory['sites'] if s['name'] == app or s['name'].startswith(app + '-')]
    running = sorted(s['name'] for s in app_sites if s['state'] == 'Started')
    if running:
        return (active if active in running else running[0]), None
    if active in sites:
        return active, None
    others = sorted(app_sites, key=lambda s: s['id'])
    if others:
        newest = others[-1]['name']
        return newest, ('no site of app %r runs, so the new site %r copies the newest one, %r' % (app, active, newest))
    return None, None


def build_desired(app, active, site, inventory, copy_opt, overrides, next_id):
    """The desired configuration of ``active``: a copy of the source site
    with only names and physical paths changed, then what ``site`` states.

    Raises CanaryError before anything is touched when a path cannot be
    mapped into the release folder or the source cannot be read."""
    config = inventory.get('config') or {}
    sites = {s['name']: s for s in inventory['sites']}
    source, note = choose_source(app, active, inventory, copy_opt)
    warnings = [note] if note else []
    current = sites.get(active)
    release_root = site['physical_path']
    pool = site['app_pool']
    checks = list(config.get('checks') or [])
    check_fp = checks[0] if checks and pool.get('password') else None

    if source is not None and source not in (config.get('sites') or {}):
        raise CanaryError('Failed to copy site %r: the host did not report its configuration' % source)

    pools = []
    if source is None:
        pool_name = pool.get('name') or (current['app_pool'] if current else active)
        tree = fresh_site(active, current['id'] if current else next_id, release_root, pool_name)
        pool_tree = fresh_pool(pool_name)
        defaults = dict(POOL_DEFAULTS, **{k: v for k, v in pool.items() if v is not None})
        apply_pool_overrides(pool_tree, defaults, check_fp)
        pools.append({'name': pool_name, 'tree': pool_tree, 'source': None})
        locations = {}
        site = dict(site, preload_enabled=True if site.get('preload_enabled') is None else site['preload_enabled'])
        if not site.get('bindings'):
            raise CanaryError('Invalid site.bindings []: give at least one binding (there is no site of app %r to copy them from)' % app)
        apply_site_overrides(tree, site)
    else:
        src = sites[source]
        src_tree = config['sites'][source]
        source_root = src['physical_path']
        tree = _mark_copy(copy.deepcopy(src_tree), {'kind': 'site', 'name': source})
        tree['attrs']['name'] = active
        tree['attrs']['id'] = str(current['id'] if current else (src['id'] if source == active else next_id))
        for key in RUNTIME_SITE_ATTRS:
            tree['attrs'].pop(key, None)
        # Physical paths: every application's and virtual directory's.
        for app_el in tree['children']:
            if app_el['tag'] != 'application':
                continue
            for vdir in app_el['children']:
                if vdir['tag'] == 'virtualDirectory' and 'physicalPath' in vdir['attrs']:
                    where = 'virtual directory %s of application %s' % (vdir['attrs'].get('path', '/'), app_el['attrs'].get('path', '/'))
                    vdir['attrs']['physicalPath'] = map_path(vdir['attrs']['physicalPath'], source_root, release_root,
                                                             copy_opt['shared_paths'], where, source)
        # App pools: the root application's becomes the new site's own pool;
        # a pool named after the running site is copied under the new name;
        # any other pool is shared with other sites and stays as it is.
        root_pool = src['app_pool']
        default_name = (current['app_pool'] if current else active) if source != active else root_pool
        pool_name = pool.get('name') or default_name
        renamed = {}
        for name in site_pools(src_tree, root_pool):
            if name == root_pool:
                renamed[name] = pool_name
            elif source != active and named_after(name, source):
                renamed[name] = active + name[len(source):]
            else:
                renamed[name] = name
                if source != active:
                    warnings.append('site %r runs applications in app pool %r, which is not named after it: the new site %r shares that '
                                    'pool instead of getting a copy' % (source, name, active))
        for element, _steps in walk(tree):
            if element['tag'] in ('application', 'applicationDefaults') and element['attrs'].get('applicationPool') in renamed:
                element['attrs']['applicationPool'] = renamed[element['attrs']['applicationPool']]
        for old, new_name in renamed.items():
            if new_name == old and old != root_pool:
                continue
            src_pool = (config.get('pools') or {}).get(old)
            if src_pool is None:
                raise CanaryError('Failed to copy site %r: the host did not report the configuration of its app pool %r' % (source, old))
            pool_tree = _mark_copy(copy.deepcopy(src_pool), {'kind': 'pool', 'name': old})
            pool_tree['attrs']['name'] = new_name
            pools.append({'name': new_name, 'tree': pool_tree, 'source': old})
        apply_pool_overrides(pools[0]['tree'], pool, check_fp)
        # <location path="SOURCE..."> sections, under the new name.
        locations = {}
        for path in location_paths(config, source):
            found = config['locations'][path]
            target = _rebase_location(path, source, active)
            attrs = {k: v for k, v in found.get('attrs', {}).items() if k in LOCATION_ATTRS}
            for k in sorted(set(found.get('attrs', {})) - set(LOCATION_ATTRS) - {'path'}):
                warnings.append('<location path="%s"> has %s="%s", which the IIS configuration API cannot set: the new site\'s '
                                '<location path="%s"> does not have it' % (path, k, found['attrs'][k], target))
            sections = {}
            for name, section_tree in sorted(found.get('sections', {}).items()):
                if name in copy_opt['exclude_sections']:
                    warnings.append('section %s of <location path="%s"> is not copied (copy.exclude_sections)' % (name, path))
                    continue
                sections[name] = _mark_copy(copy.deepcopy(section_tree), {'kind': 'section', 'location': path, 'section': name})
            if sections:
                locations[target] = {'attrs': attrs, 'sections': sections}
        for item in config.get('unreadable') or []:
            if item['where'] == source or item['where'].lower().startswith(source.lower() + '/') or item['where'] in renamed:
                what = item.get('what') or item['where']
                warnings.append('%s of site %r could not be read on the host and is not copied: %s' % (what, source, item['reason']))
        apply_site_overrides(tree, site)
    apply_section_overrides(locations, active, overrides)
    return {'source': source, 'site': tree, 'pools': pools, 'locations': locations, 'warnings': warnings, 'stated_bindings': site.get('bindings') or [],
            'current_site': (config.get('sites') or {}).get(active), 'current_locations': location_paths(config, active) if current else []}


# -- comparing and showing -------------------------------------------------------------

def _secret_text(element, name):
    return '(encrypted)' if name in (element.get('secret') or {}) or name in (element.get('expect') or {}) else '(encrypted, set by this task)'


def flatten(tree, prefix):
    """[(section, {attribute: value})] for ``tree`` and everything below it."""
    out = []

    def visit(element, key, siblings):
        attrs = {k: _norm_value(k, v) for k, v in element['attrs'].items()}
        for name in sorted(set(element.get('secret') or {}) | set(element.get('expect') or {}) | set(element.get('secret_values') or {})
                           | set((element.get('copy_secret') or {}).get('attributes') or [])):
            attrs[name] = _secret_text(element, name)
        out.append((key, attrs, element))
        for c in element['children']:
            ident = item_key(c, element['children'])
            label = c['tag'] + ('[%s]' % ','.join(str(v) for v in ident.values()) if ident else '')
            visit(c, key + '/' + label, element['children'])

    visit(tree, prefix, [])
    return out


def sections_of(site_tree, pools, locations, site_name, ignore=RUNTIME_SITE_ATTRS):
    """Every section of a site's configuration, keyed so that two sites line up."""
    out = []
    if site_tree is not None:
        for key, attrs, element in flatten(site_tree, 'site'):
            out.append((key, {k: v for k, v in attrs.items() if k not in ignore}, element))
    for index, (pool_name, pool_tree) in enumerate(pools):
        label = 'app pool' if index == 0 else 'app pool %s' % (pool_name[len(site_name):] if named_after(pool_name, site_name) else pool_name)
        out.extend(flatten(pool_tree, label))
    for path in sorted(locations):
        rel = path[len(site_name):] or '/'
        for name in sorted(locations[path]['sections']):
            out.extend(flatten(locations[path]['sections'][name], 'location %s: %s' % (rel, name)))
    return out


def section_diff(before, after):
    """Sections that differ: [{'section', 'before', 'after'}] (None where a side lacks the section)."""
    b = {k: (a, e) for k, a, e in before}
    a = {k: (at, e) for k, at, e in after}
    out = []
    for key in sorted(set(b) | set(a)):
        left, right = b.get(key), a.get(key)
        if left is not None and right is not None:
            if left[0] == right[0] and _secrets_equal(left[1], right[1]):
                continue
        out.append({'section': key, 'before': dict(left[0]) if left else None, 'after': dict(right[0]) if right else None})
    for entry in out:
        left, right = b.get(entry['section']), a.get(entry['section'])
        if left and right and not _secrets_equal(left[1], right[1]):
            for name in entry['after']:
                if entry['after'][name] == '(encrypted)' and not _secret_same(left[1], right[1], name):
                    entry['after'][name] = '(encrypted, changed)'
    return out


def _fps(element):
    fps = dict(element.get('secret') or {})
    fps.update(element.get('expect') or {})
    for name in list((element.get('copy_secret') or {}).get('attributes') or []) + list(element.get('secret_values') or {}):
        fps.setdefault(name, None)
    return fps


def _secret_same(a, b, name):
    fa, fb = _fps(a).get(name), _fps(b).get(name)
    return fa is not None and fa == fb


def _secrets_equal(a, b):
    fa, fb = _fps(a), _fps(b)
    return set(fa) == set(fb) and all(_secret_same(a, b, n) for n in fa)


def render(sections):
    """The text Ansible's --diff shows: one block per section."""
    lines = []
    for key, attrs, _element in sections:
        lines.append('[%s]' % key)
        lines.extend('  %s = %s' % (k, attrs[k]) for k in sorted(attrs))
    return '\n'.join(lines) + ('\n' if lines else '')
