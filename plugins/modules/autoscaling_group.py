#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: autoscaling_group
short_description: Read the Auto Scaling groups of a fleet, suspend and resume their processes, move an instance to standby
version_added: 0.2.0
description:
  - Reads, for a fleet's instances, the EC2 Auto Scaling group each belongs to (none is fine) and, for each group,
    its sizes, its InService instances, its suspended processes and whether an instance refresh is running
    (O(state=query)). Each group comes with the problems that should stop a rollout from starting on it.
  - Suspends the processes that would fight a rollout (O(state=suspended)) and reports, per group, exactly which
    processes it suspended and which were suspended before, by an operator or by AWS, so that the rollout can
    resume (O(state=resumed)) exactly the ones it suspended and never one it did not.
  - Moves one instance to C(Standby) (O(state=standby)), lowering the desired capacity so that the group does not
    launch a replacement, and back (O(state=in_service)). Standby is refused, before any change, when it would leave
    the group with fewer InService instances than its minimum size, or none.
  - Runs on the controller and talks to the EC2 Auto Scaling API with boto3, with the same client, retries and error
    messages as M(immune.canary.alb_target).
author:
  - immune.canary maintainers (@immune)
options:
  state:
    description:
      - V(query) reads the instances and their groups and changes nothing (C(changed) is always false).
      - V(suspended) suspends O(processes) in O(groups) and in the groups of O(instance_ids).
      - V(resumed) resumes exactly the processes given in O(processes) and no other.
      - V(standby) puts the one instance of O(instance_ids) in C(Standby) (EnterStandby with
        C(ShouldDecrementDesiredCapacity=true)).
      - V(in_service) returns the one instance of O(instance_ids) from C(Standby) to service (ExitStandby).
    type: str
    choices: [query, suspended, resumed, standby, in_service]
    default: query
  instance_ids:
    description:
      - EC2 instance IDs, usually the hosts' C(instance_id). An instance in no Auto Scaling group is reported with
        C(group=null) and is not an error for V(query) and V(suspended).
      - V(standby) and V(in_service) take exactly one.
      - With V(resumed), only with O(processes=recorded).
    type: list
    elements: str
    default: []
  groups:
    description:
      - Auto Scaling group names, in addition to the groups of O(instance_ids). A name that does not exist is refused,
        before any change, with an error naming this option.
      - With V(resumed) and a list in O(processes), the groups to resume them in.
    type: list
    elements: str
    default: []
  processes:
    description:
      - With V(suspended), a list of processes to suspend. When not set, the processes a rollout suspends,
        V(AZRebalance), V(AlarmNotification), V(HealthCheck), V(InstanceRefresh), V(ReplaceUnhealthy) and
        V(ScheduledActions) (see the notes for why these and not the others).
      - With V(resumed), required. Either a dict of group name to a list of processes, as V(suspended) returns it in
        RV(suspended_now), or a list that applies to every group in O(groups), or V(recorded), meaning for each group of
        O(groups) and of O(instance_ids), the processes its record names (see O(record)). Only the processes given are
        resumed, never all of them. The processes resumed leave the groups' records; a record left empty is deleted.
      - Process names are AWS's, V(Launch), V(Terminate), V(AddToLoadBalancer), V(AlarmNotification), V(AZRebalance),
        V(HealthCheck), V(InstanceRefresh), V(ReplaceUnhealthy) and V(ScheduledActions); any other name is refused
        before any call, with an error naming this option and the valid names.
    type: raw
  record:
    description:
      - With V(suspended), record what this run suspends in two tags of each group where it suspends a process,
        C(immune-canary:suspended-processes) (the processes, separated by spaces, with any recorded before) and
        C(immune-canary:suspended-by) (this value, usually the run id). The tags are written before the processes are
        suspended, so a run that dies at any point leaves them. A later run reads them back with O(state=resumed) and
        O(processes=recorded), which resumes exactly those processes and then deletes the tags.
      - "1 to 256 letters, digits, spaces or C(_ . : / = + - @) (AWS's rule for tag values)."
      - The tags do not propagate to instances.
    type: str
    version_added: 0.2.0
extends_documentation_fragment:
  - immune.canary.aws
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
  - immune.canary.attributes.DIFF_MODE_FULL
