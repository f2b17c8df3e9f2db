# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IIS service layer: validate, plan, run the fixed scripts over WinRM.

``SiteSwap`` reads the host's inventory with the ``iis_site_swap`` script,
plans the ordered primitive actions here in Python (testable without
Windows), and sends them back to the same script to apply. ``Package`` runs
the ``iis_package`` script, which does the whole job on the host.
Knows nothing about Ansible; raises CanaryError.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ansible_collections.immune.canary.plugins.module_utils import _iis_config as cfg
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch
from ansible_collections.immune.canary.plugins.module_utils._iis_config import IDENTITIES
from ansible_collections.immune.canary.plugins.module_utils._iis_scripts import PACKAGE, SITE_SWAP
from ansible_collections.immune.canary.plugins.module_utils._winrm import WinRMClient

CHECKSUM_RE = re.compile(r'^sha256:[0-9a-f]{64}$')
THUMBPRINT_RE = re.compile(r'^[0-9A-F]{40}$')
HOST_HEADER_RE = re.compile(r'^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?$')
IP_RE = re.compile(r'^(\*|\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])$')
# Characters IIS refuses in a new site or app pool name.
IIS_INVALID_NAME_CHARS = set('\\/?;:@&=+$,|"<>*')
PIPELINE_MODES = ('Integrated', 'Classic')
START_MODES = ('AlwaysRunning', 'OnDemand')
STATES = ('started', 'stopped', 'query')


def binding_spec():
    return dict(
        protocol=dict(type='str', default='https', choices=['http', 'https']),
        ip=dict(type='str', default='*'),
        port=dict(type='int'),
        host_header=dict(type='str', default=''),
        certificate_thumbprint=dict(type='str'),
        certificate_store=dict(type='str', default='My'),
        sni=dict(type='bool', default=False),
    )


def site_spec():
    return dict(
        physical_path=dict(type='str', required=True),
        bindings=dict(type='list', elements='dict', options=binding_spec()),
        preload_enabled=dict(type='bool'),
        app_pool=dict(type='dict', options=dict(
            name=dict(type='str'),
            managed_runtime=dict(type='str'),
            pipeline_mode=dict(type='str', choices=list(PIPELINE_MODES)),
            identity=dict(type='str', choices=list(IDENTITIES)),
            username=dict(type='str'),
            password=dict(type='str', no_log=True),
            start_mode=dict(type='str', choices=list(START_MODES)),
            idle_timeout=dict(type='int'),
        )),
        sections=dict(type='list', elements='dict', options=dict(
            section=dict(type='str', required=True),
            location=dict(type='str', default=''),
            element=dict(type='str', default=''),
            attributes=dict(type='dict', required=True),
        )),
    )


def copy_spec():
    return dict(
        enabled=dict(type='bool', default=True),
        source=dict(type='str'),
        shared_paths=dict(type='list', elements='str', default=[]),
        exclude_sections=dict(type='list', elements='str', default=[]),
    )


def _name_problem(value):
    if not isinstance(value, str) or not value.strip():
        return 'it is empty'
    if len(value) > 255:
        return 'it is longer than 255 characters'
    if '\\' in value or '/' in value or '\x00' in value:
        return 'it contains a path separator or NUL'
    return None


def validate_name(option, value):
    problem = _name_problem(value)
    if problem:
        raise CanaryError('Invalid %s %r: %s; use a site name without \\, / or NUL' % (option, value, problem))


def validate_creatable_name(option, value):
    validate_name(option, value)
    bad = sorted(IIS_INVALID_NAME_CHARS.intersection(value)) + (['control characters'] if any(ord(c) < 32 for c in value) else [])
    if bad:
        raise CanaryError('Invalid %s %r: IIS cannot create a site or app pool whose name contains %s' % (option, value, ' '.join(bad)))


def is_app_site(app, name):
    return name == app or name.startswith(app + '-')


