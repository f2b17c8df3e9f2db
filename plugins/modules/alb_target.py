#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alb_target
short_description: Register or deregister one target in ELBv2 target groups and wait until it has settled
version_added: 0.1.0
description:
  - Registers (O(state=present)) or deregisters (O(state=absent)) one target, an EC2 instance ID or an IP address,
    in one or more ELBv2 target groups given by ARN or name.
  - With O(wait=true) it waits until the target is V(healthy) in every group, or until it has fully drained
    (no longer V(draining)) from every group.
  - A capacity guard (O(min_healthy)) refuses to deregister, before any call that changes anything, when a group
    would be left with too few healthy targets.
  - A target that is V(draining) is registered again by O(state=present), so a fast revert never silently does nothing.
  - Runs on the controller and talks to the ELBv2 API with boto3.
author:
  - immune.canary maintainers (@immune)
options:
  target_groups:
    description:
      - Target groups to act on, by ARN or by name; ARNs and names may be mixed.
    type: list
    elements: str
    required: true
  target_id:
    description:
      - The target, an EC2 instance ID (V(i-0123456789abcdef0)) or, for groups of target type C(ip), an IP address.
    type: str
    required: true
  target_port:
    description:
      - Port the target receives traffic on.
      - When not set, each group's own port is used.
    type: int
  state:
    description:
      - V(present) registers the target; with O(wait=true) the module returns once it is V(healthy) in every group.
      - V(absent) deregisters the target; with O(wait=true) the module returns once it has drained from every group.
      - V(query) only reads the target's state in every group and changes nothing (C(changed) is always false).
        Added in version 0.2.0.
    type: str
    choices: [present, absent, query]
    default: present
  wait:
    description:
      - Wait until the target has settled in every group.
      - Ignored in check mode.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, in total, for all groups.
      - When not set, it is sized from the groups themselves plus 30 seconds. For V(absent), the longest
        C(deregistration_delay.timeout_seconds); for V(present), the longest health check interval times
        the healthy threshold plus one health check timeout.
    type: float
  poll_interval:
    description:
      - Seconds between the first polls while waiting. The interval grows by a quarter each poll, up to 5 seconds
        (or this value, if larger), so that a wait ends soon after AWS is done without the ELBv2 API being throttled.
    type: float
    default: 1.0
  min_healthy:
    description:
      - Capacity guard for O(state=absent). The module fails, before deregistering anything, if any group in which
        the target is registered would keep fewer healthy targets, not counting this one, than this.
      - A whole number is a count of healthy targets.
      - A percentage V(NN%) is taken of the group's other registered targets (any health), rounded up,
        and is always at least one healthy target when above V(0%).
      - V(0) (or V(0%)) disables the guard.
      - Groups that no load balancer uses are not guarded; they serve no traffic.
      - Hosts that deregister at once from the same controller take turns per target group (an exclusive lock on a
        file in the temporary directory, held from reading the group's health to deregistering, under a second),
        so the guard counts every target deregistered before it under any strategy or number of forks. A turn
        not given within 60 seconds fails the task, naming the lock file.
    type: raw
    default: 1
  min_healthy_per_az:
    description:
      - Capacity guard per Availability Zone for O(state=absent), in addition to O(min_healthy). The module fails,
        before deregistering anything, if any group in which the target is registered would keep fewer healthy
        targets than this, not counting this one, in the target's own zone.
      - The zones of the target and of the groups' healthy targets are read with C(ec2:DescribeInstances), so the
        groups' targets must be EC2 instances.
      - V(0) disables it.
    type: int
    default: 0
    version_added: 0.2.0
extends_documentation_fragment:
  - immune.canary.aws
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
  - immune.canary.attributes.DIFF_MODE_FULL
notes:
  - A target group that no load balancer uses never reports healthy targets; with O(state=present) and O(wait=true)
    the module fails at once, before registering, instead of waiting out the timeout.
  - Deregistering a target that is not registered is not an error; the result is C(changed=false).
  - A target that is unhealthy for a lasting reason (for example C(Target.FailedHealthChecks)) is waited for until
    the timeout, whose message shows the reason.
attributes:
  action_group:
    membership:
      - immune.canary.aws
seealso:
  - name: Target health states
    description: What C(initial), C(healthy), C(unhealthy), C(unused) and C(draining) mean.
    link: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html
"""

EXAMPLES = r"""
- name: Take this server out of both target groups, never leaving fewer than two healthy servers
  immune.canary.alb_target:
    target_groups:
      - web-https
      - arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-http/0123456789abcdef
    target_id: "{{ ec2_instance_id }}"
    state: absent
    min_healthy: 2
    region: eu-west-1
  delegate_to: localhost

- name: Put it back and wait until it is healthy in every group
  immune.canary.alb_target:
    target_groups: [web-https, web-http]
    target_id: "{{ ec2_instance_id }}"
    state: present
    wait_timeout: 300
  delegate_to: localhost

- name: Keep at least half of the other servers healthy, register an IP target on port 8443
  immune.canary.alb_target:
    target_groups: [api-ip]
    target_id: 10.0.1.23
    target_port: 8443
    state: absent
    min_healthy: 50%
  delegate_to: localhost

- name: Read the server's state in its target groups (changes nothing)
  immune.canary.alb_target:
    target_groups: [web-https]
    target_id: "{{ ec2_instance_id }}"
    state: query
  delegate_to: localhost
  register: targets
"""

RETURN = r"""
changed:
  description: Whether a target was (or, in check mode, would be) registered or deregistered in any group.
  returned: always
  type: bool
target_id:
  description: The target acted on.
  returned: always
  type: str
  sample: i-0123456789abcdef0
state:
  description: The requested state.
  returned: always
  type: str
  sample: present
elapsed:
  description: Seconds the module spent, waiting included.
  returned: always
  type: float
  sample: 12.408
target_groups:
  description: One entry per target group, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    arn:
      description: ARN of the target group.
      type: str
      returned: always
    name:
      description: Name of the target group.
      type: str
      returned: always
    port:
      description: Port of the target in this group.
      type: int
      returned: always
    deregistration_delay:
      description: The group's C(deregistration_delay.timeout_seconds).
      type: int
      returned: always
    slow_start:
      description: The group's C(slow_start.duration_seconds).
      type: int
      returned: always
    target_state:
      description:
        - The target's last observed state, as ELBv2 reports it (V(initial), V(healthy), V(unhealthy), V(unused),
          V(draining), V(unavailable)).
        - In check mode, the state before any change.
      type: str
      returned: always
      sample: healthy
    reason:
      description: The reason code of the state, for example C(Target.NotRegistered); null when healthy.
      type: str
      returned: always
    description:
      description: The description of the state; null when healthy.
      type: str
      returned: always
    healthy_count:
      description: Healthy registered targets in the group, this one included.
      type: int
      returned: always
    target_count:
      description: Registered targets in the group that are not draining, this one included.
      type: int
      returned: always
    targets:
      description:
        - The ids of the group's registered targets (any health but draining), this one included, sorted.
        - A later look that finds ids not there before shows instances that joined the group meanwhile.
      type: list
      elements: str
      returned: always
      version_added: 0.2.0
