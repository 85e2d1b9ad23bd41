"""AWS SigV4: whether a request is signed (its signature covers the body's hash, so the body may not change),
and signing one with the credentials an operator gives a provider, by botocore's own signer.

Pure but for reading a named profile's credentials when the configuration is loaded.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

Headers = Sequence[tuple[str, str]]

SCHEME = "AWS4-HMAC-SHA256"
SIGNATURE_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})
"""A client's signature and what it signs with: dropped where the bridge signs instead."""
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def signed(headers: Headers) -> bool:
    """Whether an AWS SigV4 signature authorizes the request."""
    return any(n.lower() == "authorization" and v.lstrip().startswith(SCHEME) for n, v in headers)


def access_key(authorization: str) -> str | None:
    """The access key id a SigV4 `authorization` names (the signature itself if it names none), else None."""
    value = authorization.strip()
    if not value.startswith(SCHEME):
        return None
    m = _CREDENTIAL.search(value)
    return m.group(1) if m else value


def region_in(pattern: str, host: str) -> str | None:
    """The region a host names where its family's pattern has it as the `*`: `bedrock-runtime.*.amazonaws.com`
    and `bedrock-runtime.eu-west-1.amazonaws.com` give `eu-west-1`."""
    if pattern.count("*") != 1:
        return None
    before, after = pattern.split("*")
    m = re.fullmatch(f"{re.escape(before)}([a-z0-9-]+){re.escape(after)}", host.lower())
    return m.group(1) if m else None


@dataclass(frozen=True, eq=False)
class AwsCredentials:
    """The operator's AWS credentials for a provider: given keys, or a profile's (botocore refreshes
    temporary ones: SSO, assumed roles, instance and container roles)."""

    source: Credentials = field(repr=False)
    region: str | None = None
    """The signing region; None: the one the request's host names."""
    access_key_id: str = ""
    """As the credentials were loaded (the audit's masked hint): reading them later may mean a refresh."""

    @classmethod
    def from_keys(
        cls, access_key_id: str, secret_access_key: str, session_token: str | None = None, region: str | None = None
    ) -> "AwsCredentials":
        return cls(Credentials(access_key_id, secret_access_key, session_token), region, access_key_id)

    @classmethod
    def from_profile(cls, profile: str, region: str | None = None) -> "AwsCredentials":
        """A named profile's credentials, as the AWS CLI reads them (`~/.aws/credentials`, `~/.aws/config`,
        `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`); ValueError when it has none."""
        try:
            credentials = botocore.session.Session(profile=profile).get_credentials()
        except BotoCoreError as e:
            raise ValueError(f"AWS profile {profile!r}: {e}") from None
        if credentials is None:
            raise ValueError(f"AWS profile {profile!r} has no credentials")
        try:
            key_id = credentials.get_frozen_credentials().access_key
        except Exception as e:  # boundary: botocore's refresh (SSO, STS) raises many kinds
            raise ValueError(f"AWS profile {profile!r}: its credentials cannot be read: {e}") from None
        return cls(credentials, region, key_id)


def sign(
    credentials: AwsCredentials,
    service: str,
    region: str,
    method: str,
    host: str,
    path: str,
    headers: Headers,
    body: bytes,
) -> list[tuple[str, str]]:
    """`headers` with any signature the client made replaced by one from `credentials`, over the method, the
    host (as the Host header will say it), the path and query as sent (never re-encoded), and the body."""
    request = AWSRequest(method=method, url=f"https://{host}{path}", data=body, headers={"host": host})
    SigV4Auth(credentials.source.get_frozen_credentials(), service, region).add_auth(request)
    kept = [(n, v) for n, v in headers if n.lower() not in SIGNATURE_HEADERS]
    return [*kept, *((n, v) for n, v in request.headers.items() if n.lower() != "host")]