def normalize_binding(index, raw):
    option = 'site.bindings[%d]' % index
    b = dict(binding_spec_defaults(), **{k: v for k, v in raw.items() if v is not None})
    if b['protocol'] not in ('http', 'https'):
        raise CanaryError('Invalid %s.protocol %r: use http or https' % (option, b['protocol']))
    if b.get('port') is None:
        b['port'] = 443 if b['protocol'] == 'https' else 80
    if not isinstance(b['port'], int) or not 0 < b['port'] < 65536:
        raise CanaryError('Invalid %s.port %r: use a TCP port between 1 and 65535' % (option, b['port']))
    if not IP_RE.match(b['ip']):
        raise CanaryError('Invalid %s.ip %r: use * or an IPv4 address or a bracketed IPv6 address' % (option, b['ip']))
    if b['host_header'] and not HOST_HEADER_RE.match(b['host_header']):
        raise CanaryError('Invalid %s.host_header %r: use a DNS name (letters, digits, dots, hyphens) or an empty string' % (option, b['host_header']))
    thumb = (b.get('certificate_thumbprint') or '').replace(' ', '').upper()
    if thumb and not THUMBPRINT_RE.match(thumb):
        raise CanaryError('Invalid %s.certificate_thumbprint %r: use the 40 hex digit SHA-1 thumbprint' % (option, b.get('certificate_thumbprint')))
    if thumb and b['protocol'] != 'https':
        raise CanaryError('Invalid %s: a certificate_thumbprint needs protocol https' % option)
    if b['sni'] and not b['host_header']:
        raise CanaryError('Invalid %s: sni needs a host_header' % option)
    https = b['protocol'] == 'https'
    return {
        'protocol': b['protocol'], 'ip': b['ip'], 'port': b['port'], 'host_header': b['host_header'],
        'certificate_thumbprint': thumb if https else '',
        'certificate_store': (b.get('certificate_store') or 'My') if https and thumb else '',
        'sni': bool(b['sni']) if https else False,
    }


def binding_spec_defaults():
    return {k: v.get('default') for k, v in binding_spec().items()}


def binding_key(b):
    return (b['protocol'], b['ip'], int(b['port']), b['host_header'].lower(), b.get('certificate_thumbprint') or '',
            (b.get('certificate_store') or '') if b.get('certificate_thumbprint') else '', bool(b.get('sni')))


def binding_text(b):
    return '%s %s:%s:%s' % (b['protocol'], b['ip'], b['port'], b['host_header'])


def bindings_overlap(a, b):
    same_ip = a['ip'] == b['ip'] or '*' in (a['ip'], b['ip'])
    return same_ip and int(a['port']) == int(b['port']) and a['host_header'].lower() == b['host_header'].lower()


POOL_OPTIONS = ('name', 'managed_runtime', 'pipeline_mode', 'identity', 'username', 'password', 'start_mode', 'idle_timeout')


def normalize_site(active, site):
    """The ``site`` option, checked: what the user states (None where nothing is stated: the copy decides)."""
    path = site.get('physical_path')
    if (not isinstance(path, str) or not re.match(r'^([A-Za-z]:\\|\\\\)', path) or re.match(r'^[A-Za-z]:\\?$', path)
            or '\x00' in path or '..' in path.split('\\')):
        raise CanaryError('Invalid site.physical_path %r: use an absolute Windows path such as D:\\sites\\%s' % (path, active))
    bindings = site.get('bindings') or None
    norm = None
    if bindings:
        norm = [normalize_binding(i, b) for i, b in enumerate(bindings)]
        seen = {}
        for i, b in enumerate(norm):
            key = (b['ip'], b['port'], b['host_header'].lower())
            if key in seen:
                raise CanaryError('Invalid site.bindings[%d] %s: duplicates site.bindings[%d]' % (i, binding_text(b), seen[key]))
            seen[key] = i
    raw_pool = site.get('app_pool') or {}
    pool = {k: raw_pool.get(k) for k in POOL_OPTIONS}
    if pool['name'] is not None:
        validate_creatable_name('site.app_pool.name', pool['name'])
    if pool['pipeline_mode'] is not None and pool['pipeline_mode'] not in PIPELINE_MODES:
        raise CanaryError('Invalid site.app_pool.pipeline_mode %r: use one of %s' % (pool['pipeline_mode'], ', '.join(PIPELINE_MODES)))
    if pool['start_mode'] is not None and pool['start_mode'] not in START_MODES:
        raise CanaryError('Invalid site.app_pool.start_mode %r: use one of %s' % (pool['start_mode'], ', '.join(START_MODES)))
    if pool['idle_timeout'] is not None and (not isinstance(pool['idle_timeout'], int) or pool['idle_timeout'] < 0):
        raise CanaryError('Invalid site.app_pool.idle_timeout %r: use minutes >= 0 (0 = never)' % (pool['idle_timeout'],))
    if pool['managed_runtime'] is not None and pool['managed_runtime'] not in ('', 'v4.0', 'v2.0'):
        raise CanaryError('Invalid site.app_pool.managed_runtime %r: use v4.0, v2.0 or an empty string (no managed code)' % (pool['managed_runtime'],))
    cfg.validate_identity(pool)
    preload = site.get('preload_enabled')
    return {
        'physical_path': path,
        'bindings': norm,
        'preload_enabled': None if preload is None else bool(preload),
        'app_pool': pool,
        'sections': cfg.validate_overrides(site.get('sections')),
    }


