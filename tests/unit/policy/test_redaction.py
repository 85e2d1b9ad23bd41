"""The secret redactor (addon/policy/redaction.py): each kind of fake secret found and replaced, ordinary code,
hashes, ids and placeholders left byte for byte, operator patterns, overlaps, and JSON bodies rewritten only
where the secret's bytes were, whatever their escaping.

Every fake secret is built from parts, so this file holds no key-shaped literal for scanners to flag."""

import base64
import hashlib
import itertools
import json
import uuid

import pytest

from addon.config import TOKEN_PREFIX
from addon.policy.redaction import BRIDGE_PREFIX, REDACTED, Finding, Redactor

R = Redactor()


def filler(seed: str, n: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") -> str:
    """n deterministic characters from alphabet (fixed, so no run can draw a string that looks like a key)."""
    out, block = [], seed.encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += [alphabet[b % len(alphabet)] for b in block]
    return "".join(out[:n])


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


HEX = "0123456789abcdef"
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
JWT = b64url({"alg": "HS256", "typ": "JWT"}) + "." + b64url({"sub": "1234567890", "iat": 1516239022}) + "."
JWT += filler("jwt", 43, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
PEM_BODY = "\n".join(
    filler(f"pem{i}", 64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for i in range(4)
)
PRIVATE_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA " + "PRIVATE KEY-----"
OPENSSH_KEY = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END OPENSSH " + "PRIVATE KEY-----"
ANTHROPIC = "sk-ant-" + "api03-" + filler("ant", 93, HEX + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") + "AA"

# (kind, text before, the secret, text after): the secret alone becomes [REDACTED:kind]
CORPUS = [
    ("aws-access-key", "aws_access_key_id = ", AWS_ID, "\n"),
    ("aws-secret-key", "aws_secret_access_key = ", AWS_SECRET, "\n"),
    ("aws-secret-key", 'client = boto3.client("s3", aws_secret_key="', AWS_SECRET, '")'),
    ("anthropic-key", "ANTHROPIC_API_KEY=", ANTHROPIC, "\n"),
    ("anthropic-key", "x-api-key: ", "sk-ant-" + "admin01-" + filler("adm", 80, HEX + "XYZ_-") + "AA", "\n"),
    ("openai-key", "OPENAI_API_KEY=", "sk-" + "proj-" + filler("proj", 120, HEX + "ABCDEFXYZ_-"), "\n"),
    ("openai-key", 'key = "', "sk-" + "svcacct-" + filler("svc", 100, HEX + "QRSTU_-"), '"'),
    ("openai-key", "openai.api_key = '", "sk-" + filler("classic", 48), "'"),
    ("openai-key", "key: ", "sk-" + filler("t3a", 20) + "T3Blbk" + "FJ" + filler("t3b", 20), "\n"),
    ("google-api-key", "https://maps.googleapis.com/maps/api/js?key=", "AIza" + filler("g", 35), "&v=3"),
    ("github-token", "git clone https://x-access-token:", "ghp_" + filler("gh", 36), "@github.com/o/r.git"),
    ("github-token", "Authorization: token ", "github_pat_" + filler("pat1", 22) + "_" + filler("pat2", 59), "\n"),
    ("gitlab-token", "PRIVATE-TOKEN: ", "glpat-" + filler("gl", 20), "\n"),
    ("slack-token", "slack = ", "xoxb-" + "1234567890-1234567890123-" + filler("sl", 24), "\n"),
    (
        "slack-webhook",
        "url = ",
        "https://hooks.slack.com/services/T" + "0ABCDEFG/B0ABCDEFG/" + filler("hook", 24),
        "\n",
    ),
    ("stripe-key", "Stripe.api_key = ", "sk_" + "live_" + filler("st", 99), "\n"),
    ("stripe-key", "STRIPE=", "rk_" + "test_" + filler("st2", 30), "\n"),
    (
        "huggingface-token",
        "HF_TOKEN=",
        "hf_" + filler("hf", 34, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
        "\n",
    ),
    ("npm-token", "//registry.npmjs.org/:_authToken=", "npm_" + filler("npm", 36), "\n"),
    ("npm-token", "//npm.example.com/:_authToken=", filler("npmhex", 36, HEX + "-"), "\n"),
    ("sendgrid-key", "SENDGRID=", "SG." + filler("sg1", 22) + "." + filler("sg2", 43), "\n"),
    ("pypi-token", "password = ", "pypi-" + "AgEIcHlwaS5vcmc" + filler("pypi", 80), "\n"),
    ("telegram-token", "bot = Bot(", "123456789:" + filler("tg", 35), ")"),
    ("discord-token", "client.run(", "M" + filler("dc1", 23) + "." + filler("dc2", 6) + "." + filler("dc3", 27), ")"),
    ("twilio-key", "TWILIO_API_KEY_SID ", "SK" + filler("tw", 32, HEX), "\n"),
    ("mailchimp-key", "mc ", filler("mc", 32, HEX) + "-us12", "\n"),
    ("square-oauth", "square ", "sq0csp-" + filler("sq", 43), "\n"),
    ("azure-storage-key", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=", filler("az", 86) + "==", ";"),
    ("jwt", "cookie: session=", JWT, "; Path=/"),
    ("private-key", "key file:\n", PRIVATE_KEY, "\nend of file"),
    ("private-key", "", OPENSSH_KEY, "\n"),
    ("url-password", "DATABASE_URL=postgres://app:", "Tr0ub4dor-3x", "@db.internal:5432/app"),
    ("url-password", "redis = 'redis://default:", "q7Lr2mXp9Vb", "@cache:6379/0'"),
    ("bearer-token", "curl -H 'Authorization: Bearer ", filler("bearer", 40) + "1", "' https://api.example.com"),
    ("basic-auth", "Authorization: Basic ", base64.b64encode(b"alice:s3cret-pw").decode(), "\n"),
    ("password", 'password = "', "hunter2x", '"'),
    ("password", "DB_PASSWORD=", "s3cr3t!Pw", "\n"),
    ("password", "  passwd: '", "P@ssw0rd-2024", "'\n"),
    ("password", '{"dbPassword": "', "c0rrect-h0rse", '"}'),
    ("secret", 'client_secret = "', filler("cs", 32), '"'),
    ("secret", "GITHUB_WEBHOOK_SECRET=", filler("wh", 40, HEX), "\n"),
    ("secret", "refreshToken: ", filler("rt", 48), "\n"),
    ("secret", "https://api.example.com/v1/items?access_token=", filler("at", 32), "&page=2"),
    (
        "bridge-token",
        "HTTPS_PROXY=http://alice:",
        TOKEN_PREFIX + filler("aib", 43, "ABCDEFabcdef0123456789_-"),
        "@proxy:8080",
    ),
]


@pytest.mark.parametrize(("kind", "before", "secret", "after"), CORPUS, ids=[c[0] for c in CORPUS])
def test_each_kind_is_found_and_replaced(kind: str, before: str, secret: str, after: str) -> None:
    text = before + secret + after
    assert R.find(text) == [Finding(kind, len(before), len(before) + len(secret))]
    assert R.redact(text) == (before + REDACTED.format(kind=kind) + after, (kind,))


def test_an_aws_secret_next_to_its_key_id_is_found_without_a_keyword() -> None:
    text = f"here are the creds: {AWS_ID}, {AWS_SECRET} (rotate them)"
    assert R.redact(text) == (
        "here are the creds: [REDACTED:aws-access-key], [REDACTED:aws-secret-key] (rotate them)",
        ("aws-access-key", "aws-secret-key"),
    )


def test_a_truncated_private_key_is_redacted_to_the_end_of_its_body() -> None:
    text = "-----BEGIN " + "PRIVATE KEY-----\n" + PEM_BODY[:130]
    assert R.redact(text) == ("[REDACTED:private-key]", ("private-key",))


def test_many_secrets_in_one_text_each_replaced_and_kinds_sorted_unique() -> None:
    text = f"a={AWS_ID}\nb={ANTHROPIC}\nc={AWS_ID}\n"
    assert R.redact(text) == (
        "a=[REDACTED:aws-access-key]\nb=[REDACTED:anthropic-key]\nc=[REDACTED:aws-access-key]\n",
        ("anthropic-key", "aws-access-key"),
    )


def test_a_recorded_json_body_searched_as_text_finds_secrets_after_escaped_newlines() -> None:
    """The audit writer redacts bodies as text: there a line starts after the two characters `\\n`."""
    text = json.dumps({"content": f"x\n{AWS_ID}\n{AWS_SECRET}\nghp_{filler('gh', 36)}\npassword=hunter2x!\n"})
    assert R.redact(text)[1] == ("aws-access-key", "aws-secret-key", "github-token", "password")


def sha(name: str, algo: str = "sha256") -> str:
    return hashlib.new(algo, name.encode()).hexdigest()


ORDINARY_CODE = """
import os
from dataclasses import dataclass


@dataclass
class Settings:
    password: str
    api_key: str | None = None
    token_budget: int = 4096

    def connect(self, password=None, secret=None):
        password = os.environ["PW"]
        api_key = os.getenv("OPENAI_API_KEY")
        token = request.headers["Authorization"]
        secret = settings.SECRET_KEY
        headers = {"Authorization": f"Bearer {token}", "x-api-key": self.api_key}
        return self.client.post(url, headers=headers, json={"max_tokens": 1024, "password": password})
"""

NEAR_MISSES = [
    ORDINARY_CODE,
    "commit " + sha("c", "sha1") + "\nMerge: " + sha("a", "sha1")[:7] + " " + sha("b", "sha1")[:7],
    '"integrity": "sha512-' + base64.b64encode(hashlib.sha512(b"lodash").digest()).decode() + '",',
    '"node_modules/jsonwebtoken": {"version": "9.0.2", "resolved": "https://registry.npmjs.org/jsonwebtoken/-/'
    'jsonwebtoken-9.0.2.tgz", "integrity": "sha1-' + base64.b64encode(hashlib.sha1(b"jwt").digest()).decode() + '"}',
    'files = [{file = "requests-2.31.0-py3-none-any.whl", hash = "sha256:' + sha("requests") + '"}]',
    '[[package]]\nname = "tokenizers"\nversion = "0.15.0"\nsdist = { url = "https://files.pythonhosted.org/t.tar.gz"'
    ', hash = "sha256:' + sha("tok") + '", size = 318456 }',
    '[[package]]\nname = "secret-service"\nversion = "1.2.3"\nchecksum = "' + sha("cargo") + '"',
    str(uuid.UUID(sha("uuid")[:32])) + " " + str(uuid.UUID(sha("uuid2")[:32])).upper(),
    "token_id = " + str(uuid.UUID(sha("u3")[:32])),
    "data:image/png;base64,"
    + base64.b64encode(b"".join(hashlib.sha512(bytes([i])).digest() for i in range(64))).decode(),
    '{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "'
    + base64.b64encode(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))).decode()
    + '"}}',
    "AbstractSingletonProxyFactoryBeanConfigurationManagerImplementation this_is_a_very_long_identifier_name_0123",
    "https://user@example.com/path?q=1 https://example.com:8443/api/v1 git@github.com:org/repo.git",
    "postgres://localhost:5432/db postgres://user:password@localhost/db postgres://u:${DB_PASSWORD}@db/app",
    "password = None\npassword = ''\npassword = getpass.getpass()\npassword: Optional[str] = None\n",
    'password = "changeme"\nPOSTGRES_PASSWORD: example\npassword = "********"\npassword = "<your password>"\n',
    'password = "%s"\npassword: ${{ secrets.DB_PASSWORD }}\nPASSWORD=$DB_PASSWORD\npassword = f"{pw}"\n',
    'password: DB_PASSWORD_FILE\npassword = settings.DATABASES.default.PASSWORD\n"password": "Password",',
    'tokenizer = "bert-base-uncased"\neos_token = "</s>"\npad_token: "<pad>"\n"bos_token": "<|begin_of_text|>"',
    'max_tokens=4096, "input_tokens": 1234, "output_tokens": 56, tokens_per_minute: 80000',
    'author = "Jane Doe"\nbypass = "abcd1234efgh5678ijkl"\npassword_hash = "' + sha("pw") + '"\nsecretName: my-app',
    'secret: "projects/123456/secrets/db-password/versions/latest"\napi_key_env = "OPENAI_API_KEY"',
    "GOOGLE_APPLICATION_CREDENTIALS=/home/me/.config/gcloud/application_default_credentials.json",
    "/home/user/.ssh/id_rsa C:\\Users\\me\\AppData\\Local ./src/addon/policy/redaction.py",
    "version 1.2.3-beta.4+build.5, ^2.0.0, ~=3.13, >=1.5,<2",
    "msg_01XFDUDYJgAACzvnptvVoYEL toolu_01A09q90qw90lq917835lq9 chatcmpl-8pJ4vZ3yq2Zq3K8mX0b1c2d3e4f5"
    " req_011CQfK8V7hEzF4G1JbYQ3nP call_abc123DEF456ghi789JKL0 resp_68af3f6b0c8c81939e2c5d3b2d5e6f7a",
    "Use a bearer token in the Authorization header. The secret is to keep functions small. Pass the key.",
    "task-" + filler("task", 48) + " risk-" + filler("risk", 48) + " shf_" + filler("hf", 34),
    'password = "[REDACTED:password]"\nAuthorization: Bearer [REDACTED:bearer-token]\n'
    "postgres://app:[REDACTED:url-password]@db/app",
]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_left_byte_for_byte(text: str) -> None:
    assert R.find(text) == []
    assert R.redact(text)[0] is text


def test_redacting_twice_changes_nothing_more() -> None:
    text = "\n".join(before + secret + after for _, before, secret, after in CORPUS)
    once, kinds = R.redact(text)
    assert set(kinds) == {kind for kind, *_ in CORPUS}
    assert R.redact(once) == (once, ())


def test_the_bridge_prefix_is_the_configs() -> None:
    assert BRIDGE_PREFIX == TOKEN_PREFIX


# --- operator patterns ------------------------------------------------------------------------------------------


def test_an_operator_pattern_redacts_its_whole_match() -> None:
    r = Redactor([("acme-key", r"ACME-[0-9]{6}")])
    assert r.redact("use ACME-123456 here") == ("use [REDACTED:acme-key] here", ("acme-key",))


def test_an_operator_pattern_with_groups_redacts_group_one() -> None:
    r = Redactor([("employee-id", r"(?i)employee[ _]id: *(E\d{5})\b")])
    assert r.redact("Employee ID: E12345.") == ("Employee ID: [REDACTED:employee-id].", ("employee-id",))


def test_operator_kinds_beat_built_in_ones_on_an_equal_span() -> None:
    r = Redactor([("aws-root", r"AKIA[0-9A-Z]{16}")])
    assert r.redact(f"id {AWS_ID}") == ("id [REDACTED:aws-root]", ("aws-root",))


def test_an_operator_pattern_that_matches_empty_finds_nothing() -> None:
    assert Redactor([("maybe", r"x*")]).find("abc") == []


@pytest.mark.parametrize(
    ("patterns", "named"),
    [
        ([("acme-key", r"ACME-(")], "'acme-key'"),
        ([("Acme_Key", r"ACME")], "'Acme_Key'"),
        ([("-acme", r"ACME")], "'-acme'"),
        ([("acme--key", r"ACME")], "'acme--key'"),
        ([("ok", r"fine"), ("bad", r"[z-a]")], "'bad'"),
    ],
)
def test_a_bad_operator_pattern_is_refused_by_name(patterns: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Redactor(patterns)


# --- overlaps ---------------------------------------------------------------------------------------------------


def test_on_an_equal_span_the_specific_kind_wins() -> None:
    assert R.redact(f"Authorization: Bearer {ANTHROPIC}")[1] == ("anthropic-key",)
    assert R.redact(f'password = "{AWS_ID}"')[1] == ("aws-access-key",)
    assert R.redact(f"token: {JWT}")[1] == ("jwt",)


def test_on_overlapping_spans_the_longest_wins() -> None:
    github = "ghp_" + filler("gh", 36)
    text = f"Authorization: Bearer {github}.{filler('tail', 20)}1"
    assert R.redact(text) == ("Authorization: Bearer [REDACTED:bearer-token]", ("bearer-token",))
    r = Redactor([("short", r"ghp_[A-Za-z0-9]{4}")])
    assert r.find(f"x {github} y") == [Finding("github-token", 2, 2 + len(github))]


def test_findings_are_sorted_and_disjoint() -> None:
    text = "\n".join(before + secret + after for _, before, secret, after in CORPUS)
    found = R.find(text)
    assert found == sorted(found, key=lambda f: f.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


# --- JSON bodies ------------------------------------------------------------------------------------------------


def request(*texts: str, ensure_ascii: bool = False, **dumps: object) -> bytes:
    """An Anthropic-shaped request body holding texts as user messages."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}],
    }
    return json.dumps(body, ensure_ascii=ensure_ascii, **dumps).encode()  # type: ignore[arg-type]


def escaped(secret: str, ensure_ascii: bool = False) -> bytes:
    return json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1].encode()


def test_redact_json_replaces_only_the_secrets_bytes() -> None:
    body = request("see the config:\n" + f"aws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1", "ok")
    out, kinds = R.redact_json(body)
    assert kinds == ("aws-secret-key",)
    assert out.replace(b"[REDACTED:aws-secret-key]", b"") == body.replace(escaped(AWS_SECRET), b"")
    assert json.loads(out)["messages"][0]["content"][0]["text"].endswith(
        "= [REDACTED:aws-secret-key]\nregion = eu-west-1"
    )


def test_redact_json_handles_a_private_key_with_escaped_newlines() -> None:
    body = request(f"my key:\n{PRIVATE_KEY}\nthanks", ensure_ascii=True, indent=2)
    assert b"\\n" in escaped(PRIVATE_KEY)
    out, kinds = R.redact_json(body)
    assert kinds == ("private-key",)
    assert out.replace(b"[REDACTED:private-key]", b"") == body.replace(escaped(PRIVATE_KEY), b"")


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_redact_json_maps_offsets_past_unicode_and_escapes(ensure_ascii: bool) -> None:
    text = 'Mot de passe é 🔑 "quoted"\t: password = "hunter2x" — et la clé ' + ANTHROPIC + " fin ✓"
    body = request(text, ensure_ascii=ensure_ascii)
    out, kinds = R.redact_json(body)
    assert kinds == ("anthropic-key", "password")
    stripped = out.replace(b"[REDACTED:password]", b"").replace(b"[REDACTED:anthropic-key]", b"")
    assert stripped == body.replace(b"hunter2x", b"").replace(ANTHROPIC.encode(), b"")
    assert json.loads(out)["messages"][0]["content"][0]["text"] == text.replace(
        "hunter2x", "[REDACTED:password]"
    ).replace(ANTHROPIC, "[REDACTED:anthropic-key]")


def test_redact_json_finds_a_secret_however_the_sender_escaped_it() -> None:
    """A PHP-style sender escapes `/` as `\\/`; the secret's escaped bytes go, whatever their form."""
    raw_secret = AWS_SECRET.replace("/", "\\/").encode()
    body = b'{"messages": [{"role": "user", "content": "aws_secret_access_key = ' + raw_secret + b'\\nok"}]}'
    out, kinds = R.redact_json(body)
    assert kinds == ("aws-secret-key",)
    assert out == body.replace(raw_secret, b"[REDACTED:aws-secret-key]")


def test_redact_json_judges_a_credential_members_value() -> None:
    body = json.dumps(
        {"tool": "db", "input": {"host": "db", "password": "hunter2x", "api_key": filler("k", 32), "user": "app"}}
    ).encode()
    out, kinds = R.redact_json(body)
    assert kinds == ("password", "secret")
    assert json.loads(out)["input"] == {
        "host": "db",
        "password": "[REDACTED:password]",
        "api_key": "[REDACTED:secret]",
        "user": "app",
    }


def test_redact_json_scans_values_inside_tool_arguments() -> None:
    arguments = json.dumps({"command": f"export GITHUB_TOKEN={'ghp_' + filler('gh', 36)}"})
    body = json.dumps({"tool_calls": [{"function": {"name": "bash", "arguments": arguments}}]}).encode()
    out, kinds = R.redact_json(body)
    assert kinds == ("github-token",)
    assert json.loads(json.loads(out)["tool_calls"][0]["function"]["arguments"]) == {
        "command": "export GITHUB_TOKEN=[REDACTED:github-token]"
    }


def test_redact_json_leaves_keys_alone() -> None:
    body = json.dumps({AWS_ID: "a key as a key"}).encode()
    assert R.redact_json(body) == (body, ())


def test_redact_json_returns_the_same_body_when_clean() -> None:
    body = request(*NEAR_MISSES)
    out, kinds = R.redact_json(body)
    assert out is body and kinds == ()


def test_redact_json_leaves_a_body_that_is_not_json() -> None:
    for body in (b"not json: " + AWS_ID.encode(), b'{"k": "' + AWS_ID.encode() + b'"', b"\xff\xfe" + AWS_ID.encode()):
        out, kinds = R.redact_json(body)
        assert out is body and kinds == ()


def test_kinds_in_json_is_what_redact_json_would_replace() -> None:
    body = request(f"{AWS_ID} and {JWT}", "nothing here")
    assert R.kinds_in_json(body) == ("aws-access-key", "jwt") == R.redact_json(body)[1]
    assert R.kinds_in_json(request("clean")) == ()
    assert R.kinds_in_json(b"{not json " + AWS_ID.encode()) == ()


@pytest.mark.parametrize(
    "code",
    [
        "private_key: Ed25519PrivateKey",
        "make(session_auth=s3_disable_express_session_auth)",
        "access_key=AccessKeyV2Builder",
        "password=password_input_v2,",
        "if password == confirm_password2:",
        "assert token != previous_token_value",
    ],
)
def test_names_and_comparisons_in_code_are_no_secrets(code: str) -> None:
    assert Redactor().find(code) == []