notes:
  - "Why a rollout suspends these processes. V(AZRebalance) terminates and launches instances to even out the zones,
    in the middle of a drain. V(ReplaceUnhealthy) terminates an instance whose health check fails, and a server being
    deployed fails its load balancer health check, so the run would lose the host it is deploying. V(HealthCheck) is
    suspended with it: with V(ReplaceUnhealthy) alone, an instance marked unhealthy during the run would be replaced
    as soon as the process is resumed. V(AlarmNotification) (scaling policies) and V(ScheduledActions) scale out,
    launching instances on the old version into a fleet the run is updating, or scale in, terminating hosts the run
    is deploying or reverting. V(InstanceRefresh) replaces instances under the run. This is the list of AWS CodeDeploy's
    sample deployment scripts and of CloudFormation's rolling updates (V(AZRebalance), V(AlarmNotification),
    V(ScheduledActions), V(ReplaceUnhealthy), with V(HealthCheck)), plus V(InstanceRefresh), which is newer."
  - "Why not the others. Suspending V(Launch) or V(Terminate) changes how every other process behaves (AWS warns
    about it): with V(Terminate) suspended V(AZRebalance) may grow the group above its maximum, with V(Launch)
    suspended nothing replaces an instance that really died, and neither is needed once the processes above are
    suspended. V(AddToLoadBalancer) is never suspended: an instance launched while it is suspended stays out of the
    target groups even after it is resumed."
  - "Suspended processes are a property of the group, not of the run: a run that dies leaves them suspended. Use
    O(record) so that the group itself says what to resume, or keep RV(suspended_now) where a later run can read it,
    and resume exactly that."
  - "V(standby) and V(in_service) return once AWS has accepted the call; the instance then goes through
    C(EnteringStandby) (leaving the target groups, with their deregistration delay) or C(Pending) (joining them again).
    Wait for the target groups with M(immune.canary.alb_target)."
  - "IAM: C(autoscaling:DescribeAutoScalingInstances), C(autoscaling:DescribeAutoScalingGroups) and
    C(autoscaling:DescribeInstanceRefreshes) for V(query); C(autoscaling:SuspendProcesses) and
    C(autoscaling:ResumeProcesses) for V(suspended) and V(resumed), with C(autoscaling:CreateOrUpdateTags) and
    C(autoscaling:DeleteTags) when a record is written or deleted; C(autoscaling:EnterStandby) and
    C(autoscaling:ExitStandby) for V(standby) and V(in_service)."
attributes:
  action_group:
    membership:
      - immune.canary.aws
seealso:
  - module: immune.canary.alb_target
  - name: Suspend and resume Amazon EC2 Auto Scaling processes
    description: What each process does, and how suspending one affects the others.
    link: https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-suspend-resume-processes.html
  - name: Temporarily remove instances from your Auto Scaling group
    description: The Standby lifecycle state.
    link: https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-enter-exit-standby.html
"""

EXAMPLES = r"""
- name: Find the hosts' Auto Scaling groups and what should stop a rollout
  immune.canary.autoscaling_group:
    instance_ids: "{{ ansible_play_hosts | map('extract', hostvars, 'instance_id') | list }}"
    state: query
    region: eu-west-1
  delegate_to: localhost
  run_once: true
  register: fleet

- name: Refuse to start while a group is refreshing or short of capacity
  ansible.builtin.assert:
    that: fleet.problems | length == 0
    fail_msg: "{{ fleet.problems | join('; ') }}"
  run_once: true

- name: Suspend the processes that would fight the rollout
  immune.canary.autoscaling_group:
    instance_ids: "{{ ansible_play_hosts | map('extract', hostvars, 'instance_id') | list }}"
    state: suspended
  delegate_to: localhost
  run_once: true
  register: suspension

- name: Resume exactly what the rollout suspended, nothing an operator had suspended
  immune.canary.autoscaling_group:
    state: resumed
    processes: "{{ suspension.suspended_now }}"
  delegate_to: localhost
  run_once: true
  when: suspension.suspended_now | length > 0

- name: Suspend them with a record in the groups' tags, which outlives a run that dies
  immune.canary.autoscaling_group:
    instance_ids: "{{ ansible_play_hosts | map('extract', hostvars, 'instance_id') | list }}"
    state: suspended
    record: "{{ run_id }}"
  delegate_to: localhost
  run_once: true

- name: Resume what any run recorded in these groups (after a run that died, too)
  immune.canary.autoscaling_group:
    instance_ids: "{{ ansible_play_hosts | map('extract', hostvars, 'instance_id') | list }}"
    state: resumed
    processes: recorded
  delegate_to: localhost
  run_once: true

- name: Drain this server by putting it in standby (refused if its group would drop below its minimum)
  immune.canary.autoscaling_group:
    instance_ids: ["{{ instance_id }}"]
    state: standby
  delegate_to: localhost

- name: Put it back in service
  immune.canary.autoscaling_group:
    instance_ids: ["{{ instance_id }}"]
    state: in_service
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description:
    - Whether a process was (or, in check mode, would be) suspended or resumed, or an instance moved to or from
      standby. Always false for O(state=query).
  returned: always
  type: bool
state:
  description: The requested state.
  returned: always
  type: str
  sample: suspended
elapsed:
  description: Seconds the module spent.
  returned: always
  type: float
  sample: 0.412
instances:
  description:
    - One entry per instance of O(instance_ids), in the order given.
    - After O(state=standby) or O(state=in_service), the state AWS reports just after the call.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
      returned: always
    group:
      description: Name of its Auto Scaling group; null when it is in none.
      type: str
      returned: always
    lifecycle_state:
      description: Its lifecycle state in the group (C(InService), C(Standby), C(Pending), C(Terminating) ...); null when in no group.
      type: str
      returned: always
    health_status:
      description: C(Healthy) or C(Unhealthy) as Auto Scaling sees it; null when in no group.
      type: str
      returned: always
    availability_zone:
      description: Its Availability Zone; null when in no group.
      type: str
      returned: always
