# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CloudWatch alarms: read the state of named alarms in as few calls as AWS allows.

This layer knows nothing about Ansible. The remote call raises CanaryError
worded "Failed to <action> <object>: <cause>"; validation, the views and
the messages are pure functions.
"""

from __future__ import annotations

from ansible_collections.immune.canary.plugins.module_utils._aws import describe_aws_error
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._elbv2 import AWS_ERRORS

# DescribeAlarms takes at most 100 names per call.
NAME_BATCH = 100
# Without AlarmTypes, DescribeAlarms returns metric alarms only.
ALARM_TYPES = ('MetricAlarm', 'CompositeAlarm')
ALARM = 'ALARM'


def validate_names(names, option='names'):
    """Alarm names, stripped and de-duplicated in order; CanaryError naming the option otherwise."""
    if not isinstance(names, (list, tuple)) or not names:
        raise CanaryError('Invalid value for option %s: %r; give a list of one or more CloudWatch alarm names' % (option, names))
    found = []
    for name in names:
        text = name.strip() if isinstance(name, str) else ''
        if not text or len(text) > 255:
            raise CanaryError('Invalid value for option %s: %r; every entry must be an alarm name of 1 to 255 characters'
                              % (option, name))
        if text not in found:
            found.append(text)
    return found


def describe_alarms(client, names):
    """name -> (kind, DescribeAlarms entry) for the alarms that exist, in batches of 100 names."""
    found = {}
    for start in range(0, len(names), NAME_BATCH):
        batch = names[start:start + NAME_BATCH]
        try:
            paginator = client.get_paginator('describe_alarms')
            for page in paginator.paginate(AlarmNames=batch, AlarmTypes=list(ALARM_TYPES)):
                for kind, key in (('metric', 'MetricAlarms'), ('composite', 'CompositeAlarms')):
                    for alarm in page.get(key, []):
                        found[alarm['AlarmName']] = (kind, alarm)
        except AWS_ERRORS as exc:
            raise describe_aws_error('describe CloudWatch alarms %s' % ', '.join(batch), exc) from exc
    return found


def alarm_view(name, kind, raw):
    updated = raw.get('StateUpdatedTimestamp')
    return {
        'name': name,
        'type': kind,
        'state': raw.get('StateValue'),
        'reason': raw.get('StateReason'),
        'updated': updated.isoformat() if hasattr(updated, 'isoformat') else updated,
        'actions_enabled': raw.get('ActionsEnabled'),
    }


def firing_message(alarms, what='Failed the alarm check'):
    firing = [a for a in alarms if a['state'] == ALARM]
    return '%s: %d CloudWatch alarm(s) in ALARM: %s' % (
        what, len(firing), '; '.join('%s (%s)' % (a['name'], a['reason'] or 'no reason given') for a in firing))


def read_alarms(client, names, option='names'):
    """The documented views of ``names``, in order; an unknown name is refused naming the option."""
    found = describe_alarms(client, names)
    missing = [name for name in names if name not in found]
    if missing:
        raise CanaryError('Invalid value for option %s: CloudWatch alarm(s) %s not found in this account and region'
                          % (option, ', '.join(missing)), missing_alarms=missing)
    return [alarm_view(name, *found[name]) for name in names]


def validate_preexisting(entries, option='alarms_preexisting'):
    """name -> the ``updated`` time it was accepted in ALARM (None: whenever), from a list of alarm views."""
    accepted = {}
    for entry in entries or []:
        name = entry.get('name') if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise CanaryError('Invalid value for option %s: %r; every entry needs the name of an alarm (and optionally '
                              'its updated time), as cloudwatch_alarms returns them' % (option, entry))
        accepted[name.strip()] = entry.get('updated') or None
    return accepted


def is_preexisting(alarm, accepted):
    """An alarm accepted in ALARM before, and still in the same ALARM (not changed since)."""
    if alarm['name'] not in accepted:
        return False
    updated = accepted[alarm['name']]
    return updated is None or updated == alarm['updated']


class AlarmWatch:
    """The alarms a bake watches: one DescribeAlarms call (per 100 names) each look.

    ``accepted`` (see validate_preexisting) are alarms an operator let the
    run start with: they count again once their state changes.
    """

    def __init__(self, client, names, accepted=None, option='alarms'):
        self.client = client
        self.names = names
        self.accepted = accepted or {}
        self.option = option
        self.last = []

    def firing(self):
        """The alarms in ALARM now, not counting the accepted ones; keeps every view in ``last``."""
        self.last = read_alarms(self.client, self.names, self.option)
        return [a for a in self.last if a['state'] == ALARM and not is_preexisting(a, self.accepted)]
