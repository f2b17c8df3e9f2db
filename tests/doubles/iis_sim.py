"""A simulated IIS host: the one place where the semantics of our scripts
live for tests.

Each host keeps its IIS configuration the way IIS does, as one
``applicationHost.config``-shaped XML document (``SimHost.config``):
``<system.applicationHost>/<applicationPools>`` holds an ``<add>`` per app
pool, ``<sites>`` a ``<site>`` per site with its ``<application>``,
``<virtualDirectory>`` and ``<bindings>``, and ``<location path="SITE...">``
tags hold the per-site sections (authentication, authorization, request
filtering, ...). The run state of sites and pools is kept beside it, as
IIS keeps it in WAS, not in the file.

It implements the contract of ``plugins/module_utils/_iis_scripts.py``:

``iis_site_swap/2``
    input ``{"operation": "query", "app", "sites", "checks"}`` or
    ``{"operation": "apply", "actions": [...], "wait_timeout": s}``; result
    ``{"failed", "msg", "applied", "conflict_site", "inventory": {"sites",
    "pools"}, "config": {"sites", "pools", "locations", "unreadable",
    "checks"}}`` (``config`` only for a query). Actions run in order and stop
    at the first failure (what ran stays done).
``iis_package/1``
    input ``{"state", "url", "checksum", "dest", "headers", "validate_certs",
    "timeout", "check_mode"}``; result ``{"failed", "msg", "changed", "dest",
    "checksum", "size"}``. The download is real (urllib, with the headers);
    the checksum is verified before anything is unpacked.

Encrypted attributes (every attribute named ``password``, as in IIS's
schema) are stored as ``[enc:SimCngProvider:...:enc]`` with this host's own
key. A query reports them only as fingerprints (an HMAC under a key drawn
for that query); copying one decrypts and encrypts it again on the host,
the way IIS's configuration system does; nothing returns its value.

Knowingly simpler than IIS (and the real scripts):

- State changes are instant: a site or pool is Started or Stopped at once
  (no Starting/Stopping), so waits never wait. A start hook may raise to
  make a start fail.
- A binding conflict is "same port, same host header, same IP or either
  IP is ``*``" against any other *Started* site; http.sys is subtler
  (specific IPs take precedence over ``*``) and also checks TLS bindings.
- Names are not checked against IIS's character rules (the injection tests
  need names IIS would refuse). The configuration has no schema beyond the
  section names: any attribute is accepted, values are kept as text, and
  nothing is inherited from ``applicationPoolDefaults`` or ``siteDefaults``
  except the few defaults the inventory reports.
- A ``<location>`` section the schema does not know (``KNOWN_SECTIONS`` plus
  ``extra_sections``) cannot be read: the query names it in ``unreadable``.
- Content folders are in memory (path -> {"files", "marker"}); zips are
  really opened with ``zipfile`` but only the member names are kept.
  ``remove_content`` removes the folder entry and everything under it.
- Certificates are recorded on the binding as given; no certificate store.
- ``validate_certs`` and ``timeout`` are honoured by urllib; a proxy is
  never used.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import io
import json
import os
import ssl
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zipfile

from ansible_collections.immune.canary.plugins.module_utils._iis_config import SECTIONS as KNOWN_SECTIONS
from ansible_collections.immune.canary.plugins.module_utils._iis_config import minutes_of

ENC_PREFIX, ENC_SUFFIX = '[enc:SimCngProvider:', ':enc]'
SKELETON = """<configuration>
  <system.applicationHost>
    <applicationPools>
      <applicationPoolDefaults managedRuntimeVersion="v4.0">
        <processModel identityType="ApplicationPoolIdentity" />
      </applicationPoolDefaults>
    </applicationPools>
    <sites>
      <siteDefaults>
        <logFile logFormat="W3C" directory="%SystemDrive%\\inetpub\\logs\\LogFiles" />
      </siteDefaults>
      <applicationDefaults applicationPool="DefaultAppPool" />
      <virtualDirectoryDefaults allowSubDirConfig="true" />
    </sites>
  </system.applicationHost>
  <system.webServer>
    <security>
      <authentication>
        <anonymousAuthentication enabled="true" userName="IUSR" />
        <windowsAuthentication enabled="false" />
      </authentication>
    </security>
  </system.webServer>
