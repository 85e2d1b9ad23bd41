"""Who is calling, and with which provider credential: proxy authentication, central keys and BYOK. Pure.

- Proxy authentication: `Proxy-Authorization: Basic <user>:<bridge token>` (what `HTTPS_PROXY=http://user:token@host`
  sends). Tokens are stored as SHA-256 hashes and compared in constant time.
- Central keys: a request whose API key is a bridge token (prefix `aib_`) is authenticated by it, and the
  provider's configured key replaces it upstream; the token never leaves the proxy. A request from an
  authenticated user that carries no key at all also gets the central key. For a provider given AWS
  credentials instead, the bridge signs each upstream call with them (`Access.aws`).
- BYOK: any other key is the client's own and passes through untouched, unless `allow_byok = false`; so is a
  client's own SigV4 signature (its access key id is the credential).
Secrets are never returned unmasked: the audit sees only the kind and a masked hint.
"""

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from addon.config import TOKEN_PREFIX, Config, Provider, User, hash_token
from addon.policy import Refusal
from addon.policy.identity import mask_secret
from addon.policy.keypool import KeyPools
from addon.providers import FAMILIES
from addon.providers.base import AUTH_HEADERS, Family
from addon.providers.sigv4 import SIGNATURE_HEADERS, AwsCredentials

ACTOR_PREFIX = "x-ai-bridge-actor"
_DUMMY_HASH = hash_token("aib_no-such-user")


class Users:
    def __init__(self, users: tuple[User, ...]) -> None:
        self._by_name = {u.name: u for u in users}
        self._by_hash = {u.token_hash: u for u in users}

    @property
    def required(self) -> bool:
        """When any user is configured, the proxy is closed to everyone else."""
        return bool(self._by_name)

    def check_basic(self, header: str | None) -> str | None:
        """The user a `Proxy-Authorization: Basic ...` header proves, or None."""
        scheme, _, encoded = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, token = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text (mitmproxy's surrogateescape)
            return None
        user = self._by_name.get(name)
        # Compare against a stand-in when the name is unknown, so timing does not tell names apart.
        expected = user.token_hash if user is not None else _DUMMY_HASH
        return name if hmac.compare_digest(hash_token(token), expected) and user is not None else None

    def get(self, name: str) -> User | None:
        return self._by_name.get(name)

    def by_token(self, token: str) -> User | None:
        digest = hash_token(token)
        for known, user in self._by_hash.items():
            if hmac.compare_digest(digest, known):
                return user
        return None


@dataclass(frozen=True, slots=True)
class Access:
    initiator: str
    headers: list[tuple[str, str]]
    """The request headers to send upstream: key substituted, actor headers set, forged ones removed."""
    credential_kind: str | None = None
    credential_hint: str | None = None
    refusal: Refusal | None = None
    """Set when the request must not go upstream."""
    aws: AwsCredentials | None = None
    """The operator's AWS credentials, which sign every upstream call of the request (`Route.sign`)."""
    key: str | None = field(default=None, repr=False)
    """The central key put in `headers` (the one its pool picked), so a 429 or 401 can cool it."""


def _is_token(value: str) -> bool:
    return value.strip().removeprefix("Bearer ").removeprefix("bearer ").strip().startswith(TOKEN_PREFIX)


def _headers_map(headers: list[tuple[str, str]]) -> Mapping[str, str]:
    return {name.lower(): value for name, value in headers}


def resolve(
    config: Config,
    users: Users,
    provider: Provider,
    headers: list[tuple[str, str]],
    proxy_user: str | None,
    keys: KeyPools | None = None,
) -> Access:
    """Decide the request's identity and credential; a central key comes from `keys` where the provider has a
    pool of them."""
    headers = [(n, v) for n, v in headers if not n.lower().startswith(ACTOR_PREFIX)]  # never forwarded from clients
    family = FAMILIES[provider.type]
    credential = family.credential(_headers_map(headers))
    # A bridge token in any other auth header is dropped too: tokens never leave the proxy.
    headers = [(n, v) for n, v in headers if not (n.lower() in AUTH_HEADERS and _is_token(v) and v != credential)]
    user, kind, hint, key = proxy_user, None, None, None
    if credential is not None and credential.startswith(TOKEN_PREFIX):
        owner = users.by_token(credential)
        if owner is None:
            return Access(proxy_user or "anonymous", headers, refusal=Refusal(401, "invalid bridge token"))
        if proxy_user is not None and owner.name != proxy_user:
            return Access(proxy_user, headers, refusal=Refusal(403, "the bridge token belongs to another user"))
        user = owner.name
        if provider.key is None and provider.aws is None:
            return Access(user, headers, refusal=Refusal(403, _no_central_credential(provider, family)))
        central = _central(provider, family, headers, keys)
        if isinstance(central, Refusal):
            return Access(user, headers, refusal=central)
        headers, kind, hint, key = central
    elif credential is not None:
        allowed = provider.allow_byok if provider.allow_byok is not None else config.allow_byok
        if not allowed:
            message = "bring-your-own-key is not enabled: use your bridge token as the API key"
            return Access(user or "anonymous", headers, refusal=Refusal(403, message))
        kind, hint = "byok", mask_secret(credential)
    elif (provider.key is not None or provider.aws is not None) and user is not None:
        central = _central(provider, family, headers, keys)
        if isinstance(central, Refusal):
            return Access(user, headers, refusal=central)
        headers, kind, hint, key = central
    if config.send_actor_headers and user is not None:
        headers = [*headers, ("X-AI-Bridge-Actor-ID", user), ("X-AI-Bridge-Actor-Metadata-Username", user)]
    aws = provider.aws if kind == "centralized" else None
    return Access(user or "anonymous", headers, kind, hint, aws=aws, key=key)


def _central(
    provider: Provider, family: Family, headers: list[tuple[str, str]], keys: KeyPools | None
) -> tuple[list, str, str, str | None] | Refusal:
    """The headers with the provider's central credential in place of the client's: its key (the pool's pick),
    or none where its AWS credentials sign each call (the client's own signature then goes too)."""
    if provider.key is not None:
        key = keys.pick(provider) if keys is not None else provider.key
        if isinstance(key, Refusal):
            return key
        return family.with_key(headers, key), "centralized", mask_secret(key), key
    assert provider.aws is not None
    dropped = SIGNATURE_HEADERS | set(AUTH_HEADERS)
    return (
        [(n, v) for n, v in headers if n.lower() not in dropped],
        "centralized",
        mask_secret(provider.aws.access_key_id),
        None,
    )


def _no_central_credential(provider: Provider, family: Family) -> str:
    if family.sigv4_service:
        return (
            f"provider {provider.name} has no AWS credentials configured to sign for bridge tokens "
            "(aws_access_key_id and aws_secret_access_key, or aws_profile)"
        )
    return f"provider {provider.name} has no central key configured"
