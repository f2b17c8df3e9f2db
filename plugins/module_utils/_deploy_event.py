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
