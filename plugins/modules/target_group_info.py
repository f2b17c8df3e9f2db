#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: target_group_info
short_description: List the EC2 instances registered in ELBv2 target groups, as hosts
version_added: 0.2.0
description:
  - Reads the targets of the given target groups (instance target groups), their EC2 instances and, unless
    O(autoscaling=false), their Auto Scaling group, and returns one host per instance with the variables the
    P(immune.canary.target_group#inventory) inventory plugin gives it (C(instance_id), C(availability_zone),
    C(private_ip_address), C(ansible_host), C(target_groups), C(target_health), C(autoscaling_group), ...).
  - Made to find, during a run, instances that joined the target groups after the inventory was read (a scale-out),
    so that a later play can take them (with C(ansible.builtin.add_host)).
  - Changes nothing; C(changed) is always false.
  - Runs on the controller and talks to AWS with boto3, with the same client, retries and error messages as
    M(immune.canary.alb_target).
author:
  - immune.canary maintainers (@immune)
options:
  target_groups:
    description: Target groups, by name or ARN.
    type: list
    elements: str
    required: true
  hostnames:
    description:
      - Where each host's name comes from, the first the instance has a value for, else its instance id. As the
        inventory plugin's option of that name.
      - V(instance-id), V(private-ip-address), V(private-dns-name), V(ip-address), V(dns-name), or V(tag:<key>).
    type: list
    elements: str
    default: [instance-id]
  ansible_host_source:
    description:
      - Where C(ansible_host), the address the host is reached at, comes from. The same sources as O(hostnames).
    type: str
    default: private-ip-address
  autoscaling:
    description: Add each instance's Auto Scaling group and lifecycle state (C(autoscaling:DescribeAutoScalingInstances)).
    type: bool
    default: true
extends_documentation_fragment:
  - immune.canary.aws
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_READ_ONLY
notes:
  - "IAM: C(elasticloadbalancing:DescribeTargetGroups), C(elasticloadbalancing:DescribeTargetHealth),
    C(ec2:DescribeInstances) and, with O(autoscaling=true), C(autoscaling:DescribeAutoScalingInstances)."
attributes:
  action_group:
    membership:
      - immune.canary.aws
seealso:
  - plugin: immune.canary.target_group
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Find the instances behind the target groups now
  immune.canary.target_group_info:
    target_groups: [app-https]
    region: eu-west-1
  delegate_to: localhost
  run_once: true
  register: found

- name: Take the instances the inventory did not have
  ansible.builtin.add_host:
    name: "{{ item.name }}"
    groups: new_instances
    ansible_host: "{{ item.vars.ansible_host }}"
    instance_id: "{{ item.vars.instance_id }}"
  loop: "{{ found.hosts | rejectattr('vars.instance_id', 'in', groups['all'] | map('extract', hostvars, 'instance_id') | list) }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
elapsed:
  description: Seconds the module spent.
  returned: always
  type: float
hosts:
  description: One host per instance registered in any of the groups (any target state), in the order of the groups.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The host name (see O(hostnames)).
      type: str
      returned: always
    vars:
      description:
        - The host's variables, as the P(immune.canary.target_group#inventory) inventory plugin sets them; C(ansible_host) only
          when the instance has a value for O(ansible_host_source).
      type: dict
      returned: always
      sample:
        instance_id: i-0123456789abcdef0
        availability_zone: eu-west-1a
        private_ip_address: 10.0.1.17
        ansible_host: 10.0.1.17
        target_health: healthy
        target_group_names: [app-https]
        autoscaling_group: app-asg
        autoscaling_lifecycle_state: InService
unmapped:
  description: Targets that could not be mapped fully (not an existing instance, no address).
  returned: always
  type: list
  elements: str
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
from ansible_collections.immune.canary.plugins.module_utils._target_group_inventory import (  # noqa: E402
    build_hosts,
    collect,
    validate_options,
)

ARGUMENT_SPEC = aws_argument_spec(
    target_groups=dict(type='list', elements='str', required=True),
    hostnames=dict(type='list', elements='str', default=['instance-id']),
    ansible_host_source=dict(type='str', default='private-ip-address'),
    autoscaling=dict(type='bool', default=True),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=AWS_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'), exception=str(BOTO3_IMPORT_ERROR))
    stopwatch = Stopwatch()
    params = module.params
    result = dict(changed=False, elapsed=0.0, hosts=[], unmapped=[])
    if not params['validate_certs']:
        module.warn('validate_certs is false: the TLS certificate of the AWS endpoint is not checked')
    try:
        refs, hostnames, source = validate_options(params['target_groups'], params['hostnames'], params['ansible_host_source'])
        validate_endpoint_url(params.get('endpoint_url'))
        data = collect(aws_client(params, 'elbv2'), aws_client(params, 'ec2'), refs,
                       aws_client(params, 'autoscaling') if params['autoscaling'] else None)
        hosts, _groups, warnings = build_hosts(data, hostnames, source)
        result.update(hosts=hosts, unmapped=warnings, elapsed=stopwatch.elapsed())
    except CanaryError as error:
        result['elapsed'] = stopwatch.elapsed()
        fail_from_error(module, error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