def validate_swap(params):
    """Check every input of iis_site_swap before anything is touched."""
    app = params.get('app')
    validate_name('app', app)
    state = params.get('state') or 'started'
    if state not in STATES:
        raise CanaryError('Invalid state %r: use one of %s' % (state, ', '.join(STATES)))
    active = params.get('active')
    if active is not None:
        validate_name('active', active)
        if not is_app_site(app, active):
            raise CanaryError('Invalid active %r: a site of app %r is named %r or starts with %r' % (active, app, app, app + '-'))
    if state == 'started' and not active:
        raise CanaryError('Invalid active: state=started needs the name of the site to run')
    for i, name in enumerate(params.get('keep') or []):
        validate_name('keep[%d]' % i, name)
    copy_opt = cfg.validate_copy(params.get('copy'))
    if copy_opt['source'] is not None:
        validate_name('copy.source', copy_opt['source'])
    site = None
    if params.get('site'):
        if not active:
            raise CanaryError('Invalid site: it describes the site named by active, which is not set')
        validate_creatable_name('active', active)
        site = normalize_site(active, params['site'])
        site['copy'] = copy_opt
    if params.get('prune') and not active and not params.get('keep'):
        raise CanaryError('Invalid prune=true: without active or keep it would remove every site of app %r' % app)
    timeout = params.get('wait_timeout', 120)
    if timeout is None or timeout <= 0:
        raise CanaryError('Invalid wait_timeout %r: use seconds > 0' % (timeout,))
    return site


def pools_of(inventory, name):
    """The app pools site ``name`` runs applications in (its root application's first)."""
    for s in inventory['sites']:
        if s['name'] == name:
            return list(dict.fromkeys(p for p in [s['app_pool']] + list(s.get('app_pools') or []) if p))
    return []


def desire(params, site, inventory):
    """The desired configuration of the active site (see _iis_config.build_desired), or None without ``site``."""
    if site is None:
        return None
    next_id = max([s['id'] for s in inventory['sites']] + [0]) + 1
    copy_opt = dict(site['copy'])
    if params.get('_copy_from') and not copy_opt['source'] and copy_opt['enabled']:
        copy_opt['source'] = params['_copy_from'] if any(s['name'] == params['_copy_from'] for s in inventory['sites']) else None
    return cfg.build_desired(params['app'], params['active'], site, inventory, copy_opt, site['sections'], next_id)


def _with_auto_start(tree, value):
    tree = cfg.strip_secrets(tree)
    tree['attrs']['serverAutoStart'] = value
    return tree


