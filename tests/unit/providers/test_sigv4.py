import pytest

from addon.providers.sigv4 import AwsCredentials, access_key, region_in, sign, signed
from tests.support.sigv4 import scope, valid

KEYS = AwsCredentials.from_keys("AKIAOPERATOR00000000", "operator-secret")
PATH = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
BODY = b'{"messages": [{"role": "user", "content": "hi"}], "tools": []}'
CLIENT = [
    ("content-type", "application/json"),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKIACLIENT/20261203/us-east-1/bedrock/aws4_request, x"),
    ("x-amz-date", "20261203T000000Z"),
    ("x-amz-security-token", "client-session"),
    ("x-amz-content-sha256", "0" * 64),
]


def test_a_signature_is_recognized_by_its_scheme_and_names_its_access_key() -> None:
    assert signed(CLIENT) and not signed([("authorization", "Bearer ABSK")])
    assert access_key(CLIENT[1][1]) == "AKIACLIENT"
    assert access_key("AWS4-HMAC-SHA256 x") == "AWS4-HMAC-SHA256 x"  # malformed: still the client's own
    assert access_key("Bearer x") is None


@pytest.mark.parametrize(
    ("pattern", "host", "region"),
    [
        ("bedrock-runtime.*.amazonaws.com", "bedrock-runtime.eu-west-1.amazonaws.com", "eu-west-1"),
        ("bedrock-mantle.*.api.aws", "BEDROCK-MANTLE.us-west-2.api.aws", "us-west-2"),
        ("bedrock-runtime.*.amazonaws.com", "bedrock-runtime.a.b.amazonaws.com", None),
        ("bedrock-runtime.*.amazonaws.com", "example.com", None),
        ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock-runtime.us-east-1.amazonaws.com", None),
    ],
)
def test_the_region_is_the_hosts_star(pattern: str, host: str, region: str | None) -> None:
    assert region_in(pattern, host) == region


def test_signing_replaces_the_clients_signature_with_one_botocore_accepts_for_the_body() -> None:
    headers = sign(KEYS, "bedrock", "us-east-1", "POST", "127.0.0.1:8443", PATH, CLIENT, BODY)
    names = [n.lower() for n, _ in headers]
    assert names.count("authorization") == 1 and "x-amz-security-token" not in names
    assert "x-amz-content-sha256" not in names  # it would claim the old body's hash
    assert ("content-type", "application/json") in headers  # everything else kept, in order
    sent = [*headers, ("host", "127.0.0.1:8443")]
    s = scope(dict((n.lower(), v) for n, v in headers)["authorization"])
    assert (s["key"], s["region"], s["service"]) == ("AKIAOPERATOR00000000", "us-east-1", "bedrock")
    assert valid("POST", PATH, sent, BODY, "operator-secret")
    assert not valid("POST", PATH, sent, BODY + b" ", "operator-secret")  # a changed body
    assert not valid("POST", PATH.replace("%3A", ":"), sent, BODY, "operator-secret")  # the path as sent
    assert not valid("POST", PATH, sent, BODY, "another-secret")


def test_a_session_token_is_sent_and_signed() -> None:
    temporary = AwsCredentials.from_keys("ASIATEMPORARY0000000", "temp-secret", "the-session", "eu-west-1")
    headers = sign(temporary, "bedrock-mantle", "eu-west-1", "POST", "h.example", "/anthropic/v1/messages", [], BODY)
    by_name = dict(headers)
    assert by_name["X-Amz-Security-Token"] == "the-session"
    assert "x-amz-security-token" in scope(by_name["Authorization"])["signed"].split(";")
    assert valid("POST", "/anthropic/v1/messages", [*headers, ("host", "h.example")], BODY, "temp-secret")


def test_a_profile_gives_its_credentials_and_an_unknown_one_says_so(tmp_path, monkeypatch) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[bridge]\naws_access_key_id = AKIAPROFILE000000000\naws_secret_access_key = s3cret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    assert AwsCredentials.from_profile("bridge").access_key_id == "AKIAPROFILE000000000"
    with pytest.raises(ValueError, match="AWS profile 'nope'"):
        AwsCredentials.from_profile("nope")
    assert "s3cret" not in repr(AwsCredentials.from_profile("bridge"))


def test_the_signing_region_is_the_upstreams_where_it_names_one() -> None:
    from addon.config import parse_config
    from addon.providers.routing import classify

    config = parse_config({"providers": {"bedrock": {"upstream": "https://bedrock-runtime.eu-west-1.amazonaws.com"}}})
    route = classify(config, "bedrock-runtime.us-east-1.amazonaws.com", "POST", PATH)
    assert route is not None
    headers = route.sign(KEYS, "POST", PATH, [], BODY)
    assert scope(dict(headers)["Authorization"])["region"] == "eu-west-1"  # where the call goes
