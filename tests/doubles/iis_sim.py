"""A simulated IIS host: the one place where the semantics of our scripts
live for tests.

It implements the contract of ``plugins/module_utils/_iis_scripts.py``:

``iis_site_swap/1``
    input ``{"operation": "query"}`` or ``{"operation": "apply", "actions":
    [...], "wait_timeout": s}``; result ``{"failed", "msg", "applied",
    "conflict_site", "inventory": {"sites": [...], "pools": [...]}}``.
    Actions run in order and stop at the first failure (what ran stays done).
``iis_package/1``
    input ``{"state", "url", "checksum", "dest", "headers", "validate_certs",
    "timeout", "check_mode"}``; result ``{"failed", "msg", "changed", "dest",
    "checksum", "size"}``. The download is real (urllib, with the headers);
    the checksum is verified before anything is unpacked.

Knowingly simpler than IIS (and the real scripts):

- State changes are instant: a site or pool is Started or Stopped at once
  (no Starting/Stopping), so waits never wait. A start hook may raise to
  make a start fail.
- A binding conflict is "same port, same host header, same IP or either
  IP is ``*``" against any other *Started* site; http.sys is subtler
  (specific IPs take precedence over ``*``) and also checks TLS bindings.
- Names are not checked against IIS's character rules (the injection tests
  need names IIS would refuse); ``create_site`` rejects an existing name and
  a missing app pool, like New-Website does.
- Content folders are in memory (path -> {"files", "marker"}); zips are
  really opened with ``zipfile`` but only the member names are kept.
  ``remove_content`` removes the folder entry and everything under it.
- Certificates are recorded on the binding as given; no certificate store.
- ``validate_certs`` and ``timeout`` are honoured by urllib; a proxy is
  never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import ssl
import threading
import urllib.error
import urllib.request
import zipfile


def new_binding(protocol='https', ip='*', port=443, host_header='', certificate_thumbprint='', certificate_store='', sni=False):
    return dict(protocol=protocol, ip=ip, port=int(port), host_header=host_header, certificate_thumbprint=certificate_thumbprint,
                certificate_store=certificate_store, sni=bool(sni))


def overlap(a, b):
    same_ip = a['ip'] == b['ip'] or '*' in (a['ip'], b['ip'])
    return same_ip and int(a['port']) == int(b['port']) and a['host_header'].lower() == b['host_header'].lower()


class SimError(Exception):
    pass


class SimHost:
    """One Windows host: IIS sites, app pools, content folders.

    ``on_site_start(host, site)`` / ``on_site_stop(host, site)`` callbacks
    run on every state change (the lab attaches real listeners there).
    ``scripts`` records every script received as (header, script, input).
    """

    def __init__(self, name):
        self.name = name
        self.sites = {}
        self.pools = {}
        self.content = {}
        self.scripts = []
        self.on_site_start = []
        self.on_site_stop = []
        self.lock = threading.RLock()
        # None, 'auth' (every request 401), 'down' (connections are dropped) or
        # 'garbage' (the script prints something that is not a result)
        self.fault = None

    # -- seeding -------------------------------------------------------
    def add_pool(self, name, state='Started', managed_runtime='v4.0', pipeline_mode='Integrated', identity='ApplicationPoolIdentity',
                 start_mode='OnDemand', idle_timeout=20):
        self.pools[name] = dict(name=name, state=state, managed_runtime=managed_runtime, pipeline_mode=pipeline_mode, identity=identity,
                                start_mode=start_mode, idle_timeout=idle_timeout)
        return self.pools[name]

    def add_site(self, name, bindings, physical_path=None, app_pool=None, state='Started', preload_enabled=False):
        pool = app_pool if app_pool is not None else name
        if pool and pool not in self.pools:
            self.add_pool(pool, state='Started' if state == 'Started' else 'Stopped')
        site = dict(name=name, id=self._next_id(), state=state, app_pool=pool, physical_path=physical_path or 'C:\\inetpub\\' + name,
                    preload_enabled=preload_enabled, auto_start=state == 'Started', bindings=[new_binding(**b) for b in bindings])
        self.sites[name] = site
        return site

    def _next_id(self):
        return max([s['id'] for s in self.sites.values()] + [0]) + 1

    # -- views ---------------------------------------------------------
    def inventory(self):
        sites = []
        for s in sorted(self.sites.values(), key=lambda x: x['id']):
            pool = self.pools.get(s['app_pool'])
            sites.append(dict(name=s['name'], id=s['id'], state=s['state'], app_pool=s['app_pool'],
                              app_pool_state=(pool['state'] if pool else ('Missing' if s['app_pool'] else '')),
                              physical_path=s['physical_path'], preload_enabled=s['preload_enabled'], auto_start=s['auto_start'],
                              bindings=[dict(b) for b in s['bindings']]))
        return dict(sites=sites, pools=[dict(p) for p in self.pools.values()])

    def running(self):
        return sorted(n for n, s in self.sites.items() if s['state'] == 'Started')

    # -- primitives (the apply actions) ----------------------------------
    def _site(self, name):
        if name not in self.sites:
            raise SimError('Cannot find path \'IIS:\\Sites\\%s\' because it does not exist.' % name)
        return self.sites[name]

    def _pool(self, name):
        if name not in self.pools:
            raise SimError('Cannot find path \'IIS:\\AppPools\\%s\' because it does not exist.' % name)
        return self.pools[name]

    def apply(self, action):
        op, name = action['op'], action['name']
        if op == 'create_pool':
            if name in self.pools:
                raise SimError('Cannot create a file when that file already exists. (app pool %s)' % name)
            self.add_pool(name, state='Started')
            self._set_pool(action)
        elif op == 'set_pool':
            self._pool(name)
            self._set_pool(action)
        elif op == 'create_site':
            if name in self.sites:
                raise SimError('Cannot create a file when that file already exists. (site %s)' % name)
            self._pool(action['app_pool'])
            self.sites[name] = dict(name=name, id=self._next_id(), state='Stopped', app_pool=action['app_pool'],
                                    physical_path=action['physical_path'], preload_enabled=bool(action['preload_enabled']),
                                    auto_start=False, bindings=[new_binding(**b) for b in action['bindings']])
        elif op == 'set_site':
            site = self._site(name)
            site.update(physical_path=action['physical_path'], app_pool=action['app_pool'], preload_enabled=bool(action['preload_enabled']))
        elif op == 'set_bindings':
            self._site(name)['bindings'] = [new_binding(**b) for b in action['bindings']]
        elif op == 'stop_site':
            site = self._site(name)
            site['auto_start'] = False
            if site['state'] != 'Stopped':
                site['state'] = 'Stopped'
                for hook in self.on_site_stop:
                    hook(self, dict(site))
        elif op == 'stop_pool':
            self._pool(name)['state'] = 'Stopped'
        elif op == 'start_pool':
            self._pool(name)['state'] = 'Started'
        elif op == 'start_site':
            site = self._site(name)
            site['auto_start'] = True
            if site['state'] != 'Started':
                holder = self.binding_holder(site)
                if holder:
                    raise SimError('BINDING_CONFLICT:' + holder)
                for hook in self.on_site_start:
                    hook(self, dict(site))
                site['state'] = 'Started'
        elif op == 'remove_site':
            site = self._site(name)
            if site['state'] == 'Started':
                for hook in self.on_site_stop:
                    hook(self, dict(site))
            del self.sites[name]
        elif op == 'remove_pool':
            self._pool(name)
            del self.pools[name]
        elif op == 'remove_content':
            path = action['path'].rstrip('\\').lower()
            for key in [k for k in self.content if k.lower() == path or k.lower().startswith(path + '\\')]:
                del self.content[key]
        else:
            raise SimError('unknown action ' + op)

    def _set_pool(self, action):
        pool = self.pools[action['name']]
        for key in ('managed_runtime', 'pipeline_mode', 'identity', 'start_mode', 'idle_timeout'):
            pool[key] = action[key]

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


def snapshot(host):
    """A JSON-able copy of a host's state (for assertions)."""
    return json.loads(json.dumps(dict(sites=host.sites, pools=host.pools, content=host.content)))