diff:
  description: Registration of the target per group before and after (predicted in check mode).
  returned: always
  type: dict
  sample:
    before: {web-https: {registered: true, target_state: healthy}}
    after: {web-https: {registered: false, target_state: unused}}
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._aws import (  # noqa: E402
    AWS_MUTUALLY_EXCLUSIVE,
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    aws_argument_spec,
    aws_client,
    validate_endpoint_url,
)
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._elbv2 import (  # noqa: E402
    DEFAULT_POLL_INTERVAL,
    MAX_POLL_INTERVAL,
    TargetRegistration,
    parse_min_healthy,
)
from ansible_collections.immune.canary.plugins.module_utils._target_group_inventory import describe_instances  # noqa: E402

ARGUMENT_SPEC = aws_argument_spec(
    target_groups=dict(type='list', elements='str', required=True),
    target_id=dict(type='str', required=True),
    target_port=dict(type='int'),
    state=dict(type='str', choices=['present', 'absent', 'query'], default='present'),
    wait=dict(type='bool', default=True),
    wait_timeout=dict(type='float'),
    poll_interval=dict(type='float', default=DEFAULT_POLL_INTERVAL),
    # raw: a count or "NN%"; parse_min_healthy validates both forms.
    min_healthy=dict(type='raw', default=1),
    min_healthy_per_az=dict(type='int', default=0),
)


def validate(params):
    """Reject bad input, naming the option, before anything is called."""
    groups = [g.strip() for g in params['target_groups'] if g and g.strip()]
    if not groups:
        raise CanaryError('Invalid value for option target_groups: %r; give at least one target group ARN or name' % params['target_groups'])
    if not params['target_id'].strip():
        raise CanaryError('Invalid value for option target_id: %r; give an EC2 instance ID or an IP address' % params['target_id'])
    if params['target_port'] is not None and not 1 <= params['target_port'] <= 65535:
        raise CanaryError('Invalid value for option target_port: %r; expected a port between 1 and 65535' % params['target_port'])
    if params['wait_timeout'] is not None and params['wait_timeout'] <= 0:
        raise CanaryError('Invalid value for option wait_timeout: %r; expected a number of seconds greater than 0' % params['wait_timeout'])
    validate_endpoint_url(params.get('endpoint_url'), 'https://elasticloadbalancing.eu-west-1.amazonaws.com')
    if params['poll_interval'] <= 0:
        raise CanaryError('Invalid value for option poll_interval: %r; expected a number of seconds greater than 0' % params['poll_interval'])
    if params['min_healthy_per_az'] < 0:
        raise CanaryError('Invalid value for option min_healthy_per_az: %r; expected a count of healthy targets, 0 or more (0 turns '
                          'the guard off)' % params['min_healthy_per_az'])
    return groups, parse_min_healthy(params['min_healthy'])


def zone_lookup(params):
    """Target ids -> their Availability Zone, read from EC2 when the guard per zone asks."""
    def lookup(instance_ids):
        ec2 = aws_client(params, 'ec2')
        return {i['InstanceId']: (i.get('Placement') or {}).get('AvailabilityZone') for i in describe_instances(ec2, instance_ids)}
    return lookup


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=AWS_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'), exception=str(BOTO3_IMPORT_ERROR))
    stopwatch = Stopwatch()
    params = module.params
    base = dict(changed=False, target_id=params['target_id'], state=params['state'], elapsed=0.0, target_groups=[])
    if not params['validate_certs']:
        module.warn('validate_certs is false: the TLS certificate of the AWS endpoint is not checked')
    try:
        groups, min_healthy = validate(params)
        client = aws_client(params, 'elbv2')
        result = TargetRegistration(
            client, params['target_id'].strip(), groups, state=params['state'], target_port=params['target_port'],
            wait=params['wait'], wait_timeout=params['wait_timeout'], poll_interval=params['poll_interval'],
            max_interval=MAX_POLL_INTERVAL, min_healthy=min_healthy, check_mode=module.check_mode, stopwatch=stopwatch,
            min_healthy_per_az=params['min_healthy_per_az'], zone_lookup=zone_lookup(params),
        ).run()
    except CanaryError as error:
        base['elapsed'] = stopwatch.elapsed()
        fail_from_error(module, error, **base)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
