# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploy events: one document per rollout step, idempotent with an id."""

from __future__ import annotations

import datetime
import re

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

PHASES = ('started', 'drained', 'deployed', 'warmed', 'admitted', 'promoted', 'reverted', 'aborted', 'succeeded', 'failed')
EVENT_FIELDS = ('app', 'version', 'from_version', 'host', 'phase', 'outcome', 'reason', 'run_id', 'duration', 'event_id')
SECRET_KEY = re.compile(r'passw|secret|token|api_?key|credential|private_?key', re.IGNORECASE)
DEFAULT_INDEX = 'deploy-events-%Y.%m'


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def _secret_keys(value, path=''):
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = '%s.%s' % (path, key) if path else str(key)
            if SECRET_KEY.search(str(key)):
                found.append(here)
            found.extend(_secret_keys(item, here))
    elif isinstance(value, list):
        for item in value:
            found.extend(_secret_keys(item, path))
    return found


def build_event(params, now=utc_now):
    """(index, document) from the module parameters; validates first."""
    if params.get('phase') not in PHASES:
        raise CanaryError('Invalid phase %r: valid phases are %s' % (params.get('phase'), ', '.join(PHASES)))
    if not isinstance(params.get('app'), str) or not params['app'].strip():
        raise CanaryError('Invalid app %r: expected the non-empty application name, for example app.example.com' % (params.get('app'),))
    duration = params.get('duration')
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration >= 0):
        raise CanaryError('Invalid duration %r: expected seconds >= 0' % (duration,))
    if params.get('timestamp'):
        try:
            moment = datetime.datetime.fromisoformat(params['timestamp'].strip().replace('Z', '+00:00'))
        except ValueError:
            raise CanaryError('Invalid timestamp %r: expected ISO-8601 such as 2026-05-01T12:00:00Z' % params['timestamp']) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
    else:
        moment = now()
    data = params.get('data')
    if data:
        secrets = _secret_keys(data)
        if secrets:
            raise CanaryError('Invalid data: key(s) %s look like secrets; deploy events must never carry secrets' % ', '.join(secrets))
    index = params.get('index') or moment.astimezone(datetime.timezone.utc).strftime(DEFAULT_INDEX)
    if index != index.lower() or any(c in index for c in '\\/*?"<>| ,#:'):
        raise CanaryError('Invalid index %r: index names are lower case without \\ / * ? " < > | , # : or spaces' % index)
    event = {'@timestamp': _iso(moment)}
    for name in EVENT_FIELDS:
        if params.get(name) is not None:
            event[name] = params[name]
    if data:
        event['data'] = data
    return index, event


class EventWriter:
    def __init__(self, client):
        self.client = client

    def write(self, index, event, event_id=None, check_mode=False):
        """Returns dict(changed, id, result)."""
        if event_id:
            if check_mode:
                exists = self.client.document_exists(index, event_id)
                return dict(changed=not exists, id=event_id, result='exists' if exists else 'skipped')
            created = self.client.create_document(index, event_id, event)
            return dict(changed=created, id=event_id, result='created' if created else 'exists')
        if check_mode:
            return dict(changed=True, id=None, result='skipped')
        return dict(changed=True, id=self.client.index_document(index, event), result='created')


READ_FILTERS = ('app', 'phase', 'run_id', 'host')
DEFAULT_READ_INDEX = 'deploy-events-*'
MAX_LIMIT = 100


def build_event_query(params):
    """(index, search body) for the newest events matching the selection; validates first.

    Every selected value becomes one ``term`` filter on ``<field><keyword_suffix>``;
    no value is ever placed in query text.
    """
    index = params.get('index') or DEFAULT_READ_INDEX
    if index != index.lower() or any(c in index for c in '\\/?"<>| #:'):
        raise CanaryError('Invalid index %r: index names and patterns are lower case without \\ / ? " < > | # : or spaces' % index)
    limit = params.get('limit', 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise CanaryError('Invalid limit %r: expected a whole number from 1 to %d' % (limit, MAX_LIMIT))
    suffix = params.get('keyword_suffix')
    suffix = '.keyword' if suffix is None else suffix
    if (suffix and not suffix.startswith('.')) or any(c.isspace() for c in suffix):
        raise CanaryError('Invalid keyword_suffix %r: expected an empty string or a sub-field suffix such as .keyword' % suffix)
    if params.get('phase') is not None and params['phase'] not in PHASES:
        raise CanaryError('Invalid phase %r: valid phases are %s' % (params['phase'], ', '.join(PHASES)))
    filters = []
    for name in READ_FILTERS:
        value = params.get(name)
        if value is None and name != 'app':
            continue
        if not isinstance(value, str) or not value:
            raise CanaryError('Invalid %s %r: expected a non-empty string%s' % (name, value, '' if name == 'app' else ' or leave it unset'))
        filters.append({'term': {name + suffix: value}})
    body = {
        'query': {'bool': {'filter': filters}},
        'sort': [{'@timestamp': {'order': 'desc', 'unmapped_type': 'date'}}],
        'size': limit,
    }
    return index, body


class EventReader:
    def __init__(self, client):
        self.client = client

    def read(self, index, body):
        """The ``_source`` of each hit, in the server's order (newest first)."""
        response = self.client.search(index, body)
        hits = (response.get('hits') or {}).get('hits') if isinstance(response, dict) else None
        if not isinstance(hits, list):
            raise CanaryError('Failed to read deploy events from index %s: the search answer has no hits list' % index)
        events = []
        for hit in hits:
            source = hit.get('_source') if isinstance(hit, dict) else None
            if not isinstance(source, dict):
                raise CanaryError('Failed to read deploy events from index %s: hit %s has no _source (is _source disabled in the mapping?)'
                                  % (index, hit.get('_id') if isinstance(hit, dict) else hit))
            events.append(source)
        return events
