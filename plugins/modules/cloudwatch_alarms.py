#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cloudwatch_alarms
short_description: Read the state of CloudWatch alarms, and fail while any is in ALARM
version_added: 0.2.0
description:
  - Reads the state (V(OK), V(ALARM) or V(INSUFFICIENT_DATA)), the reason and the time of the last change of each
    named CloudWatch alarm, metric or composite, in one C(DescribeAlarms) call per 100 names.
  - With O(fail_on_alarm=true) the module fails while any of them is in V(ALARM), naming each such alarm and its reason,
    so that a deploy does not start, or a bake stops, while the team's own alarms fire.
  - A name that does not exist is refused with an error naming the option, so that a typo does not silently
    disable the check.
  - Changes nothing; C(changed) is always false.
  - Runs on the controller and talks to the CloudWatch API with boto3, with the same client, retries and error messages
    as M(immune.canary.alb_target).
author:
  - immune.canary maintainers (@immune)
options:
  names:
    description:
      - Names of the alarms, metric or composite alarms.
    type: list
    elements: str
    required: true
  fail_on_alarm:
    description:
      - Fail when any alarm is in V(ALARM). The message names each such alarm and its reason.
      - V(INSUFFICIENT_DATA) is not a failure; it is reported in RV(alarms).
    type: bool
    default: false
extends_documentation_fragment:
  - immune.canary.aws
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_READ_ONLY
notes:
  - "IAM: C(cloudwatch:DescribeAlarms)."
attributes:
  action_group:
    membership:
      - immune.canary.aws
seealso:
  - name: Using Amazon CloudWatch alarms
    description: Alarm states and what they mean.
    link: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
"""

EXAMPLES = r"""
- name: Refuse to start the deploy while the team's alarms fire
  immune.canary.cloudwatch_alarms:
    names:
      - web-5xx-rate
      - web-p99-latency
    fail_on_alarm: true
    region: eu-west-1
  delegate_to: localhost
  run_once: true

- name: Read the alarms without failing
  immune.canary.cloudwatch_alarms:
    names: [web-5xx-rate]
  delegate_to: localhost
  register: watched
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
  sample: 0.108
alarms:
  description: One entry per alarm, in the order of O(names).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the alarm.
      type: str
      returned: always
    type:
      description: V(metric) or V(composite).
      type: str
      returned: always
    state:
      description: V(OK), V(ALARM) or V(INSUFFICIENT_DATA).
      type: str
      returned: always
    reason:
      description: CloudWatch's explanation of the state.
      type: str
      returned: always
    updated:
      description: When the state last changed, ISO-8601 with its offset (UTC).
      type: str
      returned: always
      sample: "2024-05-02T10:15:00.123000+00:00"
    actions_enabled:
      description: Whether the alarm's actions are enabled.
      type: bool
      returned: always
in_alarm:
  description: Names of the alarms in V(ALARM), in the order of O(names).
  returned: always
  type: list
  elements: str
  sample: [web-5xx-rate]
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
from ansible_collections.immune.canary.plugins.module_utils._cloudwatch import ALARM, firing_message, read_alarms, validate_names  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402

ARGUMENT_SPEC = aws_argument_spec(
    names=dict(type='list', elements='str', required=True),
    fail_on_alarm=dict(type='bool', default=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=AWS_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib('boto3'), exception=str(BOTO3_IMPORT_ERROR))
    stopwatch = Stopwatch()
    params = module.params
    result = dict(changed=False, elapsed=0.0, alarms=[], in_alarm=[])
    if not params['validate_certs']:
        module.warn('validate_certs is false: the TLS certificate of the AWS endpoint is not checked')
    try:
        names = validate_names(params['names'])
        validate_endpoint_url(params.get('endpoint_url'), example='https://monitoring.eu-west-1.amazonaws.com')
        result['alarms'] = read_alarms(aws_client(params, 'cloudwatch'), names)
        result['in_alarm'] = [a['name'] for a in result['alarms'] if a['state'] == ALARM]
        result['elapsed'] = stopwatch.elapsed()
        if params['fail_on_alarm'] and result['in_alarm']:
            raise CanaryError(firing_message(result['alarms']))
    except CanaryError as error:
        result['elapsed'] = stopwatch.elapsed()
        fail_from_error(module, error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
