"""A WS-Management test double that speaks the subset pywinrm uses.

Create (shell), Command, Send (stdin), Receive, Signal and Delete over
HTTP(S) with Basic auth (401 on bad credentials). The command must be
``powershell.exe ... -EncodedCommand <our bootstrap>``; the two stdin lines
are the base64 script and the base64 JSON input. The script is recognised
by its header line and run against an :class:`iis_sim.SimHost` - the
simulated semantics live there, not here.

Before running a script the double asserts that no string value of the
input document appears in the script's code (values travel as data only;
the element and attribute names of an IIS configuration tree are schema
words, not values) and that the script is one of the constants of
``_iis_scripts`` byte for byte; a violation is answered with a PowerShell
error and recorded in ``violations``.

Many hosts in one process: each host may get its own listener (for
example 127.0.10.x in the lab), and one shared listener routes by the
HTTP Host header (the ``winrm_host`` the client used).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
import xml.etree.ElementTree as ET

from doubles.iis_sim import SimHost
from support import servers

NS = {
    's': 'http://www.w3.org/2003/05/soap-envelope',
    'a': 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
    'w': 'http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd',
    'rsp': 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell',
}
SHELL = 'http://schemas.microsoft.com/wbem/wsman/1/windows/shell'
ACTION_CREATE = 'http://schemas.xmlsoap.org/ws/2004/09/transfer/Create'
ACTION_DELETE = 'http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete'
ACTION_COMMAND = SHELL + '/Command'
ACTION_SEND = SHELL + '/Send'
ACTION_RECEIVE = SHELL + '/Receive'
ACTION_SIGNAL = SHELL + '/Signal'

HEADERS = {
    '# immune.canary:iis_site_swap/2': 'run_site_swap',
    '# immune.canary:iis_package/1': 'run_package',
}


def _envelope(action, relates_to, body):
    return ('<s:Envelope xmlns:s="%s" xmlns:a="%s" xmlns:w="%s" xmlns:rsp="%s" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
            '<s:Header><a:Action>%s</a:Action><a:MessageID>uuid:%s</a:MessageID><a:RelatesTo>%s</a:RelatesTo></s:Header>'
            '<s:Body>%s</s:Body></s:Envelope>') % (NS['s'], NS['a'], NS['w'], NS['rsp'], action + 'Response', uuid.uuid4(), relates_to, body)


def _clixml_error(text):
    escaped = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('\r', '_x000D_').replace('\n', '_x000A_')
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<S S="Error">%s_x000D__x000A_</S></Objs>' % escaped).encode('utf-8')


def string_values(value):
    """Every string (keys included) in a JSON document, except the names of IIS's
    configuration schema in a configuration tree (its element tags and attribute
    names): every value of a tree is still checked."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        tree = 'tag' in value and isinstance(value.get('attrs'), dict)
        for k, v in value.items():
            if tree and k == 'tag':
                continue
            yield k
            if tree and k == 'attrs':
                for inner in v.values():
                    yield from string_values(inner)
                continue
            yield from string_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from string_values(v)


def code_of(script):
    """The script without its full-line comments (a comment runs nothing; a value
    spliced into one with a line break would put its next line in the code)."""
    return '\n'.join(line for line in script.split('\n') if not line.lstrip().startswith('#'))


def constant_scripts():
    from ansible_collections.immune.canary.plugins.module_utils import _iis_scripts
    return set(_iis_scripts.SCRIPTS.values())


