"""End-to-end fixtures: a mock provider, a real mitmdump with the addon, and clients configured only by
the environment lines the proxy prints (as a developer would paste them)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.mock_upstream import MockUpstream
from tests.support.proxy import Proxy, provider_config

pytestmark = pytest.mark.e2e

_CLIENT_VARS = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "CODEX_CA_CERTIFICATE",
)


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    upstream = MockUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def start_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Proxy]]:
    """Start a proxy; its printed lines become this test's client environment."""
    started: list[Proxy] = []

    def start(config: str | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Proxy:
        proxy = Proxy(tmp_path, config, args, env).start()
        started.append(proxy)
        for var in _CLIENT_VARS:
            monkeypatch.delenv(var, raising=False)
        for name, value in proxy.client_env().items():
            monkeypatch.setenv(name, value)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(mock: MockUpstream, start_proxy: Callable[..., Proxy]) -> Proxy:
    """The bridge on defaults, both providers pointed at the mock upstream."""
    return start_proxy(provider_config(mock.url))
