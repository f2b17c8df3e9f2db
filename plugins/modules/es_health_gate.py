#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: es_health_gate
short_description: Let the canary's own traffic in Elasticsearch decide whether a release stands
version_added: 0.1.0
description:
  - Watches the requests a canary server handled since it was admitted, in Elasticsearch or OpenSearch, for a bake time,
    and returns a verdict C(pass) or C(fail) (or C(inconclusive)). A failed verdict fails the task.
  - Each metric is compared with absolute thresholds and, when a O(baseline) is given, with the servers still on the old
    version. A metric fails only when the evidence that the canary is worse crosses its threshold B(and) the observed
    effect is larger than the allowed one (C(max), C(max_ms), C(max_ratio), C(max_delta)).
  - The chance that the gate ever fails a canary that is as good as the baseline and within the absolute limits is at
    most O(false_fail_rate) (or the share of a rollout's budget that O(rollout) gives it; without either, C(1 - confidence)),
    however often it looks and however many metrics it has.
    Error rates and latency metrics share that budget by C(weight). Each of their tests watches an e-process (a mixture
    likelihood ratio, anytime-valid) at every evaluation and makes one exact test at the last evaluation.
  - Error rates against C(max) - the canary's bad requests as binomial counts. Against the baseline - given the bad
    requests of both groups since the last evaluation, the canary's share of them against its share of the traffic
    (a baseline without errors and a canary with errors can fail).
  - Latency is judged on its distribution - a C(range) aggregation over fixed log-spaced bins (1 ms to 131 s, 19 % apart)
    for both groups. C(max_ms) - the share of requests above C(max_ms) against the percentile's share (5 % for a p95).
    C(max_ratio) - of the requests new since the last evaluation, the slow ones (at or above both groups' percentile, and
    apart from that at or above their median), the canary's share of them against its share of the traffic; the percentile
    ratio comes from the bins.
  - Each evaluation is B(one) C(_search) request with C(size=0) carrying all metrics for canary and baseline; the response
    size does not grow with traffic or time and no document is ever fetched.
  - Selections are turned into C(term)/C(terms) filters; no query string is ever built from values.
  - The gate fails closed. Elasticsearch unreachable or answering errors fails the gate with C(could not evaluate)
    unless O(no_data=pass); too few samples fails it unless O(no_data) says otherwise.
  - With O(alarms), the team's CloudWatch alarms are read at every evaluation, before Elasticsearch, and one in
    V(ALARM) fails the gate at once, naming the alarm and its reason, whatever the metrics say.
  - The module only reads; it always returns C(changed=false). Check mode evaluates exactly as a normal run.
author:
  - immune.canary contributors (@immune-canary)
attributes:
  action_group:
    membership:
      - immune.canary.elasticsearch
      - immune.canary.aws
options:
  index:
    description:
      - Index name, pattern or comma-separated list to search, for example V(iis-logs-*).
    type: str
    required: true
  time_field:
    description:
      - The time field of the log documents.
    type: str
    default: '@timestamp'
  fields:
    description:
      - Names of the log fields. The defaults fit IIS logs shipped by Logstash or Filebeat.
      - The logical names (V(application_name), V(status), V(latency), V(host)) may also be used as keys of O(canary)
        and O(baseline).
    type: dict
    default: {}
    suboptions:
      application_name:
        description: Field holding the application (IIS site) name.
        type: str
        default: application_name
      status:
        description: Field holding the HTTP status code.
        type: str
        default: response
      latency:
        description: Field holding the request duration in milliseconds.
        type: str
        default: time_taken
      host:
        description: Field holding the server name.
        type: str
        default: host.name
  canary:
    description:
      - The canary's requests, as a mapping of field to a value or a list of values; each becomes a C(term) or C(terms)
        filter, all must match.
      - "For example C({host: web-01, application_name: app.example.com-3457})."
      - Exactly one of O(canary) and O(canary_query) is required.
    type: dict
  canary_query:
    description:
      - For experts, the canary's requests as an Elasticsearch query DSL dict.
    type: dict
  baseline:
    description:
      - The baseline's requests (usually the other servers on the old version), as for O(canary).
      - Without O(baseline) and O(baseline_query), only absolute thresholds are checked.
    type: dict
  baseline_query:
    description:
      - The baseline's requests as an Elasticsearch query DSL dict.
    type: dict
  exclude:
    description:
      - Requests left out of both groups, as a mapping of field to a value or a list of values; a request matching any entry is
        left out (each becomes a C(term) or C(terms) filter under C(must_not)).
      - "The load balancer's health checks are in the request logs too, and always succeed. On a quiet application they can be
        a large share of the requests and dilute an error rate, for example
        C({user_agent.original: ELB-HealthChecker/2.0}) (the ALB's health checker) or C({url.path: /health})."
    type: dict
    default: {}
    version_added: 0.2.0
  since:
    description:
      - Start of the window, ISO-8601 (for example the admission time the rollout role records, V(2026-05-01T12:00:00Z)).
        A time without offset is taken as UTC.
      - When not set, the time the module starts.
    type: str
  ingest_lag:
    description:
      - Seconds at the newest end of the window to ignore because they may not be indexed yet.
    type: float
    default: 0
  metrics:
    description:
      - The metrics, a list of dicts with C(name), C(kind) and the kind's keys. Exactly one of O(metrics) and O(metrics_file) is required.
      - "Every kind: C(min_samples) (fewer samples = no data; default 50 for error_rate and latency, 0 for throughput and
        count, 1 for custom), C(weight) (default 1; the metric's share of O(false_fail_rate) among the error_rate and latency
        metrics; 0 makes the metric report-only), C(report_only) (report, never fail)."
      - "C(error_rate): share of requests with status >= C(bad_status_min) (default 500) or matching the DSL C(bad_query);
        C(max) (absolute, a share 0..1), C(max_ratio) and/or C(max_delta) (allowed vs the baseline's rate). With C(max) and
        a baseline comparison, the comparison gets 80 % of the metric's budget."
      - "C(latency): the C(percentile) (default 95, in (0, 100]) of the latency field (or C(field)), in milliseconds,
        estimated from the bins; C(max_ms), C(max_ratio)."
      - "C(throughput) (requests per second over the window) and C(count) (total); optional DSL C(query); C(min) and/or C(max)."
      - "C(custom): a DSL C(query) (default all of the group's requests) with C(aggs), and C(value), a JMESPath expression
        evaluated on that filter's aggregation result (it has C(doc_count) and your aggregations), for example
        V(slow.doc_count) or V(avg_bytes.value); C(min) and/or C(max)."
      - During the bake a failure stops the gate early (O(fail_fast)) only when it is conclusive - an error rate or latency
        whose e-process crossed its threshold, a custom value past its limit with C(min_samples), a count above C(max).
        Minimums and the exact tests are judged at the end of the bake.
      - Throughput, count and custom metrics are plain thresholds, outside O(false_fail_rate).
    type: list
    elements: dict
  metrics_file:
    description:
      - A YAML file with the metrics (a list, or a dict with a C(metrics) list), so a team can own its catalog.
    type: path
  confidence:
    description:
      - Without O(false_fail_rate) or O(rollout), the gate's budget is C(1 - confidence) (with the default, a canary as good as the
        baseline fails at most 2 % of the time).
    type: float
    default: 0.98
  false_fail_rate:
    description:
      - The most this gate may fail a canary that is as good as the baseline and within the absolute limits, however often it
        looks and however many metrics it has, for example V(0.005). Takes precedence over O(confidence).
      - Must be in (0, 0.5].
      - Mutually exclusive with O(rollout), which derives it from the budget of a whole rollout.
    type: float
    version_added: 0.2.0
  rollout:
    description:
      - This gate is one of a rollout's, whose good releases may be stopped at most a share O(rollout.false_abort_rate) of
        the time. The gate of the rollout's O(rollout.position)-th host gets C(false_abort_rate / (position x (position + 1)))
        as its O(false_fail_rate) - half for the first host (the canary, where a bad release is caught), a sixth for the
        second, 1/420 for the twentieth.
      - The gates of the first N hosts spend C(false_abort_rate x N / (N + 1)) together, less than O(rollout.false_abort_rate)
        whatever the size of the fleet, which the gate need not know.
      - The C(immune.canary.rollout) role sets it from C(rollout_false_abort_rate) and the host's place in the rollout.
      - Mutually exclusive with O(false_fail_rate).
    type: dict
    version_added: 0.2.0
    suboptions:
      false_abort_rate:
        description:
          - The rollout's budget, in (0, 1], for example V(0.01) (a good release stopped in at most 1 of 100 rollouts).
        type: float
        required: true
      position:
        description:
          - The host's place in the rollout, V(1) for the first host to take the new version. The hosts of one batch take
            consecutive places.
        type: int
        required: true
  bake_time:
    description:
      - Seconds to watch the canary. The gate passes only after this time, when every metric passes.
    type: float
    default: 300
  interval:
    description:
      - Seconds between evaluations.
    type: float
    default: 30
  fail_fast:
    description:
      - Fail as soon as a metric is breached conclusively, without waiting for the end of the bake.
    type: bool
    default: true
  no_data:
    description:
      - What too few samples means at the end of the bake.
      - V(fail) fails the gate; V(warn) returns verdict C(inconclusive) with a warning; V(pass) passes.
      - With V(pass), errors from Elasticsearch are also tolerated (reported, then passed).
    type: str
    choices: [fail, pass, warn]
    default: fail
  report_only:
    description:
      - Dry run. Evaluate and report the verdict, but never fail the task (a failed verdict is a warning).
    type: bool
    default: false
  bucket_interval:
    description:
      - No effect since 0.2.0 (latency is judged on its binned distribution, not on per-bucket percentiles); accepted so that
        existing playbooks keep working.
    type: str
    default: 10s
  alarms:
    description:
      - Names of CloudWatch alarms, metric or composite, read at every evaluation (one C(DescribeAlarms) call per
        100 names, with the AWS options such as O(region)). One in V(ALARM) fails the gate at once.
      - A name that does not exist fails the gate, naming this option.
      - An error reading them is treated as an error from Elasticsearch (see O(no_data)).
      - "IAM: C(cloudwatch:DescribeAlarms)."
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  alarms_preexisting:
    description:
      - Alarms already in V(ALARM) when the rollout started and let pass then, as M(immune.canary.cloudwatch_alarms)
        returns them (C(name), C(updated)). Each is not counted while it stays in that same V(ALARM) (the same
        C(updated) time; any time when C(updated) is not given); once its state changes it counts again.
    type: list
    elements: dict
    default: []
    version_added: 0.2.0
extends_documentation_fragment:
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_READ_ONLY
  - immune.canary.elasticsearch
  - immune.canary.aws
"""

EXAMPLES = r"""
- name: Bake the canary for five minutes against the other servers
  immune.canary.es_health_gate:
    es_hosts: ["https://es.example.com:9200"]
    es_api_key: "{{ vault_es_api_key }}"
    index: iis-logs-*
    since: "{{ __rollout_admitted_at }}"
    ingest_lag: 30
    canary:
      host: "{{ inventory_hostname }}"
      application_name: "app.example.com-{{ rollout_version }}"
    baseline:
      host: "{{ groups['web'] | difference([inventory_hostname]) }}"
      application_name: "app.example.com-{{ rollout_from_version }}"
    metrics:
      - {name: errors, kind: error_rate, max: 0.01, max_ratio: 2, weight: 3}
      - {name: p95, kind: latency, percentile: 95, max_ms: 500, max_ratio: 1.5}
      - {name: traffic, kind: throughput, min: 0.5}
    # The third host of a rollout that may stop a good release once in 100 rollouts
    # (this gate's budget: 0.01 / (3 x 4))
    rollout:
      false_abort_rate: 0.01
      position: 3
    bake_time: 300
    interval: 30
  delegate_to: localhost

- name: Use the team's catalog, on Amazon OpenSearch Service
  immune.canary.es_health_gate:
    es_hosts: ["https://search-logs-abc123.eu-west-1.es.amazonaws.com"]
    es_aws_sigv4: true
    es_aws_region: eu-west-1
    index: iis-logs-*
    canary: {host: web-01}
    metrics_file: "{{ playbook_dir }}/metrics/app.yml"
  delegate_to: localhost

- name: Dry run a new metric without failing anything
  immune.canary.es_health_gate:
    es_hosts: ["http://localhost:9200"]
    index: iis-logs-*
    canary: {host: web-01}
    report_only: true
    bake_time: 60
    metrics:
      - name: slow_share
        kind: custom
        aggs:
          slow: {filter: {range: {time_taken: {gte: 2000}}}}
        value: slow.doc_count
        max: 20
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Always false; the gate only reads.
  returned: always
  type: bool
  sample: false
verdict:
  description: C(pass), C(fail), or C(inconclusive) (too few samples with O(no_data=warn)).
  returned: always
  type: str
  sample: fail
metrics:
  description: One entry per metric, from the last evaluation.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The metric's name.
      type: str
      sample: errors
    kind:
      description: The metric's kind.
      type: str
      sample: error_rate
    value:
      description: The canary's value (share, milliseconds, requests per second, count, or the custom value).
      type: float
      sample: 0.184
    baseline_value:
      description: The baseline's value, or null without a baseline.
      type: float
      sample: 0.002
    threshold:
      description: The limit the value was compared with (the absolute one when set, else the one allowed by the baseline).
      type: float
      sample: 0.01
    status:
      description: C(pass), C(fail), C(no_data), or C(warn) (breached, but report-only).
      type: str
      sample: fail
    samples:
      description: Number of canary samples (requests, or latency values).
      type: int
      sample: 412
    baseline_samples:
      description: Number of baseline samples, or null without a baseline.
      type: int
      sample: 8231
    p_value:
      description:
        - The smallest p-value of the metric's tests (an always-valid one, C(1 / the largest e-value so far), or the exact
          one of the last evaluation), or null when no test applied.
      type: float
      sample: 0.00001
    reason:
      description: One line explaining the status, with the evidence and the threshold it crossed (or did not).
      type: str
      sample: "errors 0.184 > 0.05 (n=412; baseline 0.002; e=3.1e+09 >= 1.3e+04)"
    effect:
      description:
        - The observed effect of the deciding test (the failing one, else the one with the most evidence) - the canary's
          error rate, its share of requests above C(max_ms), or its percentile divided by the baseline's.
      type: float
      sample: 0.184
    allowed_effect:
      description: The effect that test allows (C(max), the rate allowed by the baseline, the percentile's share, C(max_ratio)).
      type: float
      sample: 0.05
    e_value:
      description: The e-value of the deciding test now; the test fails when it reaches RV(metrics[].e_threshold).
      type: float
      sample: 3100000000.0
    e_threshold:
      description: The deciding test's e-value threshold, C(1 / (its budget x 0.25)).
      type: float
      sample: 13333.3
    alpha:
      description: The metric's share of O(false_fail_rate), or null for a plain threshold.
      type: float
      sample: 0.000375
    tests:
      description: The metric's statistical tests (none for throughput, count and custom metrics).
      type: list
      elements: dict
      contains:
        test:
          description: C(max) (against the absolute limit) or C(baseline) (against the baseline).
          type: str
          sample: max
        hypothesis:
          description: What the test assumes until the evidence says otherwise.
          type: str
          sample: errors <= 0.05
        observed:
          description: The observed effect.
          type: float
          sample: 0.184
        allowed:
          description: The allowed effect.
          type: float
          sample: 0.05
        e_value:
          description: The e-value now (the mixture likelihood ratio; 1 without evidence).
          type: float
          sample: 3100000000.0
        e_threshold:
          description: The e-value that fails the test at any evaluation.
          type: float
          sample: 13333.3
        p_value:
          description: Always-valid p-value, C(1 / the largest e-value so far).
          type: float
          sample: 0.0000000003
        final_p_value:
          description: The exact p-value of the whole bake, at the last evaluation only (else null).
          type: float
          sample: null
        final_threshold:
          description: The exact p-value that fails the test at the last evaluation.
          type: float
          sample: 0.0000563
        alpha:
          description: The test's budget (its e-value threshold and final threshold spend it together).
          type: float
          sample: 0.000075
        crossed:
          description: C(e_value) or C(final_p_value) when the test failed (its observed effect is past the allowed one), else null.
          type: str
          sample: e_value
false_fail_rate:
  description: The gate's budget - O(false_fail_rate), the share O(rollout) gives this host, or C(1 - confidence).
  returned: always
  type: float
  sample: 0.005
evaluations:
  description: Number of evaluations (searches) made.
  returned: always
  type: int
  sample: 10
alarms:
  description:
    - The alarms of O(alarms) as the last evaluation read them (empty without O(alarms)). The gate's message names the
      ones that fired.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The alarm's name.
      type: str
    type:
      description: C(metric) or C(composite).
      type: str
    state:
      description: C(OK), C(ALARM) or C(INSUFFICIENT_DATA).
      type: str
    reason:
      description: CloudWatch's reason for the state.
      type: str
    updated:
      description: When the state last changed (ISO 8601).
      type: str
    actions_enabled:
      description: Whether the alarm's actions are enabled.
      type: bool
  version_added: 0.2.0
window:
  description: The time window of the last evaluation (UTC).
  returned: always
  type: dict
  contains:
    from:
      description: Start of the window.
      type: str
      sample: "2026-05-01T12:00:00.000Z"
    to:
      description: End of the window (now minus O(ingest_lag)).
      type: str
      sample: "2026-05-01T12:05:00.000Z"
query:
  description: The search body of the last evaluation, as sent.
  returned: always
  type: dict
elapsed:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 300.2
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._aws import (  # noqa: E402
    AWS_ARGUMENT_SPEC,
    AWS_MUTUALLY_EXCLUSIVE,
    BOTO3_IMPORT_ERROR,
    HAS_BOTO3,
    aws_client,
    validate_endpoint_url,
)
from ansible_collections.immune.canary.plugins.module_utils._cloudwatch import AlarmWatch, validate_names, validate_preexisting  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import (  # noqa: E402
    ELASTICSEARCH_IMPORT_ERROR,
    HAS_ELASTICSEARCH,
    EsClient,
    es_argument_spec,
    es_module_kwargs,
)
from ansible_collections.immune.canary.plugins.module_utils._gate import (  # noqa: E402
    DEFAULT_FIELDS,
    NO_DATA_POLICIES,
    Gate,
    failure_lines,
    load_catalog,
    rollout_budget,
    selection_filter,
)


def argument_spec():
    return es_argument_spec(
        alarms=dict(type='list', elements='str', default=[]),
        alarms_preexisting=dict(type='list', elements='dict', default=[]),
        **AWS_ARGUMENT_SPEC,
        index=dict(type='str', required=True),
        time_field=dict(type='str', default='@timestamp'),
        fields=dict(type='dict', default={}, options={key: dict(type='str', default=value) for key, value in DEFAULT_FIELDS.items()}),
        canary=dict(type='dict'),
        canary_query=dict(type='dict'),
        baseline=dict(type='dict'),
        baseline_query=dict(type='dict'),
        exclude=dict(type='dict', default={}),
        since=dict(type='str'),
        ingest_lag=dict(type='float', default=0.0),
        metrics=dict(type='list', elements='dict'),
        metrics_file=dict(type='path'),
        confidence=dict(type='float', default=0.98),
        false_fail_rate=dict(type='float'),
        rollout=dict(type='dict', options=dict(false_abort_rate=dict(type='float', required=True),
                                               position=dict(type='int', required=True))),
        bake_time=dict(type='float', default=300.0),
        interval=dict(type='float', default=30.0),
        fail_fast=dict(type='bool', default=True),
        no_data=dict(type='str', default='fail', choices=list(NO_DATA_POLICIES)),
        report_only=dict(type='bool', default=False),
        bucket_interval=dict(type='str', default='10s'),
    )


def _group_filter(params, name):
    if params.get(name + '_query') is not None:
        found = params[name + '_query']
    elif params.get(name) is not None:
        found = selection_filter(params[name], name, params['fields'])
    else:
        return None
    if not params.get('exclude'):
        return found
    left_out = selection_filter(params['exclude'], 'exclude', params['fields'])['bool']['filter']
    return {'bool': {'filter': [found], 'must_not': left_out}}


def main():
    kwargs = es_module_kwargs()
    kwargs['mutually_exclusive'] += [['canary', 'canary_query'], ['baseline', 'baseline_query'], ['metrics', 'metrics_file'],
                                     ['false_fail_rate', 'rollout']] + AWS_MUTUALLY_EXCLUSIVE
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[['canary', 'canary_query'], ['metrics', 'metrics_file']], **kwargs)
    if not HAS_ELASTICSEARCH:
        module.fail_json(msg=missing_required_lib('elasticsearch'), exception=str(ELASTICSEARCH_IMPORT_ERROR))
    params = module.params
    watch = Stopwatch()
    client = None
    try:
        catalog = load_catalog(params['metrics'], params['metrics_file'])
        false_fail_rate = params['false_fail_rate']
        if params['rollout'] is not None:
            false_fail_rate = rollout_budget(params['rollout']['false_abort_rate'], params['rollout']['position'])
        gate_args = dict(
            canary_filter=_group_filter(params, 'canary'), baseline_filter=_group_filter(params, 'baseline'),
            time_field=params['time_field'], fields=params['fields'], since=params['since'], ingest_lag=params['ingest_lag'],
            bake_time=params['bake_time'], interval=params['interval'], fail_fast=params['fail_fast'], no_data=params['no_data'],
            confidence=params['confidence'], false_fail_rate=false_fail_rate)
        if params['alarms']:
            if not HAS_BOTO3:
                module.fail_json(msg=missing_required_lib('boto3', reason='to read the alarms of option alarms'),
                                 exception=str(BOTO3_IMPORT_ERROR))
            names = validate_names(params['alarms'], 'alarms')
            accepted = validate_preexisting(params['alarms_preexisting'])
            validate_endpoint_url(params.get('endpoint_url'), example='https://monitoring.eu-west-1.amazonaws.com')
            if not params['validate_certs']:
                module.warn('validate_certs is false: the TLS certificate of the AWS endpoint is not checked')
            gate_args['alarms'] = AlarmWatch(aws_client(params, 'cloudwatch'), names, accepted)
        client = EsClient(params)
        for warning in client.warnings:
            module.warn(warning)
        outcome = Gate(client, catalog, params['index'], **gate_args).run()
    except CanaryError as exc:
        fail_from_error(module, exc, changed=False, elapsed=watch.elapsed())
    finally:
        if client is not None:
            client.close()

    result = dict(changed=False, verdict=outcome['verdict'], metrics=outcome['metrics'], evaluations=outcome['evaluations'],
                  false_fail_rate=outcome['false_fail_rate'], alarms=outcome['alarms'],
                  window=outcome['window'] or {}, query=outcome['query'] or {}, elapsed=watch.elapsed())
    verdict = outcome['verdict']
    if verdict == 'fail':
        if outcome['error']:
            msg = 'Health gate failed: %s' % outcome['error']
        else:
            msg = 'Health gate failed after %d evaluation(s):\n%s' % (outcome['evaluations'], '\n'.join(failure_lines(outcome['metrics'])))
        if params['report_only']:
            module.warn('report_only: ' + msg)
            module.exit_json(msg=msg, **result)
        module.fail_json(msg=msg, **result)
    if outcome['error']:
        module.warn(outcome['error'])
    if verdict == 'inconclusive':
        msg = 'Health gate inconclusive (no_data: warn):\n%s' % '\n'.join(failure_lines(outcome['metrics']))
        module.warn(msg)
        module.exit_json(msg=msg, **result)
    module.exit_json(msg='Health gate passed after %d evaluation(s)' % outcome['evaluations'], **result)


if __name__ == '__main__':
    main()