</configuration>"""


def new_binding(protocol='https', ip='*', port=443, host_header='', certificate_thumbprint='', certificate_store='', sni=False):
    return dict(protocol=protocol, ip=ip, port=int(port), host_header=host_header, certificate_thumbprint=certificate_thumbprint,
                certificate_store=certificate_store, sni=bool(sni))


def binding_element(b):
    b = new_binding(**b)
    attrs = {'protocol': b['protocol'], 'bindingInformation': '%s:%s:%s' % (b['ip'], b['port'], b['host_header'])}
    if b['sni']:
        attrs['sslFlags'] = '1'
    if b['certificate_thumbprint']:
        attrs['certificateHash'] = b['certificate_thumbprint']
        attrs['certificateStoreName'] = b['certificate_store'] or 'My'
    return ET.Element('binding', attrs)


def parse_binding(element):
    info = element.get('bindingInformation', '')
    last = info.rfind(':')
    middle = info.rfind(':', 0, last)
    flags = element.get('sslFlags', '0')
    return dict(protocol=element.get('protocol', 'http'), ip=info[:middle], port=int(info[middle + 1:last] or 0), host_header=info[last + 1:],
                certificate_thumbprint=element.get('certificateHash', '').upper(), certificate_store=element.get('certificateStoreName', ''),
                sni=flags.isdigit() and bool(int(flags) & 1) or 'sni' in flags.lower())


def overlap(a, b):
    same_ip = a['ip'] == b['ip'] or '*' in (a['ip'], b['ip'])
    return same_ip and int(a['port']) == int(b['port']) and a['host_header'].lower() == b['host_header'].lower()


class SimError(Exception):
    pass


class SimHost:
    """One Windows host: IIS configuration, run state, content folders.

    ``on_site_start(host, site)`` / ``on_site_stop(host, site)`` callbacks
    run on every state change (the lab attaches real listeners there).
    ``scripts`` records every script received as (header, script, input).
    """

    def __init__(self, name):
        self.name = name
        self.config = ET.fromstring(SKELETON)
        self.site_state = {}
        self.pool_state = {}
        self.content = {}
        self.scripts = []
        self.on_site_start = []
        self.on_site_stop = []
        self.extra_sections = set()
        self.lock = threading.RLock()
        self._machine_key = os.urandom(32)
        # None, 'auth' (every request 401), 'down' (connections are dropped) or
        # 'garbage' (the script prints something that is not a result)
        self.fault = None
        # Sites that fail to start, as IIS reports a site whose files or port another process holds.
        self.refuse_start = set()

    # -- the configuration document ------------------------------------------
    @property
    def _pools_el(self):
        return self.config.find('system.applicationHost/applicationPools')

    @property
    def _sites_el(self):
        return self.config.find('system.applicationHost/sites')

    def pool_element(self, name):
        return next((e for e in self._pools_el.findall('add') if e.get('name') == name), None)

    def site_element(self, name):
        return next((e for e in self._sites_el.findall('site') if e.get('name') == name), None)

    def location_elements(self, path):
        return [e for e in self.config.findall('location') if e.get('path') == path]

    def location_paths(self):
        return sorted({e.get('path') for e in self.config.findall('location')})

    def xml(self):
        """The configuration as text (for assertions and for reading it as IIS would)."""
        return ET.tostring(self.config, encoding='unicode')

    # -- encrypted attributes ------------------------------------------------------
    def _stream(self, nonce, length):
        out = b''
        counter = 0
        while len(out) < length:
            out += hashlib.sha256(self._machine_key + nonce + counter.to_bytes(4, 'big')).digest()
            counter += 1
        return out[:length]

    def encrypt(self, plain):
        data = plain.encode('utf-8')
        nonce = os.urandom(12)
        sealed = bytes(a ^ b for a, b in zip(data, self._stream(nonce, len(data)), strict=True))
        return ENC_PREFIX + base64.b64encode(nonce + sealed).decode('ascii') + ENC_SUFFIX

    def decrypt(self, text):
        if not (text.startswith(ENC_PREFIX) and text.endswith(ENC_SUFFIX)):
            raise SimError('not an encrypted value')
        raw = base64.b64decode(text[len(ENC_PREFIX):-len(ENC_SUFFIX)])
        nonce, sealed = raw[:12], raw[12:]
        return bytes(a ^ b for a, b in zip(sealed, self._stream(nonce, len(sealed)), strict=True)).decode('utf-8')

    @staticmethod
    def is_encrypted(name, value):
        return name == 'password' or str(value).startswith('[enc:')

    # -- seeding ---------------------------------------------------------
    def add_pool(self, name, state='Started', managed_runtime='v4.0', pipeline_mode='Integrated', identity='ApplicationPoolIdentity',
                 start_mode='OnDemand', idle_timeout=20, user_name=None, password=None):
        element = ET.SubElement(self._pools_el, 'add', {'name': name, 'managedRuntimeVersion': managed_runtime,
                                                        'managedPipelineMode': pipeline_mode, 'startMode': start_mode})
        model = ET.SubElement(element, 'processModel', {'identityType': identity, 'idleTimeout': '%02d:%02d:00' % divmod(idle_timeout, 60)})
        if user_name:
            model.set('userName', user_name)
        if password:
            model.set('password', self.encrypt(password))
        self.pool_state[name] = state
        return element

    def add_site(self, name, bindings, physical_path=None, app_pool=None, state='Started', preload_enabled=False):
        pool = app_pool if app_pool is not None else name
        if pool and self.pool_element(pool) is None:
            self.add_pool(pool, state='Started' if state == 'Started' else 'Stopped')
        element = ET.SubElement(self._sites_el, 'site', {'name': name, 'id': str(self._next_id()), 'serverAutoStart': str(state == 'Started').lower()})
        root = ET.SubElement(element, 'application', {'path': '/', 'applicationPool': pool})
        ET.SubElement(root, 'virtualDirectory', {'path': '/', 'physicalPath': physical_path or 'C:\\inetpub\\' + name})
        holder = ET.SubElement(element, 'bindings')
        for b in bindings:
            holder.append(binding_element(b))
        if preload_enabled:
            ET.SubElement(element, 'applicationDefaults', {'preloadEnabled': 'true'})
        self.site_state[name] = state
        return element

    def add_application(self, site, path, physical_path, app_pool=None, **attrs):
        element = self.site_element(site)
        app = ET.Element('application', dict({'path': path}, **({'applicationPool': app_pool} if app_pool else {}), **attrs))
        ET.SubElement(app, 'virtualDirectory', {'path': '/', 'physicalPath': physical_path})
        last = max(i for i, c in enumerate(element) if c.tag == 'application')
        element.insert(last + 1, app)
        return app

    def add_virtual_directory(self, site, path, physical_path, application='/', **attrs):
        app = next(a for a in self.site_element(site).findall('application') if a.get('path') == application)
        attrs = dict(attrs)
        if 'password' in attrs:
            attrs['password'] = self.encrypt(attrs['password'])
        return ET.SubElement(app, 'virtualDirectory', dict({'path': path, 'physicalPath': physical_path}, **attrs))

    def add_location(self, path, sections_xml, **attrs):
        """A ``<location path=...>`` tag holding ``sections_xml`` (section groups and sections as XML text)."""
        element = ET.SubElement(self.config, 'location', dict({'path': path}, **attrs))
        for child in ET.fromstring('<x>%s</x>' % sections_xml):
            element.append(child)
        for sub in element.iter():
            for key, value in list(sub.attrib.items()):
                if key == 'password' and not value.startswith('[enc:'):
                    sub.set(key, self.encrypt(value))
        return element

    def _next_id(self):
        return max([int(s.get('id', 0)) for s in self._sites_el.findall('site')] + [0]) + 1

    # -- views ---------------------------------------------------------
    def _site_view(self, element):
        name = element.get('name')
        root = next((a for a in element.findall('application') if a.get('path') == '/'), None)
        defaults = element.find('applicationDefaults')
        pool = root.get('applicationPool') if root is not None and root.get('applicationPool') else (
            defaults.get('applicationPool') if defaults is not None and defaults.get('applicationPool') else 'DefaultAppPool')
        vdir = next((v for v in root.findall('virtualDirectory') if v.get('path') == '/'), None) if root is not None else None
        pools = [pool] + [a.get('applicationPool') for a in element.findall('application') if a.get('applicationPool')]
        return dict(name=name, id=int(element.get('id')), state=self.site_state.get(name, 'Stopped'), app_pool=pool,
                    physical_path=vdir.get('physicalPath') if vdir is not None else '',
                    preload_enabled=defaults is not None and defaults.get('preloadEnabled') == 'true',
                    auto_start=element.get('serverAutoStart', 'true') == 'true',
                    bindings=[parse_binding(b) for b in element.findall('bindings/binding')],
                    app_pools=list(dict.fromkeys(pools)))

    def _pool_view(self, element):
        model = element.find('processModel')
        model = model if model is not None else ET.Element('processModel')
        name = element.get('name')
        return dict(name=name, state=self.pool_state.get(name, 'Stopped'), managed_runtime=element.get('managedRuntimeVersion', 'v4.0'),
                    pipeline_mode=element.get('managedPipelineMode', 'Integrated'), identity=model.get('identityType', 'ApplicationPoolIdentity'),
                    start_mode=element.get('startMode', 'OnDemand'), idle_timeout=minutes_of(model.get('idleTimeout')) if model.get('idleTimeout') else 20)

    @property
    def sites(self):
        """name -> the site as the inventory reports it (a view: change the host through its methods)."""
        return {e.get('name'): self._site_view(e) for e in self._sites_el.findall('site')}

    @property
    def pools(self):
        """name -> the app pool as the inventory reports it (a view)."""
        return {e.get('name'): self._pool_view(e) for e in self._pools_el.findall('add')}

    def inventory(self):
        sites = []
        pools = self.pools
        for s in sorted(self.sites.values(), key=lambda x: x['id']):
            pool = pools.get(s['app_pool'])
            sites.append(dict(s, app_pool_state=(pool['state'] if pool else ('Missing' if s['app_pool'] else ''))))
        return dict(sites=sites, pools=list(pools.values()))

    def running(self):
        return sorted(n for n, s in self.site_state.items() if s == 'Started' and self.site_element(n) is not None)

    def set_state(self, kind, name, state):
        """Change the run state behind the scripts' back (another actor on the host)."""
        (self.site_state if kind == 'site' else self.pool_state)[name] = state

    # -- reading the configuration as the query does ----------------------------------
    def _tree(self, element, key):
        tree = {'tag': element.tag, 'attrs': {}, 'children': []}
        for name, value in element.attrib.items():
            if self.is_encrypted(name, value):
                tree.setdefault('secret', {})[name] = self._fingerprint(key, self.decrypt(value))
            else:
                tree['attrs'][name] = value
        tree['children'] = [self._tree(c, key) for c in element if isinstance(c.tag, str)]
        return tree

    @staticmethod
    def _fingerprint(key, plain):
        return hmac.new(key, plain.encode('utf-8'), hashlib.sha256).hexdigest()[:32]

    def _section_names(self):
        return set(KNOWN_SECTIONS) | set(self.extra_sections)

    def _sections_of(self, location, key, unreadable):
        names = self._section_names()
        found = {}

        def visit(element, prefix):
            path = (prefix + '/' if prefix else '') + element.tag
            if path in names:
                found[path] = self._tree(element, key)
            elif any(n.startswith(path + '/') for n in names):
                for c in element:
                    if isinstance(c.tag, str):
                        visit(c, path)
            else:
                unreadable.append({'where': location.get('path'), 'what': 'section %s of <location path="%s">' % (path, location.get('path')),
                                   'reason': 'the IIS schema of this host has no section %s' % path})

        for c in location:
            if isinstance(c.tag, str):
                visit(c, '')
        return found

    def read_config(self, names, checks=()):
        key = os.urandom(32)
        sites, pools, locations, unreadable = {}, {}, {}, []
        for name in names:
            element = self.site_element(name)
            if element is None:
                continue
            sites[name] = self._tree(element, key)
            for pool in self._site_view(element)['app_pools']:
                pool_el = self.pool_element(pool)
                if pool_el is not None:
                    pools[pool] = self._tree(pool_el, key)
            low = name.lower()
            for location in self.config.findall('location'):
                path = location.get('path', '')
                if path.lower() != low and not path.lower().startswith(low + '/'):
                    continue
                entry = locations.setdefault(path, {'attrs': {}, 'sections': {}})
                entry['attrs'].update({k: v for k, v in location.attrib.items() if k != 'path'})
                entry['sections'].update(self._sections_of(location, key, unreadable))
        return dict(sites=sites, pools=pools, locations=locations, unreadable=unreadable,
                    checks=[self._fingerprint(key, str(value)) for value in checks])

    # -- writing trees as the apply actions do -------------------------------------------
    def _locate(self, locator):
        kind = locator.get('kind')
        if kind == 'pool':
            element = self.pool_element(locator['name'])
        elif kind == 'site':
            element = self.site_element(locator['name'])
        elif kind == 'section':
            element = None
            for location in self.location_elements(locator['location']):
                element = location.find('/'.join(locator['section'].split('/')))
                if element is not None:
                    break
        else:
            raise SimError('unknown locator kind %r' % kind)
        for tag, key in locator.get('steps') or []:
            if element is None:
                break
            element = next((c for c in element if c.tag == tag and all(c.get(k) == v for k, v in (key or {}).items())), None)
        if element is None:
            raise SimError('cannot copy an encrypted attribute: its source element is not in the configuration')
        return element

    def _resolve(self, tree):
        """Read every encrypted attribute a tree copies, before anything is written (the source may be rewritten)."""
        resolved = {}
        if tree.get('copy_secret'):
            source = self._locate(tree['copy_secret']['from'])
            for name in tree['copy_secret']['attributes']:
                if source.get(name) is None:
                    raise SimError('cannot copy the encrypted attribute %s: the source element has none' % name)
                resolved[name] = self.decrypt(source.get(name))
        return {'values': resolved, 'children': [self._resolve(c) for c in tree.get('children') or []]}

    def _build(self, tree, resolved):
        element = ET.Element(tree['tag'], {k: str(v) for k, v in tree['attrs'].items()})
        for name, value in list(resolved['values'].items()) + list((tree.get('secret_values') or {}).items()):
            element.set(name, self.encrypt(value))
        for c, r in zip(tree.get('children') or [], resolved['children'], strict=True):
            element.append(self._build(c, r))
        return element

    def _write(self, tree):
        return self._build(tree, self._resolve(tree))

    @staticmethod
    def _replace(parent, old, new):
        index = list(parent).index(old)
        parent.remove(old)
        parent.insert(index, new)

    def _set_section(self, path, section, override_mode, tree):
        element = self._write(tree)
        self._remove_section(path, section)
        location = next((e for e in self.location_elements(path) if e.get('overrideMode', '') == override_mode), None)
        if location is None:
            location = ET.SubElement(self.config, 'location', dict({'path': path}, **({'overrideMode': override_mode} if override_mode else {})))
        parent = location
        for group in section.split('/')[:-1]:
            found = parent.find(group)
            parent = found if found is not None else ET.SubElement(parent, group)
        parent.append(element)

    def _remove_section(self, path, section):
        parts = section.split('/')
        for location in self.location_elements(path):
            chain = [location]
            for part in parts:
                found = chain[-1].find(part)
                if found is None:
                    break
                chain.append(found)
            else:
                chain[-2].remove(chain[-1])
                for parent, element in zip(reversed(chain[:-2]), reversed(chain[1:-1]), strict=True):
                    if len(element) == 0 and not element.attrib:
                        parent.remove(element)
            if len(location) == 0:
                self.config.remove(location)

    # -- primitives (the apply actions) ----------------------------------
    def _site(self, name):
        element = self.site_element(name)
        if element is None:
            raise SimError('Cannot find path \'IIS:\\Sites\\%s\' because it does not exist.' % name)
        return element

    def _pool(self, name):
        element = self.pool_element(name)
        if element is None:
            raise SimError('Cannot find path \'IIS:\\AppPools\\%s\' because it does not exist.' % name)
        return element

    def apply(self, action):
        op, name = action['op'], action['name']
        if op == 'create_pool':
            if self.pool_element(name) is not None:
                raise SimError('Cannot add duplicate collection entry of type \'add\' with unique key attribute \'name\' set to \'%s\'' % name)
            element = self._write(action['tree'])
            element.set('name', name)
            self._pools_el.append(element)
            self.pool_state[name] = 'Started'  # a new pool starts (autoStart)
        elif op == 'set_pool':
            old = self._pool(name)
            element = self._write(action['tree'])
            element.set('name', name)
            self._replace(self._pools_el, old, element)
        elif op == 'create_site':
            if self.site_element(name) is not None:
                raise SimError('Cannot add duplicate collection entry of type \'site\' with unique key attribute \'name\' set to \'%s\'' % name)
            element = self._write(action['tree'])
            element.set('name', name)
            self._sites_el.append(element)
            self.site_state[name] = 'Stopped'
        elif op == 'set_site':
            old = self._site(name)
            element = self._write(action['tree'])
            # The writer keeps what identifies the site and what start and stop own.
            for key in ('name', 'id', 'serverAutoStart'):
                if old.get(key) is not None:
                    element.set(key, old.get(key))
            self._replace(self._sites_el, old, element)
        elif op == 'set_section':
            self._set_section(name, action['section'], action.get('override_mode') or '', action['tree'])
        elif op == 'remove_section':
            self._remove_section(name, action['section'])
        elif op == 'remove_location':
            for location in self.location_elements(name):
                self.config.remove(location)
        elif op == 'stop_site':
            element = self._site(name)
            element.set('serverAutoStart', 'false')
            if self.site_state.get(name) != 'Stopped':
                self.site_state[name] = 'Stopped'
                for hook in self.on_site_stop:
                    hook(self, self._site_view(element))
        elif op == 'stop_pool':
            self._pool(name)
            self.pool_state[name] = 'Stopped'
        elif op == 'start_pool':
            self._pool(name)
            self.pool_state[name] = 'Started'
        elif op == 'start_site':
            element = self._site(name)
            if name in self.refuse_start:
                raise SimError('The process cannot access the file because it is being used by another process. '
                               '(Exception from HRESULT: 0x80070020)')
            element.set('serverAutoStart', 'true')
            if self.site_state.get(name) != 'Started':
                view = self._site_view(element)
                holder = self.binding_holder(view)
                if holder:
                    raise SimError('BINDING_CONFLICT:' + holder)
                for hook in self.on_site_start:
                    hook(self, view)
                self.site_state[name] = 'Started'
        elif op == 'remove_site':
            element = self._site(name)
            if self.site_state.get(name) == 'Started':
                for hook in self.on_site_stop:
                    hook(self, self._site_view(element))
            self._sites_el.remove(element)
            self.site_state.pop(name, None)
        elif op == 'remove_pool':
            self._pools_el.remove(self._pool(name))
            self.pool_state.pop(name, None)
        elif op == 'remove_content':
            path = action['path'].rstrip('\\').lower()
            for key in [k for k in self.content if k.lower() == path or k.lower().startswith(path + '\\')]:
                del self.content[key]
        else:
            raise SimError('unknown action ' + op)

    def binding_holder(self, site):
        for other in self.sites.values():
            if other['name'] == site['name'] or other['state'] != 'Started':
                continue
            if any(overlap(a, b) for a in site['bindings'] for b in other['bindings']):
                return other['name']
        return ''

    # -- the scripts -----------------------------------------------------
    def run_site_swap(self, doc):
        result = dict(failed=False, msg='', applied=[], conflict_site='', inventory=None)
        with self.lock:
            if doc.get('operation') == 'apply':
                try:
                    for action in doc['actions']:
                        self.apply(action)
                        result['applied'].append('%s %s' % (action['op'], action['name']))
                except SimError as exc:
                    result['failed'] = True
                    text = str(exc)
                    if text.startswith('BINDING_CONFLICT:'):
                        result['conflict_site'] = text[len('BINDING_CONFLICT:'):]
                        text = 'a binding is held by another site (0x800700B7)'
                    result['msg'] = text
                except Exception as exc:  # a start hook failed
                    result['failed'] = True
                    result['msg'] = '%s: %s' % (type(exc).__name__, exc)
            result['inventory'] = self.inventory()
            if doc.get('operation') == 'query':
                app = doc.get('app') or ''
                names = [n for n in self.sites if app and (n == app or n.startswith(app + '-'))]
                names += [n for n in doc.get('sites') or [] if n not in names]
                result['config'] = self.read_config(names, doc.get('checks') or [])
        return result

    def run_package(self, doc):
        dest = doc['dest']
        result = dict(failed=False, msg='', changed=False, dest=dest, checksum='', size=None)
        with self.lock:
            current = self.content.get(dest)
            marker = current and current.get('marker')
            try:
                if doc['state'] == 'absent':
                    if current is not None:
                        result['changed'] = True
                        if not doc['check_mode']:
                            del self.content[dest]
                elif marker and marker['checksum'] == doc['checksum']:
                    result.update(checksum=marker['checksum'], size=marker['size'])
                elif doc['check_mode']:
                    result.update(changed=True, checksum=doc['checksum'])
                else:
                    data = self._download(doc)
                    actual = 'sha256:' + hashlib.sha256(data).hexdigest()
                    if actual != doc['checksum']:
                        raise SimError('checksum mismatch: expected %s, downloaded file has %s' % (doc['checksum'], actual))
                    with zipfile.ZipFile(io.BytesIO(data)) as archive:
                        files = sorted(archive.namelist())
                    self.content[dest] = dict(files=files, marker=dict(checksum=actual, size=len(data)))
                    result.update(changed=True, checksum=actual, size=len(data))
            except Exception as exc:  # the script reports every failure the same way
                result['failed'] = True
                result['msg'] = str(exc)
        return result

    @staticmethod
    def _download(doc):
        request = urllib.request.Request(doc['url'], headers=dict(doc.get('headers') or {}))
        context = None
        if doc['url'].startswith('https') and not doc.get('validate_certs', True):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=doc.get('timeout') or 60, context=context) as response:  # noqa: S310 - test double
                return response.read()
        except urllib.error.HTTPError as exc:
            raise SimError('The remote server returned an error: (%d) %s.' % (exc.code, exc.reason)) from exc
        except OSError as exc:
            raise SimError('Unable to connect to the remote server: %s' % exc) from exc


