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


def validate_names(names):
    """Alarm names, stripped and de-duplicated in order; CanaryError naming the option otherwise."""
    if not isinstance(names, (list, tuple)) or not names:
        raise CanaryError('Invalid value for option names: %r; give a list of one or more CloudWatch alarm names' % (names,))
    found = []
    for name in names:
        text = name.strip() if isinstance(name, str) else ''
        if not text or len(text) > 255:
            raise CanaryError('Invalid value for option names: %r; every entry must be an alarm name of 1 to 255 characters' % (name,))
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


def firing_message(alarms):
    firing = [a for a in alarms if a['state'] == ALARM]
    return 'Failed the alarm check: %d CloudWatch alarm(s) in ALARM: %s' % (
        len(firing), '; '.join('%s (%s)' % (a['name'], a['reason'] or 'no reason given') for a in firing))


def read_alarms(client, names):
    """The documented views of ``names``, in order; an unknown name is refused naming the option."""
    found = describe_alarms(client, names)
    missing = [name for name in names if name not in found]
    if missing:
        raise CanaryError('Invalid value for option names: CloudWatch alarm(s) %s not found in this account and region'
                          % ', '.join(missing), missing_alarms=missing)
    return [alarm_view(name, *found[name]) for name in names]
