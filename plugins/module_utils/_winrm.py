# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of the collection's fixed PowerShell scripts on a Windows host.

The command line only ever holds a tiny constant bootstrap
(``-EncodedCommand``); the script itself and its input (one base64 JSON
document) travel over the command's stdin with the WS-Management Send
operation, so scripts of any size work and no value is ever part of code.
The script prints its result as base64 UTF-8 JSON between two markers, so
neither the console code page nor stray output can break parsing.
"""

from __future__ import annotations

import base64
import json
import re
import time

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._waiter import Deadline

try:
    import requests.exceptions
    import winrm.exceptions
    from winrm.protocol import Protocol
    HAS_PYWINRM = True
    PYWINRM_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    HAS_PYWINRM = False
    PYWINRM_IMPORT_ERROR = exc

RESULT_BEGIN = '<<immune.canary:result>>'
RESULT_END = '<</immune.canary:result>>'

# Fixed bootstrap run with -EncodedCommand: stdin line 1 is the base64 UTF-8
# script, line 2 the base64 JSON input handed to it as its only argument.
BOOTSTRAP = r"""# immune.canary:bootstrap/1
$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false
$stdin = @($input)
$code = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String([string]$stdin[0]))
$block = [System.Management.Automation.ScriptBlock]::Create($code)
& $block ([string]$stdin[1])
"""

POWERSHELL = 'powershell.exe'
POWERSHELL_ARGS = ('-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-EncodedCommand')
STDIN_CHUNK = 96 * 1024  # raw bytes per Send; base64 keeps the envelope under 150 KiB
CONNECT_ATTEMPTS = 3
UTF8_CODEPAGE = 65001


def winrm_argument_spec(**extra):
    """The WinRM connection options shared by the IIS modules."""
    spec = dict(
        winrm_host=dict(type='str', required=True),
        winrm_port=dict(type='int', default=5986),
        winrm_scheme=dict(type='str', default='https', choices=['https', 'http']),
        winrm_transport=dict(type='str', default='ntlm', choices=['ntlm', 'kerberos', 'credssp', 'basic', 'certificate']),
        winrm_user=dict(type='str'),
        winrm_password=dict(type='str', no_log=True),
        winrm_cert_pem=dict(type='path'),
        winrm_cert_key_pem=dict(type='path', no_log=False),
        winrm_server_cert_validation=dict(type='str', default='validate', choices=['validate', 'ignore']),
        winrm_ca_trust_path=dict(type='path'),
        winrm_operation_timeout=dict(type='int', default=20),
        winrm_read_timeout=dict(type='int', default=30),
        winrm_message_encryption=dict(type='str', default='auto', choices=['auto', 'always', 'never']),
    )
    spec.update(extra)
    return spec


WINRM_REQUIRED_IF = [
    ('winrm_transport', 'ntlm', ('winrm_user', 'winrm_password')),
    ('winrm_transport', 'credssp', ('winrm_user', 'winrm_password')),
    ('winrm_transport', 'basic', ('winrm_user', 'winrm_password')),
    ('winrm_transport', 'certificate', ('winrm_cert_pem', 'winrm_cert_key_pem')),
]


def validate_winrm_params(params):
    """Reject bad connection options before anything is sent."""
    port = params.get('winrm_port')
    if port is None or not 0 < port < 65536:
        raise CanaryError('Invalid winrm_port %r: use a TCP port between 1 and 65535' % (port,))
    op_timeout = params.get('winrm_operation_timeout') or 0
    read_timeout = params.get('winrm_read_timeout') or 0
    if op_timeout < 1 or read_timeout <= op_timeout:
        raise CanaryError('Invalid winrm_operation_timeout %r / winrm_read_timeout %r: both must be positive and winrm_read_timeout must be '
                          'greater than winrm_operation_timeout' % (op_timeout, read_timeout))
    host = params.get('winrm_host') or ''
    if not host.strip() or any(c in host for c in '/?#@ '):
        raise CanaryError('Invalid winrm_host %r: use a host name or an IP address' % (host,))


def endpoint_url(params):
    host = params['winrm_host']
    if ':' in host and not host.startswith('['):
        host = '[%s]' % host
    return '%s://%s:%d/wsman' % (params['winrm_scheme'], host, params['winrm_port'])


def encode_command(script):
    return base64.b64encode(script.encode('utf-16-le')).decode('ascii')


def encode_stdin(script, input_doc):
    """The two stdin lines the bootstrap reads: script and input, both base64."""
    script_b64 = base64.b64encode(script.encode('utf-8'))
    input_b64 = base64.b64encode(json.dumps(input_doc, ensure_ascii=False, sort_keys=True).encode('utf-8'))
    return script_b64 + b'\r\n' + input_b64 + b'\r\n'


_CLIXML_STRING = re.compile(r'<S S="Error">(.*?)</S>', re.S)
_CLIXML_ESCAPE = re.compile(r'_x([0-9A-Fa-f]{4})_')
_XML_ENTITIES = (('&lt;', '<'), ('&gt;', '>'), ('&quot;', '"'), ('&apos;', "'"), ('&amp;', '&'))


def decode_clixml(text):
    """Turn PowerShell's CLIXML stderr into the plain error text."""
    if '#< CLIXML' not in text:
        return text.strip()
    parts = []
    for raw in _CLIXML_STRING.findall(text):
        plain = raw
        for entity, char in _XML_ENTITIES:
            plain = plain.replace(entity, char)
        parts.append(_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), plain))
    return ''.join(parts).strip()


