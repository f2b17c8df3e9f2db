#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: iis_package
short_description: Let a Windows host download, verify and unpack a release zip
version_added: 0.1.0
description:
  - Reaches the host over WinRM with pywinrm and runs a fixed PowerShell script (Windows PowerShell 5.1).
  - The host downloads O(url) itself (an S3 pre-signed URL, an Octopus, Jenkins or artifact server URL), verifies O(checksum)
    B(before) unpacking, unpacks the zip into a temporary folder beside O(dest) and renames it into place, so O(dest) is never half written.
  - A marker file in O(dest) holds the checksum; when it matches, nothing is downloaded.
  - A wrong checksum fails the task and leaves O(dest) untouched.
options:
  url:
    description:
      - http(s) URL of the zip. Required with O(state=present).
    type: str
  checksum:
    description:
      - Expected checksum of the zip, C(sha256:<64 hex digits>).
    type: str
    required: true
  dest:
    description:
      - Absolute Windows folder the release is unpacked into, for example C(D:\\sites\\app.example.com-3457).
    type: str
    required: true
  headers:
    description:
      - HTTP headers sent with the download (for example an authorization token). Never logged.
    type: dict
    default: {}
  validate_certs:
    description:
      - Whether the host validates the download server's TLS certificate.
      - Setting this to V(false) is insecure (only the checksum then protects the package) and produces a warning.
    type: bool
    default: true
  timeout:
    description:
      - Seconds the host waits for the download server.
    type: int
    default: 300
  state:
    description:
      - V(present) installs the release, V(absent) removes O(dest).
    type: str
    choices: [present, absent]
    default: present
attributes:
  action_group:
    membership: [immune.canary.winrm]
  diff_mode:
    description: No diff is produced; C(changed) tells whether the release would be installed or removed.
    support: none
extends_documentation_fragment:
  - immune.canary.winrm
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
author:
  - immune.canary contributors (@immune-canary)
"""

EXAMPLES = r"""
- name: Put release 3457 on the host
  immune.canary.iis_package:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    url: "{{ release_url }}"
    checksum: "sha256:{{ release_sha256 }}"
    dest: D:\sites\app.example.com-3457
    headers:
      Authorization: "Bearer {{ artifact_token }}"
  delegate_to: localhost

- name: Remove an old release
  immune.canary.iis_package:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    checksum: "sha256:{{ old_sha256 }}"
    dest: D:\sites\app.example.com-3455
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
dest:
  description: The destination folder.
  returned: always
  type: str
  sample: D:\sites\app.example.com-3457
checksum:
  description: Checksum of the release in O(dest) (the requested one in check mode), null after removal.
  returned: always
  type: str
  sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
size:
  description: Size of the downloaded zip in bytes; null when unknown (check mode, removal).
  returned: always
  type: int
  sample: 1048576
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 3.2
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._iis import Package, client_for, tls_warnings  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._winrm import (  # noqa: E402
    HAS_PYWINRM,
    PYWINRM_IMPORT_ERROR,
    WINRM_REQUIRED_IF,
    winrm_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=winrm_argument_spec(
            url=dict(type='str'),
            checksum=dict(type='str', required=True),
            dest=dict(type='str', required=True),
            headers=dict(type='dict', default={}, no_log=True),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='int', default=300),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        required_if=WINRM_REQUIRED_IF + [('state', 'present', ('url',))],
        supports_check_mode=True,
    )
    if not HAS_PYWINRM:
        module.fail_json(msg=missing_required_lib('pywinrm'), exception=str(PYWINRM_IMPORT_ERROR))
    watch = Stopwatch()
    for warning in tls_warnings(module.params):
        module.warn(warning)
    try:
        result = Package(client_for(module.params, log=module.warn)).run(module.params, check_mode=module.check_mode)
    except CanaryError as exc:
        fail_from_error(module, exc, elapsed=watch.elapsed())
    module.exit_json(elapsed=watch.elapsed(), **result)


if __name__ == '__main__':
    main()