def plan_converge(active, desired, inventory):
    """Actions that make ``active`` (site, app pools, <location> sections) what ``desired`` says."""
    config = inventory.get('config') or {}
    sites = {s['name']: s for s in inventory['sites']}
    pool_names = {p['name'] for p in inventory['pools']}
    actions = []
    for pool in desired['pools']:
        if pool['name'] not in pool_names:
            actions.append(dict(op='create_pool', name=pool['name'], tree=cfg.strip_secrets(pool['tree']), source=pool['source'] or ''))
        elif not cfg.same((config.get('pools') or {}).get(pool['name']), pool['tree']):
            actions.append(dict(op='set_pool', name=pool['name'], tree=cfg.strip_secrets(pool['tree'])))
    # Bindings the user states register their certificate with http.sys; copied
    # ones are the running site's, whose certificate is registered already.
    certificates = [{k: b[k] for k in ('ip', 'port', 'host_header', 'certificate_thumbprint', 'certificate_store')}
                    for b in desired['stated_bindings'] if b['protocol'] == 'https' and b['certificate_thumbprint']]
    if active not in sites:
        actions.append(dict(op='create_site', name=active, tree=_with_auto_start(desired['site'], 'false'), source=desired['source'] or '',
                            certificates=certificates))
    elif not cfg.same(desired['current_site'], desired['site'], ignore=cfg.RUNTIME_SITE_ATTRS):
        actions.append(dict(op='set_site', name=active, tree=cfg.strip_secrets(desired['site']), certificates=certificates))
    current = {p: config['locations'][p] for p in desired['current_locations']}
    for path in sorted(desired['locations']):
        wanted = desired['locations'][path]
        found = current.get(path) or {'attrs': {}, 'sections': {}}
        mode = wanted['attrs'].get('overrideMode', '')
        for name in sorted(wanted['sections']):
            if not cfg.same(found['sections'].get(name), wanted['sections'][name]) or found['attrs'].get('overrideMode', '') != mode:
                actions.append(dict(op='set_section', name=path, section=name, override_mode=mode,
                                    tree=cfg.strip_secrets(wanted['sections'][name])))
    for path in sorted(current):
        for name in sorted(current[path]['sections']):
            if name not in desired['locations'].get(path, {}).get('sections', {}):
                actions.append(dict(op='remove_section', name=path, section=name))
    return actions