class WinRMDouble:
    """Hosts by name; listeners; credentials; recorded scripts."""

    def __init__(self, user='canary', password='s3cret-Pa55', bootstrap=None):
        from ansible_collections.immune.canary.plugins.module_utils import _winrm
        self.user = user
        self.password = password
        self.bootstrap = bootstrap or _winrm.BOOTSTRAP
        self.result_markers = (_winrm.RESULT_BEGIN, _winrm.RESULT_END)
        self.constant_scripts = constant_scripts()
        self.hosts = {}
        self.shells = {}
        self.violations = []
        self.requests = 0
        self.commands = []  # per command: command line length and number of Send operations
        self._lock = threading.Lock()
        self._listeners = []

    def add_host(self, name):
        host = SimHost(name)
        self.hosts[name] = host
        return host

    # -- listeners -------------------------------------------------------
    def listen(self, host=None, address='127.0.0.1', port=0, tls_context=None):
        """Start a listener; with ``host`` every request goes to that host,
        without it the HTTP Host header picks the host. Returns the Running."""
        double = self

        class Handler(WSManHandler):
            pass

        Handler.double = double
        Handler.fixed_host = host
        running = servers.start(Handler, host=address, port=port, tls_context=tls_context)
        self._listeners.append(running)
        return running

    def stop(self):
        while self._listeners:
            self._listeners.pop().stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- the protocol ------------------------------------------------------
    def handle(self, host, body):
        root = ET.fromstring(body)
        header = root.find('s:Header', NS)
        action = header.find('a:Action', NS).text
        message_id = header.find('a:MessageID', NS).text
        selector = header.find('w:SelectorSet/w:Selector', NS)
        shell_id = selector.text if selector is not None else None
        soap_body = root.find('s:Body', NS)
        if action == ACTION_CREATE:
            shell_id = str(uuid.uuid4()).upper()
            with self._lock:
                self.shells[shell_id] = {'host': host.name, 'commands': {}}
            return _envelope(action, message_id,
                             '<x:ResourceCreated><a:Address>http://localhost/wsman</a:Address><a:ReferenceParameters>'
                             '<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>'
                             '<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet>'
                             '</a:ReferenceParameters></x:ResourceCreated>' % shell_id)
        shell = self.shells.get(shell_id)
        if shell is None:
            raise KeyError('unknown shell %s' % shell_id)
        if action == ACTION_DELETE:
            with self._lock:
                self.shells.pop(shell_id, None)
            return _envelope(action, message_id, '')
        if action == ACTION_COMMAND:
            line = soap_body.find('rsp:CommandLine', NS)
            command_id = str(uuid.uuid4()).upper()
            self.commands.append({'command_line': len(line.find('rsp:Command', NS).text) + len(line.findtext('rsp:Arguments', '', NS) or ''),
                                  'sends': 0})
            shell['commands'][command_id] = {
                'record': self.commands[-1],
                'command': line.find('rsp:Command', NS).text,
                'arguments': (line.findtext('rsp:Arguments', '', NS) or '').split(),
                'stdin': bytearray(), 'output': None,
            }
            return _envelope(action, message_id, '<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>' % command_id)
        if action == ACTION_SEND:
            stream = soap_body.find('rsp:Send/rsp:Stream', NS)
            command = shell['commands'][stream.get('CommandId')]
            command['stdin'] += base64.b64decode(stream.text or '')
            command['record']['sends'] += 1
            if stream.get('End') == 'true':
                command['output'] = self.execute(host, command)
            return _envelope(action, message_id, '<rsp:SendResponse/>')
        if action == ACTION_RECEIVE:
            command_id = soap_body.find('rsp:Receive/rsp:DesiredStream', NS).get('CommandId')
            command = shell['commands'][command_id]
            if command['output'] is None:  # stdin still open: nothing ran yet
                command['output'] = self.execute(host, command)
            stdout, stderr, rc = command['output']
            streams = ''.join('<rsp:Stream Name="%s" CommandId="%s">%s</rsp:Stream>' % (name, command_id, base64.b64encode(data).decode())
                              for name, data in (('stdout', stdout), ('stderr', stderr)) if data)
            return _envelope(action, message_id,
                             '<rsp:ReceiveResponse>%s<rsp:Stream Name="stdout" CommandId="%s" End="true"></rsp:Stream>'
                             '<rsp:CommandState CommandId="%s" State="%s/CommandState/Done"><rsp:ExitCode>%d</rsp:ExitCode>'
                             '</rsp:CommandState></rsp:ReceiveResponse>' % (streams, command_id, command_id, SHELL, rc))
        if action == ACTION_SIGNAL:
            command_id = soap_body.find('rsp:Signal', NS).get('CommandId')
            shell['commands'].pop(command_id, None)
            return _envelope(action, message_id, '<rsp:SignalResponse/>')
        raise KeyError('unsupported action %s' % action)

    def execute(self, host, command):
        """Run what the client sent; returns (stdout, stderr, exit code)."""
        args = command['arguments']
        if command['command'].lower() != 'powershell.exe' or '-EncodedCommand' not in args:
            return b'', _clixml_error('The double only runs powershell.exe -EncodedCommand, got %r' % command['command']), 1
        bootstrap = base64.b64decode(args[args.index('-EncodedCommand') + 1]).decode('utf-16-le')
        if bootstrap != self.bootstrap:
            return b'', _clixml_error('unknown bootstrap'), 1
        lines = bytes(command['stdin']).decode('ascii').split('\r\n')
        script = base64.b64decode(lines[0]).decode('utf-8')
        doc = json.loads(base64.b64decode(lines[1]).decode('utf-8'))
        first = script.split('\n', 1)[0].strip()
        host.scripts.append((first, script, doc))
        code = code_of(script)
        leaked = sorted({v for v in string_values(doc) if len(v) >= 3 and v in code and v not in SAFE_WORDS})
        runner = HEADERS.get(first)
        if not leaked and runner is not None and script not in self.constant_scripts:
            leaked = ['(the script is not one of the constants of _iis_scripts)']
        if leaked:
            self.violations.append((first, leaked))
            return b'', _clixml_error('input value(s) found in the script text: %r' % leaked), 1
        if runner is None:
            return b'', _clixml_error('unknown script %r' % first), 1
        if host.fault == 'garbage':
            return b'Get-Website : not what the client expects\r\n', b'', 0
        result = getattr(host, runner)(doc)
        payload = base64.b64encode(json.dumps(result, ensure_ascii=False).encode('utf-8')).decode('ascii')
        begin, end = self.result_markers
        return ('WARNING: stray output before the result\r\n%s%s%s\r\n' % (begin, payload, end)).encode('utf-8'), b'', 0


