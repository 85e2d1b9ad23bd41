"""Time the secret redactor (addon/policy/redaction.py) on a coding agent's request body.

    .venv/bin/python scripts/bench/redaction.py [--size-kb 200] [--runs 50]

Builds an Anthropic-shaped Messages request of about --size-kb KB: a system prompt, tool definitions, and
turns holding source files, lockfile excerpts (package-lock.json integrity hashes, uv.lock sha256s, Cargo.lock
checksums), git log output and a base64 screenshot, as an agent sends them; the "dirty" copy also holds a few
secrets (an AWS key pair, an Anthropic key, a .env password, a private key). Times `Redactor.find` on the body
as text (what the audit writer does with a recorded body) and `Redactor.redact_json` / `kinds_in_json` on the
raw bytes (what the outbound path does), and prints the median and best µs per request and MB/s.
"""

import argparse
import base64
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from addon.policy.redaction import Redactor


def _hex(seed: str, n: int = 64) -> str:
    out = ""
    while len(out) < n:
        seed = hashlib.sha256(seed.encode()).hexdigest()
        out += seed
    return out[:n]


def _source(i: int) -> str:
    return f'''
class Handler{i}:
    """Handles request kind {i}: validates, retries, records."""

    def __init__(self, client, settings, max_tokens: int = 4096) -> None:
        self.client = client
        self.api_key = settings.api_key
        self.password = os.environ.get("DB_PASSWORD")
        self.max_tokens = max_tokens

    async def handle(self, request: dict[str, object]) -> dict[str, object]:
        token = request.get("token") or self.client.token
        for attempt in range(3):
            response = await self.client.post("/v1/items/{i}", json=request, headers={{"x-request-id": str(attempt)}})
            if response.status_code < 500:
                return response.json()
        raise RuntimeError(f"handler {i} gave up after 3 attempts: {{response.status_code}}")
'''


def _lockfiles(i: int) -> str:
    integrity = base64.b64encode(hashlib.sha512(str(i).encode()).digest()).decode()
    return (
        f'    "node_modules/pkg-{i}": {{\n      "version": "1.{i}.0",\n'
        f'      "resolved": "https://registry.npmjs.org/pkg-{i}/-/pkg-{i}-1.{i}.0.tgz",\n'
        f'      "integrity": "sha512-{integrity}"\n    }},\n'
        f'[[package]]\nname = "pkg{i}"\nversion = "0.{i}.1"\n'
        f'wheels = [{{ url = "https://files.pythonhosted.org/pkg{i}.whl", hash = "sha256:{_hex(f"w{i}")}" }}]\n'
        f'checksum = "{_hex(f"c{i}")}"\n'
        f"commit {_hex(f'g{i}', 40)}\nAuthor: Dev <dev@example.com>\n\n    fix handler {i}\n"
    )


def _secrets() -> str:
    pem = "\n".join(_hex(f"pem{i}") for i in range(6))
    return (
        "here is my .env, why does it fail?\n"
        "AWS_ACCESS_KEY_ID=AKIA" + "IOSFODNN7EXAMPLE\n"
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY\n"
        "ANTHROPIC_API_KEY=sk-ant-" + "api03-" + _hex("ant", 93) + "AA\n"
        "DB_PASSWORD=s3cr3t-Pw!\n"
        "-----BEGIN RSA " + "PRIVATE KEY-----\n" + pem + "\n-----END RSA " + "PRIVATE KEY-----\n"
    )


def body(size: int, dirty: bool) -> bytes:
    texts, total, i = [], 0, 0
    image = base64.b64encode(b"".join(hashlib.sha512(bytes([b])).digest() for b in range(256))).decode()
    while total < size:
        chunk = _source(i) + _lockfiles(i)
        texts.append(chunk)
        total += len(chunk)
        i += 1
    if dirty:
        texts.insert(len(texts) // 2, _secrets())
    messages = []
    for n, text in enumerate(texts):
        if n % 2:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": "Reading the next file."}]})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": text}]}
        )
    messages[0]["content"].append(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}
    )
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8192,
        "system": "You are a coding agent. Use the tools to read and edit files.",
        "tools": [
            {"name": n, "description": f"{n} a file", "input_schema": {"type": "object"}} for n in ("read", "edit")
        ],
        "messages": messages,
    }
    return json.dumps(request).encode()


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, best) seconds of fn over runs calls, after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-kb", type=int, default=200, help="approximate request body size (KB)")
    parser.add_argument("--runs", type=int, default=50, help="timed calls of each operation")
    args = parser.parse_args()
    redactor = Redactor()
    print("| body | KB | operation | kinds | median µs | best µs | MB/s |\n|---|---|---|---|---|---|---|")
    for label, dirty in (("clean", False), ("dirty", True)):
        raw = body(args.size_kb * 1000, dirty)
        text = raw.decode()
        operations: tuple[tuple[str, Callable[[], object], list[str]], ...] = (
            ("find (text)", lambda t=text: redactor.find(t), sorted({f.kind for f in redactor.find(text)})),
            ("redact_json", lambda b=raw: redactor.redact_json(b), list(redactor.redact_json(raw)[1])),
            ("kinds_in_json", lambda b=raw: redactor.kinds_in_json(b), list(redactor.kinds_in_json(raw))),
        )
        for name, fn, kinds in operations:
            median, best = timed(fn, args.runs)
            print(
                f"| {label} | {len(raw) / 1000:.0f} | {name} | {','.join(kinds) or '-'} | {median * 1e6:.0f} "
                f"| {best * 1e6:.0f} | {len(raw) / median / 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