def plan_swap(params, site, inventory, desired=None):
    """Ordered primitive actions that bring ``inventory`` to the desired state.

    Raises CanaryError (nothing touched) when the goal is impossible: the
    active site is missing and cannot be created, its copy would put a path
    outside the release folder, or its bindings are held by a running site
    that is not the app's.
    """
    app, state, active = params['app'], params.get('state') or 'started', params.get('active')
    sites = {s['name']: s for s in inventory['sites']}
    pools = {p['name']: p for p in inventory['pools']}
    app_sites = [s for s in inventory['sites'] if is_app_site(app, s['name'])]
    actions = []
    if state == 'query':
        return actions

    current = sites.get(active) if active else None
    if active and current is None and site is None and state == 'started':
        raise CanaryError('Failed to start site %r: it does not exist on the host and no site definition was given to create it' % active)
    if site is not None and desired is None:
        desired = desire(params, site, inventory)

    # Converge the active site and its pools first: nothing is stopped yet, so
    # a definition IIS rejects leaves the running version untouched.
    active_pools = pools_of(inventory, active) if current else []
    if desired is not None:
        actions.extend(plan_converge(active, desired, inventory))
        active_pools = list(dict.fromkeys([p['name'] for p in desired['pools']] + cfg.site_pools(desired['site'])))

    keep_running = active if state == 'started' else None
    # A pool another running site (one that keeps running) uses is never stopped.
    in_use = set(active_pools if keep_running else [])
    for s in inventory['sites']:
        if not is_app_site(app, s['name']) and s['state'] == 'Started':
            in_use.update(pools_of(inventory, s['name']))
    stopped_pools = set()
    for s in app_sites:
        if s['name'] == keep_running:
            continue
        if s['state'] != 'Stopped':
            actions.append(dict(op='stop_site', name=s['name']))
        for pool in pools_of(inventory, s['name']):
            if pool not in in_use and pool not in stopped_pools and pools.get(pool, {}).get('state', 'Stopped') != 'Stopped':
                actions.append(dict(op='stop_pool', name=pool))
                stopped_pools.add(pool)

    if state == 'started':
        wanted = cfg.tree_bindings(desired['site']) if desired is not None else current['bindings']
        for other in inventory['sites']:
            if is_app_site(app, other['name']) or other['state'] != 'Started':
                continue
            for mine in wanted:
                for theirs in other['bindings']:
                    if bindings_overlap(mine, theirs):
                        raise CanaryError('Failed to start site %r: binding %s is held by site %r, which is not a site of app %r '
                                          '(IIS error 0x800700B7)' % (active, binding_text(mine), other['name'], app),
                                          conflict_site=other['name'])
        created = {a['name'] for a in actions if a['op'] == 'create_pool'}
        for pool in active_pools:
            if pools.get(pool, {}).get('state') != 'Started' or pool in created:
                actions.append(dict(op='start_pool', name=pool))
        if current is None or current['state'] != 'Started':
            actions.append(dict(op='start_site', name=active))

    if params.get('prune'):
        keep = set(params.get('keep') or []) | ({active} if active else set())
        remaining_pools = set(active_pools)
        for s in inventory['sites']:
            if s['name'] in keep or not is_app_site(app, s['name']):
                remaining_pools.update(pools_of(inventory, s['name']))
        locations = (inventory.get('config') or {}).get('locations') or {}
        for s in app_sites:
            if s['name'] in keep:
                continue
            if s['state'] != 'Stopped' and not any(a['op'] == 'stop_site' and a['name'] == s['name'] for a in actions):
                actions.append(dict(op='stop_site', name=s['name']))
            actions.append(dict(op='remove_site', name=s['name']))
            for pool in pools_of(inventory, s['name']):
                if pool not in remaining_pools and pool in pools:
                    actions.append(dict(op='remove_pool', name=pool))
                    remaining_pools.add(pool)
            # Its <location path="SITE..."> tags go with it; another site's stay.
            for path in cfg.location_paths({'locations': locations}, s['name']):
                actions.append(dict(op='remove_location', name=path))
            if params.get('prune_content') and s['physical_path']:
                actions.append(dict(op='remove_content', name=s['name'], path=s['physical_path']))
    return actions


def describe_action(action):
    words = {
        'create_pool': 'create app pool', 'set_pool': 'configure app pool', 'create_site': 'create site', 'set_site': 'configure site',
        'stop_site': 'stop site', 'stop_pool': 'stop app pool', 'start_pool': 'start app pool', 'start_site': 'start site',
        'remove_site': 'remove site', 'remove_pool': 'remove app pool', 'remove_content': 'remove content of site',
        'set_section': 'configure', 'remove_section': 'remove', 'remove_location': 'remove location',
    }
    if action['op'] in ('set_section', 'remove_section'):
        return '%s %s of location %s' % (words[action['op']], action['section'], action['name'])
    text = '%s %s' % (words[action['op']], action['name'])
    if action.get('source'):
        text += ' (copy of %s)' % action['source']
    if action['op'] == 'remove_content':
        text += ' (%s)' % action['path']
    return text


def app_view(app, inventory):
    """The app's sites as returned to the user."""
    out = []
    for s in inventory['sites']:
        if is_app_site(app, s['name']):
            out.append({k: s[k] for k in ('name', 'id', 'state', 'app_pool', 'app_pool_state', 'physical_path', 'bindings')})
    return sorted(out, key=lambda s: s['name'])


def running(app, inventory):
    return sorted(s['name'] for s in inventory['sites'] if is_app_site(app, s['name']) and s['state'] == 'Started')


def site_diff(desired, inventory):
    """(sections of the source, sections of the new site, section diff) for --diff and the report."""
    if desired is None:
        return [], [], []
    config = inventory.get('config') or {}
    source = desired['source']
    before = []
    if source is not None:
        pools = [(p['source'], config['pools'][p['source']]) for p in desired['pools'] if p['source'] in (config.get('pools') or {})]
        locations = {p: config['locations'][p] for p in cfg.location_paths(config, source)}
        before = cfg.sections_of(config['sites'][source], pools, locations, source)
    after = cfg.sections_of(desired['site'], [(p['name'], p['tree']) for p in desired['pools']], desired['locations'],
                            desired['site']['attrs']['name'])
    return before, after, cfg.section_diff(before, after)