def parse_result(stdout):
    """The JSON document between the result markers, or None."""
    start = stdout.rfind(RESULT_BEGIN)
    if start < 0:
        return None
    end = stdout.find(RESULT_END, start)
    if end < 0:
        return None
    payload = stdout[start + len(RESULT_BEGIN):end].strip()
    try:
        return json.loads(base64.b64decode(payload, validate=True).decode('utf-8'))
    except ValueError:
        return None


class _NotStarted(Exception):
    """A connection-level failure before the script was handed over (safe to retry)."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class WinRMClient:
    """Runs constant scripts on one host. ``params`` holds the winrm_* options."""

    def __init__(self, params, sleep=time.sleep, log=None):
        validate_winrm_params(params)
        self.params = params
        self.endpoint = endpoint_url(params)
        self._sleep = sleep
        self._log = log or (lambda msg: None)

    def _protocol(self):
        p = self.params
        kwargs = dict(
            endpoint=self.endpoint,
            transport=p['winrm_transport'],
            username=p.get('winrm_user'),
            password=p.get('winrm_password'),
            server_cert_validation=p.get('winrm_server_cert_validation') or 'validate',
            read_timeout_sec=p['winrm_read_timeout'],
            operation_timeout_sec=p['winrm_operation_timeout'],
            message_encryption=p.get('winrm_message_encryption') or 'auto',
            cert_pem=p.get('winrm_cert_pem'),
            cert_key_pem=p.get('winrm_cert_key_pem'),
            proxy=None,
        )
        # None: the system trust store, not pywinrm's deprecated environment lookup.
        kwargs['ca_trust_path'] = p.get('winrm_ca_trust_path') or None
        return Protocol(**kwargs)

    def run(self, script, input_doc, what, timeout=300):
        """Run ``script`` with ``input_doc``; return the decoded JSON result.

        ``what`` names the action for messages ("run iis_site_swap on web1").
        Connection-level failures before the script started are retried
        (bounded); anything after that is reported, never repeated.
        """
        stdin = encode_stdin(script, input_doc)
        deadline = Deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                stdout, stderr, rc = self._run_once(stdin, deadline, what)
                break
            except _NotStarted as exc:
                if attempt >= CONNECT_ATTEMPTS or deadline.remaining() < 1:
                    raise self._describe(what, exc.cause) from exc.cause
                delay = 0.5 * attempt
                self._log('WinRM %s: %s; retry %d of %d in %.1f s' % (self.endpoint, _short(exc.cause), attempt, CONNECT_ATTEMPTS - 1, delay))
                self._sleep(delay)
            except CanaryError:
                raise
            except Exception as exc:  # pylint: disable=broad-exception-caught
                raise self._describe(what, exc) from exc
        text = stdout.decode('utf-8', errors='replace')
        result = parse_result(text)
        if result is not None:
            return result
        err = decode_clixml(stderr.decode('utf-8', errors='replace'))
        if err or rc != 0:
            raise CanaryError('Failed to %s: PowerShell error (exit code %d): %s' % (what, rc, err or '(no error text)'),
                              exit_code=rc)
        raise CanaryError('Failed to %s: the output is not the expected JSON result: %r' % (what, text[:300]))

    def _run_once(self, stdin, deadline, what):
        protocol = self._protocol()
        try:
            shell_id = protocol.open_shell(codepage=UTF8_CODEPAGE, noprofile=True)
            command_id = protocol.run_command(shell_id, POWERSHELL, list(POWERSHELL_ARGS) + [encode_command(BOOTSTRAP)],
                                              console_mode_stdin=False)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            if _transient(exc):
                raise _NotStarted(exc) from exc
            raise
        try:
            for offset in range(0, len(stdin), STDIN_CHUNK):
                chunk = stdin[offset:offset + STDIN_CHUNK]
                protocol.send_command_input(shell_id, command_id, chunk, end=offset + STDIN_CHUNK >= len(stdin))
            stdout, stderr = [], []
            while True:
                if deadline.expired():
                    raise CanaryError('Failed to %s: no result from %s after %.0f s' % (what, self.endpoint, deadline.elapsed()))
                try:
                    out, err, rc, done = protocol.get_command_output_raw(shell_id, command_id)
                except winrm.exceptions.WinRMOperationTimeoutError:
                    continue
                stdout.append(out)
                stderr.append(err)
                if done:
                    break
            try:
                protocol.cleanup_command(shell_id, command_id)
            except Exception:  # pylint: disable=broad-exception-caught
                pass
            return b''.join(stdout), b''.join(stderr), rc
        finally:
            try:
                protocol.close_shell(shell_id)
            except Exception:  # pylint: disable=broad-exception-caught
                pass

    def _describe(self, what, exc):
        """Plain words for a transport failure; never the password."""
        where = self.endpoint
        if isinstance(exc, winrm.exceptions.InvalidCredentialsError):
            cause = 'the credentials of user %r were rejected by %s (HTTP 401)' % (self.params.get('winrm_user'), where)
            kind = 'credentials'
        elif isinstance(exc, requests.exceptions.SSLError):
            cause = 'TLS validation of %s failed (%s); check winrm_ca_trust_path or winrm_server_cert_validation' % (where, _short(exc))
            kind = 'tls'
        elif isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout)):
            cause = 'host timed out at %s (%s)' % (where, _short(exc))
            kind = 'timeout'
        elif isinstance(exc, requests.exceptions.ConnectionError):
            cause = 'host unreachable at %s (%s)' % (where, _short(exc))
            kind = 'unreachable'
        elif isinstance(exc, winrm.exceptions.WSManFaultError):
            cause = 'WinRM at %s refused the request: %s' % (where, exc.reason)
            kind = 'wsman_fault'
        elif isinstance(exc, winrm.exceptions.WinRMTransportError):
            cause = 'WinRM at %s answered HTTP %s' % (where, exc.code)
            kind = 'http'
        else:
            cause = '%s: %s' % (type(exc).__name__, _short(exc))
            kind = 'winrm'
        return CanaryError('Failed to %s: %s' % (what, _scrub(cause, self.params.get('winrm_password'))), winrm_error=kind)


def _transient(exc):
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    return isinstance(exc, winrm.exceptions.WinRMTransportError) and exc.code in (502, 503, 504)


def _short(exc):
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + '...'


def _scrub(text, secret):
    if secret:
        text = text.replace(secret, '********')
    return text
