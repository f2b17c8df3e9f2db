# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rollout at a time: a lock per application, one document in Elasticsearch.

The lock is the document ``<index>/_doc/<app>``::

    {"app": ..., "holder": {"run_id", "user", "controller", "playbook"},
     "acquired_at": ISO, "expires_at": ISO, "ttl": seconds}

* acquire = ``_create`` (atomic: of two creators exactly one gets 201);
* an expired lock, or any lock with ``force``, is taken over with a write
  conditional on the ``_seq_no``/``_primary_term`` read just before, so of
  two runs taking over the same lock exactly one wins and the other is told
  who did;
* release = a conditional delete, only by the run that holds it (or forced).

Expiry is judged with the controller's clock against ``expires_at``; clocks
of controllers must agree within a small part of the ttl.
"""

from __future__ import annotations

import datetime
import getpass
import socket
import time

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

DEFAULT_INDEX = 'canary-locks'
MAX_TTL = 7 * 86400
MAX_ID_BYTES = 512
HOLDER_FIELDS = ('run_id', 'user', 'controller', 'playbook')
ATTEMPTS = 3


def _iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def _parse(text):
    try:
        stamp = datetime.datetime.fromisoformat(str(text).replace('Z', '+00:00'))
    except (TypeError, ValueError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp


def validate_lock_params(params):
    """Check the options the argument spec cannot; returns the index. Raises CanaryError naming the option."""
    app = params.get('app')
    if not isinstance(app, str) or not app.strip():
        raise CanaryError('Invalid app %r: expected the non-empty application name, for example app.example.com' % (app,))
    if len(app.encode('utf-8')) > MAX_ID_BYTES or any(ord(c) < 32 for c in app):
        raise CanaryError('Invalid app %r: the lock id is the app name; it must be at most %d bytes without control characters'
                          % (app[:80], MAX_ID_BYTES))
    run_id = params.get('run_id')
    if not isinstance(run_id, str) or not run_id.strip():
        raise CanaryError('Invalid run_id %r: expected a non-empty id of this run (the role passes its rollout_run_id)' % (run_id,))
    index = params.get('index') or DEFAULT_INDEX
    if index != index.lower() or index.startswith(('_', '-', '+')) or any(c in index for c in '\\/*?"<>| ,#:'):
        raise CanaryError('Invalid index %r: index names are lower case, do not start with _ - +, and have no \\ / * ? " < > | , # : or spaces'
                          % index)
    ttl = params.get('ttl')
    if params.get('state', 'present') == 'present':
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
            raise CanaryError('Invalid ttl %r: expected whole seconds from 1 to %d (7 days)' % (ttl, MAX_TTL))
    holder = params.get('holder') or {}
    if not isinstance(holder, dict):
        raise CanaryError('Invalid holder %r: expected a dictionary with the keys %s' % (holder, ', '.join(HOLDER_FIELDS[1:])))
    unknown = sorted(set(holder) - set(HOLDER_FIELDS[1:]))
    if unknown:
        raise CanaryError('Invalid holder: unknown key(s) %s; valid keys are %s' % (', '.join(unknown), ', '.join(HOLDER_FIELDS[1:])))
    return index


def make_holder(params):
    """Who holds the lock: the run id plus user, controller host and playbook (defaults from this controller)."""
    given = params.get('holder') or {}
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = 'unknown'
    holder = dict(run_id=params['run_id'], user=user, controller=socket.gethostname(), playbook='')
    for key in HOLDER_FIELDS[1:]:
        if given.get(key) not in (None, ''):
            holder[key] = str(given[key])
    return holder


def describe_holder(lock):
    holder = (lock or {}).get('holder') or {}
    text = 'run %s' % (holder.get('run_id') or '?')
    details = []
    if holder.get('user'):
        details.append('user %s' % holder['user'])
    if holder.get('controller'):
        details.append('on %s' % holder['controller'])
    if holder.get('playbook'):
        details.append('playbook %s' % holder['playbook'])
    if details:
        text += ' (%s)' % ', '.join(details)
    return text


class DeployLock:
    """Acquire, refresh and release the lock of one application."""

    def __init__(self, client, index=DEFAULT_INDEX, clock=time.time):
        self.client = client
        self.index = index
        self.clock = clock

    def _now(self):
        return datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)

    def _read(self, app):
        found = self.client.get_document(self.index, app, what='deploy lock')
        if found is None:
            return None, None, None
        source, seq_no, term = found
        return source if isinstance(source, dict) else {}, seq_no, term

    def _expired(self, lock, now):
        expires = _parse(lock.get('expires_at'))
        return expires is not None and expires <= now

    def _expiry_text(self, lock, now):
        expires = _parse(lock.get('expires_at'))
        if expires is None:
            return 'it has no valid expires_at (%r)' % (lock.get('expires_at'),)
        return 'it expires at %s (in %d s)' % (lock['expires_at'], max(0, int((expires - now).total_seconds())))

    def acquire(self, app, holder, ttl, force=False, refresh=False, check_mode=False):
        """Returns dict(changed, result, lock, previous, displaced). Raises CanaryError when another run holds it."""
        for _attempt in range(ATTEMPTS):
            now = self._now()
            wanted = dict(app=app, holder=dict(holder), acquired_at=_iso(now), expires_at=_iso(now + datetime.timedelta(seconds=ttl)), ttl=ttl)
            current, seq_no, term = self._read(app)
            if current is None:
                if check_mode or self.client.put_document(self.index, app, wanted, create=True, what='deploy lock'):
                    return dict(changed=True, result='acquired', lock=wanted, previous=None, displaced=None)
                continue  # created by someone else a moment ago: look again
            ours = ((current.get('holder') or {}).get('run_id') == holder['run_id'])
            expired = self._expired(current, now)
            if ours:
                if not (refresh or expired):
                    return dict(changed=False, result='held', lock=current, previous=current, displaced=None)
                wanted['acquired_at'] = current.get('acquired_at') or wanted['acquired_at']
                if check_mode or self.client.put_document(self.index, app, wanted, if_seq_no=seq_no, if_primary_term=term, what='deploy lock'):
                    return dict(changed=True, result='refreshed', lock=wanted, previous=current, displaced=None)
                continue
            if not expired and not force:
                raise CanaryError('Failed to acquire the deploy lock of %s: held by %s since %s; %s. Wait for that run to end, or take '
                                  'the lock over with force=true (playbooks/rollback.yml does)'
                                  % (app, describe_holder(current), current.get('acquired_at') or '?', self._expiry_text(current, now)),
                                  holder=current.get('holder'), expires_at=current.get('expires_at'))
            if check_mode or self.client.put_document(self.index, app, wanted, if_seq_no=seq_no, if_primary_term=term, what='deploy lock'):
                return dict(changed=True, result='taken_over', lock=wanted, previous=current, displaced=current.get('holder'),
                            displaced_expired=expired)
            winner, _seq, _term = self._read(app)
            raise CanaryError('Failed to take over the deploy lock of %s: another run took it at the same moment; it is now held by %s'
                              % (app, describe_holder(winner)), holder=(winner or {}).get('holder'))
        raise CanaryError('Failed to acquire the deploy lock of %s: it changed hands %d times while this run tried; try again' % (app, ATTEMPTS))

    def release(self, app, run_id, force=False, check_mode=False):
        """Returns dict(changed, result, lock, previous, displaced). Refuses a lock held by another run unless forced."""
        current, seq_no, term = self._read(app)
        if current is None:
            return dict(changed=False, result='absent', lock=None, previous=None, displaced=None)
        ours = (current.get('holder') or {}).get('run_id') == run_id
        if not ours and not force:
            raise CanaryError('Failed to release the deploy lock of %s: it is held by %s, not by this run (%s); %s. Only the holder '
                              'releases it (or force=true)' % (app, describe_holder(current), run_id, self._expiry_text(current, self._now())),
                              holder=current.get('holder'))
        displaced = None if ours else current.get('holder')
        if check_mode:
            return dict(changed=True, result='released', lock=None, previous=current, displaced=displaced)
        outcome = self.client.delete_document(self.index, app, if_seq_no=seq_no, if_primary_term=term, what='deploy lock')
        if outcome == 'conflict':
            winner, _seq, _term = self._read(app)
            raise CanaryError('Failed to release the deploy lock of %s: it changed hands while this run released it; it is now held by %s'
                              % (app, describe_holder(winner)), holder=(winner or {}).get('holder'))
        return dict(changed=outcome == 'deleted', result='released' if outcome == 'deleted' else 'absent', lock=None, previous=current,
                    displaced=displaced)