class SiteSwap:
    """Make exactly one site of an app run on one host (or none)."""

    def __init__(self, client, host_label=None):
        self.client = client
        self.host = host_label or client.params['winrm_host']

    def _call(self, doc, what, timeout):
        result = self.client.run(SITE_SWAP, doc, what, timeout=timeout)
        if not isinstance(result, dict) or 'inventory' not in result:
            raise CanaryError('Failed to %s: the script returned an unexpected result' % what)
        return result

    def _inventory(self, params):
        what = 'read the IIS sites of app %r on %s' % (params['app'], self.host)
        doc = {'operation': 'query', 'app': params['app'], 'sites': [], 'checks': []}
        copy_opt = params.get('copy') or {}
        if copy_opt.get('source'):
            doc['sites'].append(copy_opt['source'])
        password = ((params.get('site') or {}).get('app_pool') or {}).get('password')
        if password:
            # The host answers with a fingerprint to compare with the pool's: whether the password changed.
            doc['checks'].append(password)
        found = self._call(doc, what, timeout=params.get('wait_timeout', 120) + 60)
        if found['failed']:
            raise CanaryError('Failed to %s: %s' % (what, _scrub(found['msg'], password)))
        inventory = found['inventory']
        inventory['config'] = found.get('config') or {}
        return inventory

    def run(self, params, check_mode=False, inventory=None):
        """Plan and apply; ``inventory`` is the host's, when just read."""
        site = validate_swap(params)
        app, active = params['app'], params.get('active')
        wait_timeout = params.get('wait_timeout', 120)
        if inventory is None:
            inventory = self._inventory(params)
        was_running = running(app, inventory)
        previous = active if active in was_running else (was_running[0] if was_running else None)
        desired = desire(params, site, inventory) if (params.get('state') or 'started') != 'query' else None
        actions = plan_swap(params, site, inventory, desired)
        after_inventory = inventory
        applied = [describe_action(a) for a in actions]
        password = (site or {}).get('app_pool', {}).get('password')
        if actions and not check_mode:
            what = 'apply the IIS changes for app %r on %s' % (app, self.host)
            result = self._call({'operation': 'apply', 'actions': actions, 'wait_timeout': wait_timeout}, what,
                                timeout=wait_timeout + 60)
            after_inventory = result['inventory'] or inventory
            if result['failed']:
                done = list(result.get('applied') or [])
                if result.get('conflict_site'):
                    msg = ('Failed to start site %r on %s: a binding is held by site %r (IIS error 0x800700B7)'
                           % (active, self.host, result['conflict_site']))
                else:
                    msg = 'Failed to %s: %s' % (what, _scrub(result['msg'], password))
                raise CanaryError(msg, actions=done, sites=app_view(app, after_inventory), conflict_site=result.get('conflict_site') or None)
        state = params.get('state') or 'started'
        if check_mode and state != 'query':
            predicted = [active] if state == 'started' else []
        else:
            predicted = running(app, after_inventory)
        before, after, sections = site_diff(desired, inventory)
        diff = [{'before': {'running': was_running}, 'after': {'running': predicted}}]
        if desired is not None:
            diff.append({'before_header': 'site %s (running)' % desired['source'] if desired['source'] else 'no site to copy',
                         'after_header': 'site %s' % active, 'before': cfg.render(before), 'after': cfg.render(after)})
        return {
            'changed': bool(actions),
            'previous_active': previous,
            'active': predicted[0] if predicted else None,
            'sites': app_view(app, after_inventory),
            'actions': applied,
            'copied_from': desired['source'] if desired is not None else None,
            'site_diff': sections,
            'warnings': list(desired['warnings']) if desired is not None else [],
            'diff': diff,
        }

    def _held(self, params, package, inventory):
        """The package check when ``active`` already runs with the release in its folder; None otherwise."""
        if params['active'] not in running(params['app'], inventory):
            return None
        found = Package(self.client, self.host).run(package, check_mode=True)
        return None if found['changed'] else found

    def deploy(self, params, check_mode=False):
        """Stop and prune the app's sites, install ``package`` into the new
        site's folder, then start the new site: one module call for what the
        rollout did in three. Every input is checked before the host is touched."""
        site = validate_swap(params)
        package = package_params(params)
        if package is None:
            raise CanaryError('Invalid package: deploy needs the package option')
        timings = {}
        watch = Stopwatch()
        inventory = self._inventory(params)
        # The copy is planned now: a path it cannot map refuses the deploy before anything stops.
        desired = desire(params, site, inventory)
        source = desired['source'] if desired is not None else None
        held = self._held(params, package, inventory)
        if held is not None:
            # Already running this release: converge the site and prune, no stop.
            start = self.run(dict(params, package=None), check_mode=check_mode, inventory=inventory)
            timings.update(stop=0.0, package=0.0, start=watch.elapsed())
            start.update(package=held, timings=timings)
            return start
        # The new site is kept if a failed attempt left it: the package step
        # verifies its content and the start step converges its settings.
        # The site it copies stays until the copy is made.
        keep = list(params.get('keep') or []) + [params['active']]
        held_back = bool(params.get('prune')) and source is not None and source not in keep
        if held_back:
            keep.append(source)
        stop = self.run(dict(params, state='stopped', active=None, site=None, package=None, keep=keep), check_mode=check_mode,
                        inventory=inventory)
        timings['stop'] = watch.elapsed()
        done = list(stop['actions'])
        watch = Stopwatch()
        try:
            installed = Package(self.client, self.host).run(package, check_mode=check_mode)
        except CanaryError as exc:
            raise CanaryError(exc.message, actions=done, sites=stop['sites'], previous_active=stop['previous_active']) from None
        timings['package'] = watch.elapsed()
        if installed['changed']:
            done.append('install package %s' % package['dest'])
        watch = Stopwatch()
        try:
            start = self.run(dict(params, prune=held_back, package=None, _copy_from=source), check_mode=check_mode,
                             inventory=inventory if check_mode else None)
        except CanaryError as exc:
            details = dict(exc.details, actions=done + list(exc.details.get('actions') or []), previous_active=stop['previous_active'])
            raise CanaryError(exc.message, **details) from None
        timings['start'] = watch.elapsed()
        return {
            'changed': bool(stop['changed'] or installed['changed'] or start['changed']),
            'previous_active': stop['previous_active'],
            'active': start['active'],
            'sites': start['sites'],
            'actions': done + start['actions'],
            'copied_from': start['copied_from'],
            'site_diff': start['site_diff'],
            'warnings': start['warnings'],
            'package': installed,
            'timings': timings,
            'diff': [{'before': stop['diff'][0]['before'], 'after': start['diff'][0]['after']}] + start['diff'][1:],
        }


