# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rollback will do on each host, decided before it touches any.

Pure logic over what the hosts, the target groups and the deploy events say;
the ``rollback_plan`` filter exposes it to the role. Each host gets one
action:

- ``unchanged``: it runs the site already, registered and healthy everywhere;
- ``swap``: the site is on the host: stop the running one, start it, warm,
  admit (the revert);
- ``deploy``: the site is gone (a deploy pruned it) but the release's package
  is known: drain, deploy it as its own site, warm, admit, as a deploy does;
- ``refuse``: neither; the whole rollback is refused before any change.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ACTIONS = ('unchanged', 'swap', 'deploy', 'refuse')


def version_of(app, site):
    """The version part of ``<app>-<version>``, or '' for another site name."""
    prefix = app + '-'
    return site[len(prefix):] if site and site.startswith(prefix) else ''


def recordable_package(url, checksum):
    """The package as a deploy event may keep it: no URL that carries a credential (user info or a query string)."""
    if not checksum:
        return None
    parts = urlsplit(url or '')
    if not url or parts.username or parts.password or parts.query or parts.fragment:
        return {'checksum': checksum}
    return {'url': url, 'checksum': checksum}


def _ordered(events):
    return sorted(events or [], key=lambda e: str(e.get('@timestamp', '')))


def recorded_package(app, site, started):
    """The newest package recorded by the ``started`` event of the release ``site``, or None."""
    version = version_of(app, site)
    for event in reversed(_ordered(started)):
        package = (event.get('data') or {}).get('package') or {}
        if str(event.get('version')) == version and package.get('url') and package.get('checksum'):
            return {'url': package['url'], 'checksum': package['checksum'], 'run_id': event.get('run_id', '')}
    return None


def pruned_by(app, site, host, started, touched):
    """The run that removed ``site`` from ``host``, as (version, run_id), or None when the events do not say.

    A deploy keeps only the host's fallback (and rollout_keep_sites) besides
    the new release, and only on the hosts it touched (``touched``: run id ->
    hosts with a promoted or reverted event). The pruning run is the first
    that touched the host after the last one in which the site was the new
    release or the host's fallback."""
    last_seen = None
    runs = _ordered(started)
    for index, event in enumerate(runs):
        data = event.get('data') or {}
        kept = {'%s-%s' % (app, event.get('version')), (data.get('fallbacks') or {}).get(host)}
        if site in kept and host in (data.get('hosts') or []):
            last_seen = index
    if last_seen is None:
        return None
    for event in runs[last_seen + 1:]:
        data = event.get('data') or {}
        kept = {'%s-%s' % (app, event.get('version')), (data.get('fallbacks') or {}).get(host)}
        if host in touched.get(event.get('run_id'), ()) and site not in kept:
            return str(event.get('version')), event.get('run_id', '')
    return None


def _healthy(targets):
    return bool(targets) and all(t.get('target_state') == 'healthy' for t in targets)


def plan(app, hosts, wanted, started=None, touched=None, package=None, bad_sites=()):
    """Decide per host; return dict(hosts={host: decision}, refused=[...], message='...').

    ``hosts``: host -> dict(sites=[names], active=name, targets=[{name, target_state}], error=text or '').
    ``wanted``: host -> the site to run there. ``package``: dict(url, checksum) given for the run, or None.
    ``bad_sites``: sites never to put back in service (a release the last deploy aborted, or named by the operator)."""
    started, touched = started or [], {k: set(v) for k, v in (touched or {}).items()}
    decisions, refused = {}, []
    for host in sorted(hosts):
        seen = hosts[host] or {}
        site = wanted.get(host) or ''
        running = seen.get('active') or ''
        decision = dict(site=site, running=running, restore=running if running and running not in bad_sites else '')
        if not site:
            decision.update(action='refuse', reason='no version to roll back to: the last rollout recorded no fallback for it')
        elif seen.get('error'):
            decision.update(action='refuse', reason='it cannot be read: %s' % seen['error'])
        elif running == site and _healthy(seen.get('targets')):
            decision.update(action='unchanged', reason='already runs %s, registered and healthy' % site)
        elif site in (seen.get('sites') or []):
            decision.update(action='swap', reason='%s is on the host' % site)
        else:
            found = package if package and package.get('url') and package.get('checksum') else recorded_package(app, site, started)
            if found:
                decision.update(action='deploy', package={'url': found['url'], 'checksum': found['checksum']},
                                reason='%s is not on the host: its package is deployed (%s)' % (
                                    site, 'recorded by run %s' % found['run_id'] if found.get('run_id') else 'rollout_package_url'))
            else:
                by = pruned_by(app, site, host, started, touched)
                how = 'pruned by the deploy of release %s (run %s)' % by if by else 'not on the host (no recorded deploy says when it went)'
                decision.update(action='refuse', reason='%s is %s, and its package is not known' % (site, how))
        decisions[host] = decision
        if decision['action'] == 'refuse':
            refused.append('%s: %s' % (host, decision['reason']))
    message = ''
    if refused:
        common = set.intersection(*[set((hosts[h] or {}).get('sites') or []) for h in hosts]) if hosts else set()
        instead = sorted(s for s in common if s not in bad_sites)
        unnamed = [h for h in decisions if not decisions[h]['site']]
        message = ('Refused before any change: the rollback cannot reach its version on %d host(s). %s. To proceed, %s'
                   % (len(refused), '; '.join(refused),
                      'name the version with -e rollback_to=<version> (playbooks/status.yml lists the sites)' if unnamed else
                      "give the release's package (-e rollout_package_url=<url> -e rollout_package_checksum=sha256:<hex>) so that "
                      'it is deployed where it is gone'))
        if instead:
            message += ', or roll back to a version every host still has (%s)' % ', '.join(instead)
        message += '; keep instant rollbacks with rollout_keep_sites.'
    return dict(hosts=decisions, refused=refused, message=message)
