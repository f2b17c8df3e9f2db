# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # WinRM connection options. The rollout role maps the usual Windows
    # inventory variables (ansible_host, ansible_user, ansible_password,
    # ansible_winrm_*) onto them.
    DOCUMENTATION = r"""
options:
  winrm_host:
    description:
      - Host name or IP address of the Windows server's WinRM listener.
    type: str
    required: true
  winrm_port:
    description:
      - TCP port of the WinRM listener.
    type: int
    default: 5986
  winrm_scheme:
    description:
      - V(https) (listener on 5986) or V(http) (listener on 5985; message encryption is then provided by NTLM, Kerberos or CredSSP).
    type: str
    choices: [https, http]
    default: https
  winrm_transport:
    description:
      - Authentication used on the WinRM connection, as pywinrm names it.
    type: str
    choices: [ntlm, kerberos, credssp, basic, certificate]
    default: ntlm
  winrm_user:
    description:
      - User name (C(DOMAIN\\user) or C(user@DOMAIN) for domain accounts). Not used with V(certificate).
    type: str
  winrm_password:
    description:
      - Password of O(winrm_user). Never logged and never part of a message or result.
    type: str
  winrm_cert_pem:
    description:
      - Path to the client certificate (PEM) for O(winrm_transport=certificate).
    type: path
  winrm_cert_key_pem:
    description:
      - Path to the client certificate's private key (PEM) for O(winrm_transport=certificate).
    type: path
  winrm_server_cert_validation:
    description:
      - Whether the listener's TLS certificate is validated. V(ignore) is for labs only and produces a warning.
    type: str
    choices: [validate, ignore]
    default: validate
  winrm_ca_trust_path:
    description:
      - A CA bundle (file or directory) used to validate the listener's certificate instead of the system store.
    type: path
  winrm_operation_timeout:
    description:
      - WS-Management operation timeout in seconds. Must be lower than O(winrm_read_timeout).
    type: int
    default: 20
  winrm_read_timeout:
    description:
      - Seconds to wait for the TCP connection and for each HTTP response.
    type: int
    default: 30
  winrm_message_encryption:
    description:
      - Message encryption as pywinrm does it. V(auto) encrypts over V(http) when the transport supports it.
    type: str
    choices: [auto, always, never]
    default: auto
requirements:
  - pywinrm >= 0.4.3
notes:
  - The PowerShell sent to the host is a fixed script read from standard input; every value travels as one base64 encoded JSON document, never
    as code.
  - Connection failures (refused, reset, timed out) are retried a bounded number of times; authentication and TLS failures are not.
  - Targets Windows PowerShell 5.1 with the C(WebAdministration) module (Windows Server 2016, 2019, 2022).
"""