def _scrub(text, secret):
    text = str(text)
    if secret:
        text = text.replace(secret, '********')
    return text


def package_spec():
    """The ``package`` option of iis_site_swap: the release unpacked into site.physical_path."""
    return dict(
        url=dict(type='str', required=True),
        checksum=dict(type='str', required=True),
        headers=dict(type='dict', default={}, no_log=True),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='int', default=300),
    )


def package_params(params):
    """The iis_package parameters of iis_site_swap's ``package`` option, checked before anything is touched."""
    package = params.get('package')
    if not package:
        return None
    if (params.get('state') or 'started') != 'started':
        raise CanaryError('Invalid package: it installs the release of the site to start, so it needs state=started (not %s)'
                          % params.get('state'))
    if not params.get('site'):
        raise CanaryError('Invalid package: it is unpacked into site.physical_path, so it needs the site option')
    wanted = dict(package, dest=params['site'].get('physical_path'), state='present')
    wanted.setdefault('headers', {})
    wanted.setdefault('validate_certs', True)
    wanted.setdefault('timeout', 300)
    try:
        validate_package(wanted)
    except CanaryError as exc:
        raise CanaryError(re.sub(r'^Invalid (url|checksum|timeout|headers)\b', r'Invalid package.\1', exc.message), **exc.details) from None
    return wanted


