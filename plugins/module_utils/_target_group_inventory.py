# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet of a target group: read targets and instances, map them to hosts.

This layer knows nothing about Ansible; the inventory plugin
``immune.canary.target_group`` is the glue. Reading (``collect``) gives plain
JSON-able data that the plugin may cache; mapping (``build_hosts``) is a pure
function of that data and the options, so a cached fleet can be mapped again
with other options.
"""

from __future__ import annotations

import re

from ansible_collections.immune.canary.plugins.module_utils._autoscaling import describe_auto_scaling_instances
from ansible_collections.immune.canary.plugins.module_utils._aws import describe_aws_error
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._elbv2 import AWS_ERRORS, describe_target_groups, describe_target_health

# Where a host name or address comes from: the names amazon.aws.aws_ec2 uses
# for its hostnames option, and the key in our instance facts.
SOURCES = {
    'instance-id': 'instance_id',
    'private-ip-address': 'private_ip_address',
    'private-dns-name': 'private_dns_name',
    'ip-address': 'public_ip_address',
    'dns-name': 'public_dns_name',
}
# Shorter spellings, accepted too.
SOURCE_ALIASES = {
    'private-ip': 'private-ip-address',
    'private-dns': 'private-dns-name',
    'public-ip': 'ip-address',
    'public-ip-address': 'ip-address',
    'public-dns': 'dns-name',
    'public-dns-name': 'dns-name',
}
VALID_SOURCES = "%s, or tag:<key> (e.g. tag:Name)" % ', '.join(sorted(SOURCES) + sorted(SOURCE_ALIASES))

# From best to worst; target_health is the worst state of a host's registrations.
HEALTH_ORDER = ('healthy', 'initial', 'unused', 'draining', 'unhealthy.draining', 'unavailable', 'unhealthy')

# DescribeInstances takes at most 200 values per filter.
INSTANCE_BATCH = 200

_UNSAFE_GROUP_CHARS = re.compile(r'[^A-Za-z0-9_]')


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------

def normalize_source(option, value):
    """The canonical name of a host name/address source, or CanaryError naming the option."""
    text = str(value).strip() if value is not None else ''
    if text.startswith('tag:') and len(text) > 4:
        return text
    text = SOURCE_ALIASES.get(text, text)
    if text in SOURCES:
        return text
    raise CanaryError('Invalid value for option %s: %r; expected one of %s' % (option, value, VALID_SOURCES))


def validate_options(target_groups, hostnames, ansible_host_source):
    """Check the options before any call. Returns (refs, hostnames, ansible_host_source) normalized."""
    refs = [str(ref).strip() for ref in (target_groups or [])]
    if not refs or any(not ref for ref in refs):
        raise CanaryError('Invalid value for option target_groups: %r; expected a list of one or more target group names or ARNs'
                          % (target_groups,))
    names = [normalize_source('hostnames', value) for value in (hostnames or [])]
    source = normalize_source('ansible_host_source', ansible_host_source)
    return refs, names, source


# --------------------------------------------------------------------------
# Remote calls
# --------------------------------------------------------------------------

def describe_instances(client, instance_ids):
    """Instances by id; ids that no longer exist are simply absent (a filter, not InstanceIds)."""
    found = []
    ids = sorted(set(instance_ids))
    for start in range(0, len(ids), INSTANCE_BATCH):
        batch = ids[start:start + INSTANCE_BATCH]
        try:
            paginator = client.get_paginator('describe_instances')
            for page in paginator.paginate(Filters=[{'Name': 'instance-id', 'Values': batch}]):
                for reservation in page.get('Reservations', []):
                    found.extend(reservation.get('Instances', []))
        except AWS_ERRORS as exc:
            raise describe_aws_error('describe instances %s' % ', '.join(batch), exc) from exc
    return found


def instance_facts(instance):
    """The JSON-able subset of an EC2 instance that becomes host variables."""
    launch_time = instance.get('LaunchTime')
    return {
        'instance_id': instance['InstanceId'],
        'availability_zone': (instance.get('Placement') or {}).get('AvailabilityZone'),
        'private_ip_address': instance.get('PrivateIpAddress') or None,
        'private_dns_name': instance.get('PrivateDnsName') or None,
        'public_ip_address': instance.get('PublicIpAddress') or None,
        'public_dns_name': instance.get('PublicDnsName') or None,
        'instance_state': (instance.get('State') or {}).get('Name'),
        'instance_type': instance.get('InstanceType'),
        'platform': instance.get('Platform'),
        'vpc_id': instance.get('VpcId'),
        'subnet_id': instance.get('SubnetId'),
        'image_id': instance.get('ImageId'),
        'launch_time': launch_time.isoformat() if hasattr(launch_time, 'isoformat') else launch_time,
        'ec2_tags': {tag['Key']: tag.get('Value', '') for tag in instance.get('Tags') or []},
    }


def check_target_types(groups):
    """Only instance target groups describe a fleet of hosts."""
    for group in groups:
        kind = group.get('TargetType', 'instance')
        if kind != 'instance':
            raise CanaryError(
                "Failed to list the targets of target group %s: its target type is %r; only target groups of type 'instance' are "
                "supported (list the hosts of an 'ip' target group in a static inventory, with rollout_target_id)"
                % (group['TargetGroupName'], kind), target_group=group['TargetGroupName'], target_type=kind)


def collect(elbv2, ec2, refs, autoscaling=None):
    """Read the groups, their targets and the targets' instances: plain data for caching.

    Returns ``{'target_groups': [...], 'targets': [...], 'instances': {id: facts}}``
    and, when an ``autoscaling`` client is given, ``'autoscaling': {id: {'group',
    'lifecycle_state'}}`` for the instances that are in an Auto Scaling group
    (DescribeAutoScalingInstances, 50 instances a call).
    """
    groups = []
    seen = set()
    for raw in describe_target_groups(elbv2, refs):
        if raw['TargetGroupArn'] not in seen:  # the same group given by name and by ARN
            seen.add(raw['TargetGroupArn'])
            groups.append(raw)
    check_target_types(groups)
    targets = []
    for group in groups:
        for desc in describe_target_health(elbv2, group['TargetGroupArn'], group['TargetGroupName']):
            target, health = desc.get('Target', {}), desc.get('TargetHealth', {})
            targets.append({
                'target_group_arn': group['TargetGroupArn'],
                'id': target['Id'],
                'port': int(target.get('Port') or group.get('Port') or 0) or None,
                'state': health.get('State', 'unavailable'),
                'reason': health.get('Reason'),
                'description': health.get('Description'),
            })
    instances = describe_instances(ec2, [t['id'] for t in targets]) if targets else []
    data = {
        'target_groups': [{'arn': g['TargetGroupArn'], 'name': g['TargetGroupName'], 'port': g.get('Port'),
                           'protocol': g.get('Protocol'), 'vpc_id': g.get('VpcId')} for g in groups],
        'targets': targets,
        'instances': {i['InstanceId']: instance_facts(i) for i in instances},
    }
    if autoscaling is not None:
        found = describe_auto_scaling_instances(autoscaling, sorted(data['instances'])) if data['instances'] else {}
        data['autoscaling'] = {i: {'group': e.get('AutoScalingGroupName'), 'lifecycle_state': e.get('LifecycleState')}
                               for i, e in found.items()}
    return data


# --------------------------------------------------------------------------
# Mapping (pure)
# --------------------------------------------------------------------------

def source_value(facts, source):
    """The value of one source for an instance, or None when it has none."""
    if source.startswith('tag:'):
        value = facts.get('ec2_tags', {}).get(source[4:])
    else:
        value = facts.get(SOURCES[source])
    return value or None


def worst_health(states):
    """The least healthy of several target states (unknown states count as worst)."""
    def rank(state):
        return HEALTH_ORDER.index(state) if state in HEALTH_ORDER else len(HEALTH_ORDER)
    return max(states, key=rank) if states else None


def group_name(prefix, target_group_name):
    """A valid Ansible group name for a target group: ``web-https`` -> ``web_https``."""
    name = _UNSAFE_GROUP_CHARS.sub('_', '%s%s' % (prefix or '', target_group_name))
    return '_' + name if name[:1].isdigit() else name


def build_hosts(data, hostnames=(), ansible_host_source='private-ip-address', group_prefix=''):
    """Map collected data to hosts.

    Returns ``(hosts, groups, warnings)``: ``hosts`` is a list of
    ``{'name', 'vars'}`` in the order of the groups and their targets,
    ``groups`` maps each target group's Ansible group to its host names, and
    ``warnings`` are messages for targets that could not be mapped fully.
    The host name is the first of ``hostnames`` the instance has a value for,
    else its instance id. Raises CanaryError when two instances get one name.
    """
    by_arn = {g['arn']: g for g in data['target_groups']}
    order = []
    registrations = {}
    warnings = []
    for target in data['targets']:
        if target['id'] not in registrations:
            order.append(target['id'])
            registrations[target['id']] = []
        registrations[target['id']].append(target)

    hosts = []
    groups = {group_name(group_prefix, g['name']): [] for g in data['target_groups']}
    names = {}
    for instance_id in order:
        facts = data['instances'].get(instance_id)
        if facts is None:
            warnings.append('Target %s of target group(s) %s is not an existing instance; skipped' % (
                instance_id, ', '.join(by_arn[t['target_group_arn']]['name'] for t in registrations[instance_id])))
            continue
        name = next((v for v in (source_value(facts, s) for s in hostnames) if v), instance_id)
        if name in names:
            raise CanaryError('Failed to name the hosts: instances %s and %s both get the host name %r from hostnames %s; '
                              'add instance-id to hostnames, or choose a unique source' % (names[name], instance_id, name, list(hostnames)),
                              hostname=name)
        names[name] = instance_id

        regs = registrations[instance_id]
        entries = [{
            'name': by_arn[t['target_group_arn']]['name'],
            'arn': t['target_group_arn'],
            'port': t['port'],
            'state': t['state'],
            'reason': t['reason'],
            'description': t['description'],
        } for t in regs]
        hostvars = dict(facts)
        hostvars.update({
            'target_groups': entries,
            'target_group_names': _unique(e['name'] for e in entries),
            'target_group_arns': _unique(e['arn'] for e in entries),
            'target_port': entries[0]['port'],
            'target_health': worst_health([e['state'] for e in entries]),
        })
        if 'autoscaling' in data:
            # Empty, not null, for an instance in no group: keyed_groups' default_value then names it.
            membership = data['autoscaling'].get(instance_id) or {}
            hostvars['autoscaling_group'] = membership.get('group') or ''
            hostvars['autoscaling_lifecycle_state'] = membership.get('lifecycle_state') or ''
        address = source_value(facts, ansible_host_source)
        if address:
            hostvars['ansible_host'] = address
        else:
            warnings.append('Host %s (%s) has no %s; ansible_host is not set' % (name, instance_id, ansible_host_source))
        hosts.append({'name': name, 'vars': hostvars})
        for entry_name in hostvars['target_group_names']:
            members = groups[group_name(group_prefix, entry_name)]
            if name not in members:
                members.append(name)
    return hosts, groups, warnings


def _unique(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