# Words of the input protocol itself that naturally appear in the script,
# and names from IIS's configuration schema (element and attribute names, the
# text of booleans) that the script may name as well: none is a user's value.
SAFE_WORDS = {
    'app', 'sites', 'checks', 'certificates', 'tree', 'tag', 'attrs', 'children', 'copy_secret', 'secret_values', 'from', 'kind', 'steps',
    'attributes', 'source', 'section', 'location', 'override_mode', 'set_section', 'remove_section', 'remove_location', 'pool', 'site', 'true', 'false',
    'add', 'application', 'virtualDirectory', 'binding', 'bindingInformation', 'applicationPool', 'physicalPath', 'sslFlags',
    'certificateHash', 'certificateStoreName', 'serverAutoStart', 'password', 'processModel', 'identityType', 'userName', 'idleTimeout',
    'startMode', 'managedRuntimeVersion', 'managedPipelineMode', 'preloadEnabled', 'applicationDefaults', 'overrideMode', 'clear', 'remove',
    'query', 'apply', 'operation', 'actions', 'wait_timeout', 'name', 'op', 'bindings', 'protocol', 'https', 'http', 'port', 'host_header',
    'certificate_thumbprint', 'certificate_store', 'sni', 'physical_path', 'app_pool', 'preload_enabled', 'managed_runtime', 'pipeline_mode',
    'identity', 'start_mode', 'idle_timeout', 'path', 'state', 'url', 'checksum', 'dest', 'headers', 'validate_certs', 'timeout',
    'check_mode', 'present', 'absent', 'create_pool', 'set_pool', 'create_site', 'set_site', 'set_bindings', 'stop_site', 'stop_pool',
    'start_pool', 'start_site', 'remove_site', 'remove_pool', 'remove_content', 'v4.0', 'v2.0', 'Integrated', 'Classic',
    'ApplicationPoolIdentity', 'NetworkService', 'LocalService', 'LocalSystem', 'AlwaysRunning', 'OnDemand',
}


class WSManHandler(servers.QuietHandler):
    double = None
    fixed_host = None

    def _host(self):
        if self.fixed_host is not None:
            return self.double.hosts[self.fixed_host]
        name = (self.headers.get('Host') or '').rsplit(':', 1)[0].strip('[]')
        return self.double.hosts.get(name)

    def do_POST(self):  # noqa: N802 - stdlib name
        double = self.double
        double.requests += 1
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length)
        host = self._host()
        if host is None:
            return self._reply(404, b'no such host')
        if host.fault == 'down':
            self.close_connection = True
            self.connection.close()
            return None
        expected = 'Basic ' + base64.b64encode(('%s:%s' % (double.user, double.password)).encode()).decode()
        if host.fault == 'auth' or self.headers.get('Authorization') != expected:
            return self._reply(401, b'', {'WWW-Authenticate': 'Basic realm="WSMAN"'})
        if self.path != '/wsman':
            return self._reply(404, b'')
        try:
            answer = double.handle(host, body)
        except Exception as exc:  # answered as a SOAP fault, the way WinRM reports errors
            fault = ('<s:Envelope xmlns:s="%s"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>'
                     '<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>'
                     % (NS['s'], str(exc).replace('&', '&amp;').replace('<', '&lt;')))
            return self._reply(500, fault.encode())
        return self._reply(200, answer.encode('utf-8'))

    def _reply(self, code, body, headers=None):
        self.send_response(code)
        self.send_header('Content-Type', 'application/soap+xml;charset=UTF-8')
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def client_params(double, running, **overrides):
    """winrm_* options that reach ``running`` (a listener of ``double``)."""
    params = dict(winrm_host=running.host, winrm_port=running.port, winrm_scheme=running.url.split(':', 1)[0], winrm_transport='basic',
                  winrm_user=double.user, winrm_password=double.password, winrm_cert_pem=None, winrm_cert_key_pem=None,
                  winrm_server_cert_validation='validate', winrm_ca_trust_path=None, winrm_operation_timeout=5, winrm_read_timeout=10,
                  winrm_message_encryption='auto')
    params.update(overrides)
    return params