groups:
  description: One entry per group, those of O(groups) first, then those of the instances.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the group.
      type: str
      returned: always
    arn:
      description: ARN of the group.
      type: str
      returned: always
    min_size:
      description: Its minimum size.
      type: int
      returned: always
    max_size:
      description: Its maximum size.
      type: int
      returned: always
    desired_capacity:
      description: Its desired capacity.
      type: int
      returned: always
    in_service:
      description: How many of its instances are C(InService).
      type: int
      returned: always
    instance_count:
      description: How many instances it has, in any lifecycle state.
      type: int
      returned: always
    availability_zones:
      description: Its Availability Zones.
      type: list
      elements: str
      returned: always
    target_group_arns:
      description: The target groups attached to it.
      type: list
      elements: str
      returned: always
    suspended_processes:
      description: Its suspended processes, sorted; after a change, as they are (or would be, in check mode) after it.
      type: list
      elements: str
      returned: always
    instance_refresh:
      description: Its newest instance refresh (C(id), C(status), C(status_reason), C(percentage_complete), C(start_time)), or null.
      type: dict
      returned: when O(state=query)
    refresh_in_progress:
      description: Whether an instance refresh may still replace instances (C(Pending), C(InProgress), C(Baking), C(Cancelling), C(RollbackInProgress)).
      type: bool
      returned: always
    problems:
      description: Why a rollout must not start on this group now, each message naming the group.
      type: list
      elements: str
      returned: always
    suspended_now:
      description: The processes this run suspended (or would, in check mode).
      type: list
      elements: str
      returned: when O(state=suspended)
    suspended_before:
      description: Processes of O(processes) that were already suspended, by an operator or by AWS; never resume these.
      type: list
      elements: str
      returned: when O(state=suspended)
    resumed_now:
      description: The processes this run resumed (or would, in check mode).
      type: list
      elements: str
      returned: when O(state=resumed)
    not_suspended:
      description: Processes of O(processes) that were not suspended, so nothing was done for them.
      type: list
      elements: str
      returned: when O(state=resumed)
problems:
  description: The problems of every group, flattened.
  returned: when O(state=query)
  type: list
  elements: str
  sample: ["Auto Scaling group web-asg has an instance refresh InProgress (0a1b2c, 40% complete); it replaces instances while it runs"]
suspended_now:
  description:
    - Group name to the processes this run suspended, only groups where it suspended any. Give it to O(processes)
      with O(state=resumed) to undo exactly this.
    - Also returned when the module failed after suspending processes in some groups.
  returned: when O(state=suspended)
  type: dict
  sample: {web-asg: [AZRebalance, ReplaceUnhealthy]}
resumed_now:
  description: Group name to the processes this run resumed, only groups where it resumed any.
  returned: when O(state=resumed)
  type: dict
  sample: {web-asg: [AZRebalance, ReplaceUnhealthy]}
diff:
  description: The suspended processes per group before and after (predicted in check mode).
  returned: when O(state=suspended) or O(state=resumed)
  type: dict
  sample:
    before: {suspended_processes: {web-asg: [Launch]}}
    after: {suspended_processes: {web-asg: [AZRebalance, Launch]}}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._autoscaling import STATES, AutoScaling, validate  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._aws import (  # noqa: E402
    AWS_MUTUALLY_EXCLUSIVE,
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    aws_argument_spec,
    aws_client,
    validate_endpoint_url,
)
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402

ARGUMENT_SPEC = aws_argument_spec(
    state=dict(type='str', choices=list(STATES), default='query'),
    instance_ids=dict(type='list', elements='str', default=[]),
    groups=dict(type='list', elements='str', default=[]),
    # raw: a list for suspended, a dict group -> list (or a list) for resumed; validate() checks both.
    processes=dict(type='raw'),
    record=dict(type='str'),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=AWS_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'), exception=str(BOTO3_IMPORT_ERROR))
    stopwatch = Stopwatch()
    params = module.params
    base = dict(changed=False, state=params['state'], elapsed=0.0, instances=[], groups=[])
    if not params['validate_certs']:
        module.warn('validate_certs is false: the TLS certificate of the AWS endpoint is not checked')
    try:
        instance_ids, groups, processes = validate(
            params['state'], params['instance_ids'], params['groups'], params['processes'], params['record'])
        validate_endpoint_url(params.get('endpoint_url'))
        client = aws_client(params, 'autoscaling')
        result = AutoScaling(client, params['state'], instance_ids, groups, processes, check_mode=module.check_mode,
                             stopwatch=stopwatch, record=params['record']).run()
    except CanaryError as error:
        base['elapsed'] = stopwatch.elapsed()
        fail_from_error(module, error, **base)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
