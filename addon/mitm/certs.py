"""Client trust: the bundle clients point their CA variables at, and the lines a developer pastes."""

import os
import ssl
from pathlib import Path

import certifi

BUNDLE_NAME = "aibridge-ca-bundle.pem"
CA_CERT_NAME = "mitmproxy-ca-cert.pem"
PRIVATE_FILES = ("mitmproxy-ca.pem", "mitmproxy-ca.p12")
"""Files in the confdir that hold the CA's private key."""
PUBLIC_FILES = ("mitmproxy-ca-cert.pem", "mitmproxy-ca-cert.cer", "mitmproxy-ca-cert.p12")
"""The CA's certificate alone, for clients (the proxy's umask would leave them private)."""


def system_ca_file() -> Path:
    """The system CA bundle as OpenSSL compiled it in, not as the environment overrides it: the
    environment may already point at a bridge bundle."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.openssl_cafile, paths.cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return Path(certifi.where())


def protect_private_key(confdir: Path) -> None:
    for name in PRIVATE_FILES:
        path = confdir / name
        if path.exists():
            path.chmod(0o600)
    for name in PUBLIC_FILES:
        if (path := confdir / name).exists():
            path.chmod(0o644)


def write_ca_bundle(confdir: Path) -> Path:
    """System CAs plus the proxy CA, so clients whose variable *replaces* their trust store still reach
    tunnelled hosts. Rewritten atomically on every start."""
    bundle = confdir / BUNDLE_NAME
    text = system_ca_file().read_text(encoding="utf-8", errors="replace").rstrip("\n")
    ca = (confdir / CA_CERT_NAME).read_text(encoding="utf-8")
    tmp = bundle.with_suffix(".tmp")
    tmp.write_text(f"{text}\n# aibridge proxy CA\n{ca}", encoding="utf-8")
    tmp.chmod(0o644)  # public certificates, for clients run by other users too (the proxy's umask is 0077)
    os.replace(tmp, bundle)
    return bundle


def shell_lines(proxy_url: str, bundle: Path) -> list[str]:
    """HTTPS_PROXY and every client family's CA variable: Python SDKs and most CLIs (SSL_CERT_FILE),
    Node/Bun clients such as Claude Code and opencode (NODE_EXTRA_CA_CERTS), Codex (CODEX_CA_CERTIFICATE),
    `requests` (REQUESTS_CA_BUNDLE), curl (CURL_CA_BUNDLE) and the AWS SDKs (AWS_CA_BUNDLE)."""
    path = str(bundle.resolve())
    lines = [f"export HTTPS_PROXY={proxy_url}", f"export https_proxy={proxy_url}"]
    for var in (
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "CODEX_CA_CERTIFICATE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "AWS_CA_BUNDLE",
    ):
        lines.append(f"export {var}={path}")
    return lines
