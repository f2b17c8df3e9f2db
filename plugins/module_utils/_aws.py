# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS connection: argument spec, boto3 session and clients, error wording.

The option names and environment variables follow amazon.aws so existing
``module_defaults`` and credentials keep working; this collection talks to
boto3 itself and depends on no other collection.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

try:
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised by ansible-test import sanity
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = exc

USER_AGENT = 'immune.canary/0.1.0'

# Error codes AWS returns when the credentials, not the request, are wrong.
CREDENTIAL_ERROR_CODES = frozenset((
    'AuthFailure', 'ExpiredToken', 'ExpiredTokenException', 'IncompleteSignature', 'InvalidClientTokenId',
    'MissingAuthenticationToken', 'SignatureDoesNotMatch', 'UnrecognizedClientException', 'AccessDenied',
    'AccessDeniedException', 'UnauthorizedOperation',
))

AWS_ARGUMENT_SPEC = dict(
    region=dict(type='str', aliases=['aws_region', 'ec2_region'],
                fallback=(env_fallback, ['AWS_REGION', 'AWS_DEFAULT_REGION', 'EC2_REGION'])),
    profile=dict(type='str', aliases=['aws_profile'], fallback=(env_fallback, ['AWS_PROFILE', 'AWS_DEFAULT_PROFILE'])),
    access_key=dict(type='str', aliases=['aws_access_key_id', 'aws_access_key', 'ec2_access_key'], no_log=False,
                    fallback=(env_fallback, ['AWS_ACCESS_KEY_ID', 'AWS_ACCESS_KEY', 'EC2_ACCESS_KEY'])),
    secret_key=dict(type='str', aliases=['aws_secret_access_key', 'aws_secret_key', 'ec2_secret_key'], no_log=True,
                    fallback=(env_fallback, ['AWS_SECRET_ACCESS_KEY', 'AWS_SECRET_KEY', 'EC2_SECRET_KEY'])),
    session_token=dict(type='str', aliases=['aws_session_token', 'security_token'], no_log=True,
                       fallback=(env_fallback, ['AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'EC2_SECURITY_TOKEN'])),
    endpoint_url=dict(type='str', aliases=['aws_endpoint_url'], fallback=(env_fallback, ['AWS_URL', 'EC2_URL'])),
    validate_certs=dict(type='bool', default=True),
    aws_ca_bundle=dict(type='path', fallback=(env_fallback, ['AWS_CA_BUNDLE'])),
)

# A profile names its own credentials; explicit keys would silently win.
AWS_MUTUALLY_EXCLUSIVE = [
    ['profile', 'access_key'],
    ['profile', 'secret_key'],
    ['profile', 'session_token'],
]


def aws_argument_spec(**extra):
    """The shared AWS options plus a module's own."""
    spec = dict(AWS_ARGUMENT_SPEC)
    spec.update(extra)
    return spec


def validate_endpoint_url(endpoint, example='https://autoscaling.eu-west-1.amazonaws.com'):
    """Refuse an endpoint_url that is not an http(s) URL with a host, naming the option."""
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ('http', 'https') or not parts.hostname or port == 0:
        raise CanaryError('Invalid value for option endpoint_url: %r; expected an http:// or https:// URL with a host, such as %s'
                          % (endpoint, example))


def aws_session(params):
    """A boto3 session from the module parameters (unset = boto3's chain)."""
    try:
        return boto3.session.Session(
            aws_access_key_id=params.get('access_key') or None,
            aws_secret_access_key=params.get('secret_key') or None,
            aws_session_token=params.get('session_token') or None,
            profile_name=params.get('profile') or None,
            region_name=params.get('region') or None,
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise CanaryError('Failed to open AWS session: profile %r not found' % params.get('profile')) from exc


def aws_client(params, service, max_attempts=6, retry_mode='standard', session=None):
    """A boto3 client with bounded, selective retries (throttling, 5xx, resets)."""
    session = session or aws_session(params)
    if not session.region_name:
        raise CanaryError('Failed to create %s client: no region; set the region option or AWS_REGION' % service)
    # validate_certs=false wins over a CA bundle (AWS_CA_BUNDLE is often set globally).
    verify = False if not params.get('validate_certs', True) else (params.get('aws_ca_bundle') or True)
    config = Config(
        retries={'mode': retry_mode, 'max_attempts': max_attempts},
        user_agent_extra=USER_AGENT,
        connect_timeout=10,
        read_timeout=30,
    )
    try:
        return session.client(service, endpoint_url=params.get('endpoint_url') or None, verify=verify, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise CanaryError('Failed to create %s client: %s' % (service, exc)) from exc


def error_code(exc):
    """The AWS error code of a ClientError, else None."""
    if isinstance(exc, ClientError):
        return exc.response.get('Error', {}).get('Code')
    return None


def describe_aws_error(action, exc):
    """Turn a botocore exception into a CanaryError worded for users.

    ``action`` is "<verb> <object>", e.g. "deregister i-0abc from web-tg".
    botocore's messages never carry the secret key; we add nothing that could.
    """
    if isinstance(exc, NoCredentialsError):
        return CanaryError('Failed to %s: no AWS credentials found (options, environment, profile or instance role)' % action)
    if isinstance(exc, NoRegionError):
        return CanaryError('Failed to %s: no AWS region configured' % action)
    code = error_code(exc)
    if code is not None:
        message = exc.response.get('Error', {}).get('Message') or str(exc)
        if code in CREDENTIAL_ERROR_CODES:
            return CanaryError('Failed to %s: AWS rejected the credentials (%s: %s)' % (action, code, message), error_code=code)
        return CanaryError('Failed to %s: %s: %s' % (action, code, message), error_code=code)
    return CanaryError('Failed to %s: %s' % (action, exc))