def _validate_package_url(url):
    if not isinstance(url, str) or not re.match(r'^https?://[^\s/]+', url):
        raise CanaryError('Invalid url %r: use an http:// or https:// URL' % (url,))
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise CanaryError('Invalid url %r: %s; use an http:// or https:// URL with a host and a port from 1 to 65535' % (url, exc)) from None
    if not parts.hostname or port == 0 or any(c.isspace() for c in url):
        raise CanaryError('Invalid url %r: use an http:// or https:// URL with a host and a port from 1 to 65535' % (url,))


def validate_package(params):
    checksum = params.get('checksum')
    if not isinstance(checksum, str) or not CHECKSUM_RE.match(checksum.strip().lower()):
        raise CanaryError('Invalid checksum %r: use sha256:<64 hex digits>' % (checksum,))
    dest = params.get('dest')
    if not isinstance(dest, str) or not re.match(r'^([A-Za-z]:\\|\\\\)[^\x00]*[^\\\x00 ]$', dest) or re.match(r'^[A-Za-z]:\\$', dest):
        raise CanaryError('Invalid dest %r: use an absolute Windows folder path such as D:\\sites\\app.example.com-3457' % (dest,))
    state = params.get('state') or 'present'
    url = params.get('url')
    if state == 'present':
        _validate_package_url(url)
    timeout = params.get('timeout', 300)
    if not isinstance(timeout, int) or timeout <= 0:
        raise CanaryError('Invalid timeout %r: use seconds > 0' % (timeout,))
    for key, value in (params.get('headers') or {}).items():
        if not re.match(r'^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', str(key)) or any(c in str(value) for c in '\r\n'):
            raise CanaryError('Invalid headers: header %r is not a valid HTTP header name or its value holds a line break' % (key,))
    return checksum.strip().lower()


class Package:
    """Make the host hold one verified release in ``dest`` (or nothing)."""

    def __init__(self, client, host_label=None):
        self.client = client
        self.host = host_label or client.params['winrm_host']

    def run(self, params, check_mode=False):
        checksum = validate_package(params)
        state = params.get('state') or 'present'
        doc = {
            'state': state,
            'url': params.get('url') or '',
            'checksum': checksum,
            'dest': params['dest'],
            'headers': {str(k): str(v) for k, v in (params.get('headers') or {}).items()},
            'validate_certs': bool(params.get('validate_certs', True)),
            'timeout': params.get('timeout', 300),
            'check_mode': bool(check_mode),
        }
        verb = 'remove' if state == 'absent' else 'install'
        what = '%s package %s on %s' % (verb, params['dest'], self.host)
        result = self.client.run(PACKAGE, doc, what, timeout=doc['timeout'] + 120)
        if not isinstance(result, dict) or 'changed' not in result:
            raise CanaryError('Failed to %s: the script returned an unexpected result' % what)
        if result.get('failed'):
            raise CanaryError('Failed to %s: %s' % (what, result.get('msg') or 'unknown error'))
        return {
            'changed': bool(result['changed']),
            'dest': params['dest'],
            'checksum': result.get('checksum') or (checksum if state == 'present' else None),
            'size': result.get('size'),
        }


def tls_warnings(params):
    """One warning per TLS check the options turn off (the modules show each once per run)."""
    found = []
    if (params.get('winrm_scheme') or 'https') == 'https' and params.get('winrm_server_cert_validation') == 'ignore':
        found.append('winrm_server_cert_validation is ignore: the certificate of the WinRM listener on %s is not checked, so anyone '
                     'on the network path can read the credentials and commands' % params.get('winrm_host'))
    if params.get('validate_certs') is False and str(params.get('url') or '').startswith('https'):
        found.append('validate_certs is false: the host does not check the certificate of the package download server, so a '
                     'tampered package is caught only by its checksum')
    return found


def client_for(params, log=None):
    return WinRMClient({k: v for k, v in params.items() if k.startswith('winrm_')}, log=log)
