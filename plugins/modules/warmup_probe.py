#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: warmup_probe
short_description: Warm one server off-line over HTTPS with the public name and prove it is fast
version_added: 0.1.0
description:
  - Sends requests straight to one server (O(address)) while presenting the public URL as a client of the load balancer would
    present it. TLS SNI and the C(Host) header carry the URL's host name, and the server certificate is validated against that
    name. The server can therefore be warmed up and checked while it is out of the load balancer.
  - "Cold start: the first URL is requested until it gives a good answer. Connection refused, connection reset, timeouts and
    the statuses 408, 429, 502, 503 and 504 are retried with a short backoff (0.2 s growing to 2 s) until O(first_request_timeout)
    or O(timeout), whichever ends first."
  - "Ready test: after the first good answer, every URL gets O(samples) timed requests (a round). A round passes when every
    answer meets the expectations (O(status_codes), O(headers_match), O(body_regex)) and, per URL, the O(latency_statistic)
    of the request times is at most O(latency_threshold_ms). Rounds repeat until one passes or O(timeout) ends."
  - An answer that waiting cannot fix fails at once, without waiting for O(timeout) (an unexpected status other than 408, 429,
    502, 503 or 504, a header or body mismatch, a certificate that is not valid for the public name).
  - Each request uses a new connection, which is what a new client sees. The request time (from sending the request to the last
    byte of the body) is what the threshold judges; the TCP connect and TLS handshake times are measured and returned separately.
  - The failure message names the expectation that failed last, with the numbers, for example
    C(p90 412 ms > 100 ms on /api/ping after 5 rounds in 60.2 s) or C(certificate for other.example.com does not match app.example.com).
  - The module changes nothing, so it always returns C(changed=false).
author:
  - immune.canary contributors (@immune-canary)
extends_documentation_fragment:
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_READ_ONLY
attributes:
  check_mode:
    description: Runs in check mode and still sends its requests, because it only reads; C(changed) is always false.
    support: full
  action_group:
    description: Not part of an action group; its options are per server.
    support: none
    membership: []
