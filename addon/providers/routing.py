"""Which provider a request is for, and whether the bridge handles it or passes it through. Pure."""

from dataclasses import dataclass, field, replace
from urllib.parse import unquote, unquote_plus

from addon.config import Config, Provider, Upstream
from addon.providers import FAMILIES, Api, Family, sigv4
from addon.providers.base import Endpoint, Headers


@dataclass(frozen=True)
class Route:
    provider: Provider
    api: Api | None
    """None: a passthrough route nobody records (models, count_tokens, anything else on the host)."""
    host: str = ""
    """The host the client called (for a provider whose host is a pattern, one of many)."""
    endpoint: Endpoint | None = None
    params: dict[str, str] = field(default_factory=dict)
    """The endpoint's path parameters: a deployment, a model, a project."""
    sealed: bool = False
    """The request's body may not change (SigV4 signs it): tapped, whatever its API."""

    @property
    def tapped(self) -> bool:
        return self.api is not None and (
            self.api.tapped or self.sealed or (self.endpoint is not None and self.endpoint.tapped)
        )

    @property
    def bridged(self) -> bool:
        return self.api is not None and not self.tapped

    @property
    def family(self) -> Family:
        return FAMILIES[self.provider.type]

    @property
    def upstream(self) -> Upstream:
        """Where the request goes: the provider's upstream, else the host the client called."""
        if self.provider.upstream is not None:
            return self.provider.upstream
        return Upstream(scheme="https", host=self.host or self.provider.host, port=443, path="")

    @property
    def price_vendor(self) -> str:
        """Whose prices the route's models have: the family's own, else its API's vendor's."""
        assert self.api is not None
        return self.family.prices or self.api.vendor

    @property
    def model(self) -> str | None:
        """The model the path names, where the endpoint's body may not (Azure deployments, Vertex)."""
        if not self.endpoint or not self.endpoint.model or not (model := self.params.get(self.endpoint.model)):
            return None
        return unquote(model)  # boto3 sends a Bedrock model id's `:` as `%3A`

    def sign(
        self, credentials: sigv4.AwsCredentials, method: str, path: str, headers: Headers, body: bytes
    ) -> list[tuple[str, str]]:
        """`headers` for `method` with `body` to the route's upstream at `path` (as the client sent it),
        SigV4-signed with the operator's `credentials` for the family's service, in the configured region,
        else the one the upstream's host names, else the client's. ValueError when they cannot sign (no
        region; credentials botocore cannot refresh)."""
        family, target = self.family, self.upstream
        region = (
            credentials.region or sigv4.region_in(family.host, target.host) or sigv4.region_in(family.host, self.host)
        )
        if family.sigv4_service is None or region is None:  # the configuration's checks rule both out
            raise ValueError(f"cannot sign for {self.host}: no AWS service or region")
        try:
            return sigv4.sign(
                credentials, family.sigv4_service, region, method, target.authority, target.path + path, headers, body
            )
        except Exception as e:  # boundary: botocore's credential refresh raises many kinds
            raise ValueError(f"cannot sign for {self.host} with the provider's AWS credentials: {e}") from e

    def error_body(self, status: int, message: str) -> bytes:
        """A provider-shaped error: in the route's API's shape, else the family's."""
        return (self.api.reader if self.api else self.family.errors).error_body(status, message)


def classify(config: Config, host: str, method: str, path: str) -> Route | None:
    """Route a request for `host`; None when the host is not a provider's.

    Only `POST` to one of the family's endpoints is recorded; the query string is ignored (Claude Code sends
    `/v1/messages?beta=true`), and `/v1/messages/count_tokens` is passthrough like every other path (so is
    a WebSocket upgrade: a `GET`).
    """
    provider = config.provider_for_host(host)
    if provider is None:
        return None
    host = host.lower().rstrip(".")
    found = FAMILIES[provider.type].endpoint(path) if method.upper() == "POST" else None
    if found is None:
        return Route(provider, None, host)
    endpoint, params = found
    return Route(provider, endpoint.api, host, endpoint, params)


def sealed(route: Route, headers: Headers) -> Route:
    """The route of a request whose credential signs its body (SigV4): recorded, never changed."""
    return replace(route, sealed=True) if route.bridged and sigv4.signed(headers) else route


def query_keys(path: str, param: str) -> tuple[list[str], str]:
    """The values of the query parameter `param` (keys sent in the URL), and the path without any of them; the
    rest of the query stays as it was written."""
    bare, sep, query = path.partition("?")
    if not sep:
        return [], path
    pairs = query.split("&")
    found = [p for p in pairs if p.split("=", 1)[0] == param]
    if not found:
        return [], path
    kept = "&".join(p for p in pairs if p not in found)
    return [unquote_plus(p.partition("=")[2]) for p in found], bare + ("?" + kept if kept else "")