def add_production_site(host, name, physical_path, bindings, state='Started', identity='gmsa', user_name='CORP\\svc-app$', password=None,
                        app_pool=None, api_pool=None):
    """A site as operations teams run it: what IIS Manager and years of hand edits leave in applicationHost.config.

    A pool running as a gMSA (or ``identity='SpecificUser'`` with ``password``) with recycling, rapid-fail and
    environment variables; the site with an ``/api`` application and a ``/static`` virtual directory, limits and
    logging; ``<location>`` tags with Windows authentication (anonymous off) and an authorization rule for the
    site, anonymous access for ``/health`` (the load balancer's check), request limits and a response header.
    """
    pool_name = app_pool or name
    identity_type = 'SpecificUser' if identity in ('gmsa', 'SpecificUser') else identity
    pool = host.add_pool(pool_name, state='Started' if state == 'Started' else 'Stopped', start_mode='AlwaysRunning', idle_timeout=0,
                         identity=identity_type, user_name=user_name if identity_type == 'SpecificUser' else None, password=password)
    pool.set('autoStart', 'true')
    recycling = ET.SubElement(pool, 'recycling', {'logEventOnRecycle': 'Time, Memory, PrivateMemory'})
    restart = ET.SubElement(recycling, 'periodicRestart', {'time': '00:00:00'})
    ET.SubElement(ET.SubElement(restart, 'schedule'), 'add', {'value': '03:30:00'})
    ET.SubElement(pool, 'failure', {'rapidFailProtectionMaxCrashes': '10'})
    env = ET.SubElement(pool, 'environmentVariables')
    ET.SubElement(env, 'add', {'name': 'ASPNETCORE_ENVIRONMENT', 'value': 'Production'})
    ET.SubElement(env, 'add', {'name': 'APP_SETTINGS_PATH', 'value': 'D:\\config\\app.json'})
    site = host.add_site(name, bindings, physical_path=physical_path, app_pool=pool_name, state=state, preload_enabled=True)
    ET.SubElement(site, 'limits', {'connectionTimeout': '00:01:30', 'maxUrlSegments': '64'})
    ET.SubElement(site, 'logFile', {'logExtFileFlags': 'Date, Time, ClientIP, UserName, Method, UriStem, HttpStatus, TimeTaken, Host',
                                    'directory': 'D:\\logs\\iis', 'period': 'Hourly'})
    ET.SubElement(site, 'traceFailedRequestsLogging', {'enabled': 'true', 'maxLogFiles': '20'})
    host.add_application(name, '/api', physical_path + '\\api', app_pool=api_pool or pool_name, preloadEnabled='true')
    host.add_virtual_directory(name, '/static', physical_path + '\\static')
    host.add_location(name, """
      <system.webServer>
        <security>
          <authentication>
            <anonymousAuthentication enabled="false" />
            <windowsAuthentication enabled="true" authPersistNonNTLM="true">
              <providers><clear /><add value="Negotiate" /><add value="NTLM" /></providers>
            </windowsAuthentication>
          </authentication>
          <authorization>
            <remove users="*" roles="" verbs="" />
            <add accessType="Allow" roles="CORP\\app-users" />
          </authorization>
          <requestFiltering removeServerHeader="true">
            <requestLimits maxAllowedContentLength="10485760" maxQueryString="4096" />
          </requestFiltering>
        </security>
        <httpProtocol>
          <customHeaders><add name="X-Frame-Options" value="DENY" /></customHeaders>
        </httpProtocol>
      </system.webServer>""", overrideMode='Allow')
    host.add_location(name + '/health', """
      <system.webServer>
        <security>
          <authentication>
            <anonymousAuthentication enabled="true" />
            <windowsAuthentication enabled="false" />
          </authentication>
          <authorization><add accessType="Allow" users="*" /></authorization>
        </security>
      </system.webServer>""")
    host.add_location(name + '/api', """
      <system.webServer>
        <security>
          <requestFiltering><requestLimits maxAllowedContentLength="104857600" /></requestFiltering>
        </security>
      </system.webServer>""")
    return site


def snapshot(host):
    """A JSON-able copy of a host's state (for assertions): the configuration document, run states, content."""
    return json.loads(json.dumps(dict(config=host.xml(), sites=host.site_state, pools=host.pool_state, content=copy.deepcopy(host.content))))
