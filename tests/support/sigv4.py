"""Checking a SigV4 signature as AWS does, with botocore's own signer: recompute it over what the upstream
received (the headers its `SignedHeaders` lists, the path as sent, the body) and compare."""

import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


def scope(authorization: str) -> dict[str, str]:
    """The access key, date, region, service, signed headers and signature an `authorization` header names."""
    m = _AUTH.fullmatch(authorization.strip())
    assert m, f"not a SigV4 authorization: {authorization!r}"
    return m.groupdict()


def valid(method: str, path: str, headers: list[tuple[str, str]], body: bytes, secret_key: str) -> bool:
    """Whether the request's signature is one `secret_key` makes for exactly these bytes."""
    by_name = {n.lower(): v for n, v in headers}
    s = scope(by_name["authorization"])
    signed = s["signed"].split(";")
    assert "host" in signed and "x-amz-date" in signed, f"host and x-amz-date must be signed: {signed}"
    request = AWSRequest(
        method=method, url=f"https://{by_name['host']}{path}", data=body, headers={h: by_name[h] for h in signed}
    )
    request.context["timestamp"] = by_name["x-amz-date"]
    signer = SigV4Auth(
        Credentials(s["key"], secret_key, by_name.get("x-amz-security-token")), s["service"], s["region"]
    )
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return hmac.compare_digest(expected, s["signature"])