options:
  url:
    description:
      - The public URL to warm, for example V(https://app.example.com/health).
      - Exactly one of O(url) and O(urls) is required.
    type: str
  urls:
    description:
      - Several public URLs to warm, for example V(https://app.example.com/), V(https://app.example.com/api/ping).
      - The first one is used for the cold start. The URLs may name different hosts; each request uses its own URL's host
        for SNI, C(Host) and the certificate check.
    type: list
    elements: str
  address:
    description:
      - Host name or IP address of the server to connect to, for example the instance's private IP.
      - The URL's host name is never resolved; only O(address) is connected to.
    type: str
    required: true
  port:
    description:
      - Port to connect to on O(address).
      - When not set, the port of each URL is used (443 for https, 80 for http unless the URL names one).
    type: int
  method:
    description: HTTP method of every request.
    type: str
    default: GET
  headers:
    description:
      - Extra request headers, name to value. The values are shown in logs; put secret values in O(secret_headers).
      - C(Host) cannot be set; it always comes from the URL.
    type: dict
    default: {}
  secret_headers:
    description:
      - Extra request headers whose values are secret, for example C(Authorization). Sent like O(headers) (and win over a header
        of the same name there), but the values are never logged, returned or put in a message.
    type: dict
    default: {}
  body:
    description: Request body, sent as UTF-8, for example with O(method=POST).
    type: str
  status_codes:
    description: Statuses that count as a good answer.
    type: list
    elements: int
    default: [200]
  body_regex:
    description: A regular expression that must be found (Python C(re.search)) in every response body, decoded as UTF-8.
    type: str
  headers_match:
    description:
      - Response headers that must be present, name to expected value, for example C(X-App-Version=3457) to prove the new
        version answers and not a stale one. Header names are case-insensitive.
      - Each value is a Python regular expression that must match the whole header value (C(re.fullmatch)), so a plain value
        such as V(3457) matches exactly V(3457), and V(34\\d\\d) any version from 3400 to 3499. Escape dots (V(1\\.2\\.3)) for an
        exact dotted version.
    type: dict
    default: {}
  first_request_timeout:
    description: Seconds to keep retrying the first URL until its first good answer (the cold start).
    type: float
    default: 120
  timeout:
    description:
      - Seconds for the whole probe, cold start and rounds together. A request running when it ends is cut off.
    type: float
    default: 300
  samples:
    description: Timed requests per URL in each round.
    type: int
    default: 6
  latency_statistic:
    description: The statistic of each round's request times that is compared with O(latency_threshold_ms).
    type: str
    choices: [max, p50, p90, p95]
    default: p90
  latency_threshold_ms:
    description: Highest acceptable value of O(latency_statistic), in milliseconds.
    type: float
    default: 100
  validate_certs:
    description:
      - Whether to validate the server certificate against the public host name of the URL. Turning it off is reported as a
        warning, because the probe can then no longer prove that the server holds the public name's certificate.
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates to validate the server certificate with, instead of the system's.
    type: path
  client_cert:
    description: PEM file with a client certificate (and its key, unless O(client_key) is given) for servers that require one.
    type: path
  client_key:
    description: PEM file with the private key of O(client_cert).
    type: path
  concurrency:
    description: How many URLs are sampled at the same time in a round (each URL's samples are always sequential).
    type: int
    default: 4
notes:
  - The module runs on the controller; use C(delegate_to=localhost). It needs no Python package outside the standard library.
seealso:
  - module: ansible.builtin.uri
    description: Cannot connect to one address while presenting another host name, which is why this module exists.
"""

EXAMPLES = r"""
- name: Warm the new site before it rejoins the load balancer
  immune.canary.warmup_probe:
    urls:
      - https://app.example.com/health
      - https://app.example.com/
      - https://app.example.com/api/ping
    address: "{{ ansible_host }}"
    headers_match:
      X-App-Version: "3457"
    first_request_timeout: 120
    timeout: 300
    latency_statistic: p90
    latency_threshold_ms: 100
  delegate_to: localhost

- name: Warm with a secret header and a private CA
  immune.canary.warmup_probe:
    url: https://app.example.com/api/ping
    address: 10.0.1.23
    secret_headers:
      Authorization: "Bearer {{ warmup_token }}"
    ca_path: /etc/pki/internal-ca.pem
    status_codes: [200, 204]
    body_regex: '"status":\s*"ok"'
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
ready:
  description: Whether a full round met every expectation. False only in a failed result.
  returned: always
  type: bool
  sample: true
elapsed:
  description: Seconds the probe took, cold start included.
  returned: always
  type: float
  sample: 27.412
first_response_ms:
  description:
    - Duration of the request that gave the first good answer (connect, TLS and request), in milliseconds; the cold start
      of the application. Null when no good answer came.
  returned: always
  type: float
  sample: 24817.3
attempts:
  description: Requests sent in the cold start, the good one included.
  returned: always
  type: int
  sample: 9
rounds:
  description: Rounds of timed samples started after the cold start.
  returned: always
  type: int
  sample: 2
urls:
  description: Per URL, the measurements of its last round.
  returned: always
  type: list
  elements: dict
  contains:
    url:
      description: The public URL.
      returned: always
      type: str
      sample: https://app.example.com/health
    status:
      description: HTTP status of the last answer; null when none came.
      returned: always
      type: int
      sample: 200
    samples_ms:
      description: Request times of the last round (request sent to last body byte), in milliseconds.
      returned: always
      type: list
      elements: float
      sample: [12.1, 9.8, 10.4, 9.9, 11.0, 10.2]
    p50_ms:
      description: Median of RV(urls[].samples_ms); null without samples.
      returned: always
      type: float
      sample: 10.3
    p90_ms:
      description: 90th percentile (linear interpolation) of RV(urls[].samples_ms); null without samples.
      returned: always
      type: float
      sample: 11.6
    p95_ms:
      description: 95th percentile (linear interpolation) of RV(urls[].samples_ms); null without samples.
      returned: always
      type: float
      sample: 11.8
    max_ms:
      description: Largest of RV(urls[].samples_ms); null without samples.
      returned: always
      type: float
      sample: 12.1
    connect_ms:
      description: Median TCP connect time of the round's requests, in milliseconds; null without samples.
      returned: always
      type: float
      sample: 0.4
    tls_ms:
      description: Median TLS handshake time of the round's requests, in milliseconds (0 for http); null without samples.
      returned: always
      type: float
      sample: 3.2
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._http_probe import probe  # noqa: E402

ARGUMENT_SPEC = dict(
    url=dict(type='str'),
    urls=dict(type='list', elements='str'),
    address=dict(type='str', required=True),
    port=dict(type='int'),
    method=dict(type='str', default='GET'),
    headers=dict(type='dict', default={}),
    secret_headers=dict(type='dict', default={}, no_log=True),
    body=dict(type='str'),
    status_codes=dict(type='list', elements='int', default=[200]),
    body_regex=dict(type='str'),
    headers_match=dict(type='dict', default={}),
    first_request_timeout=dict(type='float', default=120),
    timeout=dict(type='float', default=300),
    samples=dict(type='int', default=6),
    latency_statistic=dict(type='str', default='p90', choices=['max', 'p50', 'p90', 'p95']),
    latency_threshold_ms=dict(type='float', default=100),
    validate_certs=dict(type='bool', default=True),
    ca_path=dict(type='path'),
    client_cert=dict(type='path'),
    client_key=dict(type='path', no_log=False),
    concurrency=dict(type='int', default=4),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[['url', 'urls']],
        required_one_of=[['url', 'urls']],
        required_by={'client_key': 'client_cert'},
        supports_check_mode=True,
    )
    try:
        result, warnings = probe(module.params, log=module.debug)
    except CanaryError as exc:
        fail_from_error(module, exc, changed=False)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
