"""A mock LLM provider for the proxy benchmark: Anthropic, OpenAI chat and Gemini wire formats, streaming and not,
over TLS.

    .venv/bin/python scripts/bench/mock_provider.py [--port 0] [--dir DIR]

Listens on 127.0.0.1 only, with a certificate for 127.0.0.1 and localhost from a CA generated at start by `trustme`
(written to DIR/mock-ca.pem; give it to mitmproxy with `--set ssl_verify_upstream_trusted_ca=DIR/mock-ca.pem`).
When ready it prints one line: `READY https://127.0.0.1:<port> CA=<path>`.

Routes (any path prefix, so a base URL ending in /v1 works too):
- `POST .../v1/messages`: Anthropic Messages; SSE when the body has `"stream": true`, else one JSON message.
- `POST .../v1/chat/completions`: OpenAI chat; SSE chunks (plus a usage chunk when `stream_options.include_usage`)
  and `data: [DONE]`, else one `chat.completion`.
- `POST .../models/<model>:streamGenerateContent`: Gemini; with `?alt=sse` SSE, each event one
  `GenerateContentResponse` chunk ended by CRLF CRLF, else the same chunks as one JSON array (streamed).
  `POST .../models/<model>:generateContent`: one `GenerateContentResponse`.
- `GET /stats`: per-scenario counters (requests, requests whose body carried injected `bmcp_` tools, distinct
  client connections), keyed by the request header `x-bench-scenario`; `POST /stats/reset` clears them.
- `GET /gates/<name>`: how many requests wait at a gate; `POST /gates/<name>/open` releases them (and later ones).

Knobs, from a request header `x-mock-<knob>` (`_` written `-`: `x-mock-pace-ms`), else the query string
`?<knob>=`, else a tag `[mock <knob>=N ...]` anywhere in the body (for proxies that forward neither):
- `events`: text delta events (default 20); a stream also has its fixed frame events (Anthropic: message_start,
  content_block_start, content_block_stop, message_delta, message_stop; OpenAI: the role chunk, the finish chunk,
  the usage chunk when asked for, [DONE]; Gemini: none, the last text chunk carries `finishReason` and the final
  usage, and a stream has at least that one). A JSON answer's text is what the events would have carried.
- `bytes`: size of each text delta event on the wire, SSE framing included (default 200; at least one character of
  text is sent, so tiny values give the format's minimum, about 110 B for Anthropic, 190 B for OpenAI and 215 B
  for Gemini, whose every chunk carries usage, model version and response id; its last chunk is about 50 B more).
- `pace_ms`: milliseconds between consecutive events (default 0: written as fast as possible, one write each).
- `ttfe_ms`: milliseconds before the response starts (status, headers and first event go out together).
- `gate` (a name): the request waits (at most 60 s) until the gate is opened, then `ttfe_ms`; a load client uses it
  to hold N requests in flight at once, so N connections are open and pooled before a measured phase.
"""

import argparse
import asyncio
import contextlib
import json
import re
import signal
import ssl
import sys
import tempfile
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

GATE_TIMEOUT = 60.0
MAX_GATES = 1000
KNOBS = {"events": (20, 100_000), "bytes": (200, 1_000_000), "pace_ms": (0, 60_000), "ttfe_ms": (0, 60_000)}
"""name: (default, maximum)"""
_BODY_TAG = re.compile(rb"\[mock ([^\]]{1,200})\]")
_FILLER = "lorem ipsum dolor sit amet "
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "gpt-4.1-2025-04-14"
GEMINI_MODEL = "gemini-2.5-pro"
GEMINI_PROMPT_TOKENS = 25
_GEMINI_PATHS = (":generateContent", ":streamGenerateContent")


def knobs(request: web.Request, body: bytes) -> tuple[dict[str, int], str | None]:
    """The numeric knobs, and the gate name if any."""
    tagged: dict[str, str] = {}
    if match := _BODY_TAG.search(body):
        for part in match.group(1).decode(errors="replace").split():
            name, _, value = part.partition("=")
            tagged[name] = value
    gate = request.headers.get("x-mock-gate") or request.query.get("gate") or tagged.get("gate")
    values = {}
    for name, (default, maximum) in KNOBS.items():
        raw = request.headers.get("x-mock-" + name.replace("_", "-")) or request.query.get(name) or tagged.get(name)
        try:
            value = int(raw) if raw is not None else default
        except ValueError:
            value = default
        values[name] = max(0, min(value, maximum))
    return values, gate


def sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def _text(length: int) -> str:
    length = max(1, length)
    return (_FILLER * (length // len(_FILLER) + 1))[:length]


@lru_cache(maxsize=256)
def anthropic_delta(size: int) -> tuple[bytes, str]:
    """One text delta event of about `size` bytes, and its text."""
    overhead = len(anthropic_delta_for(""))
    text = _text(size - overhead)
    return anthropic_delta_for(text), text


def anthropic_delta_for(text: str) -> bytes:
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def chat_chunk(cid: str, delta: dict[str, Any], finish: str | None = None, usage: bool = True) -> bytes:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": OPENAI_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = None
    return sse(None, body)


@lru_cache(maxsize=256)
def openai_delta(size: int, usage: bool) -> tuple[bytes, str]:
    overhead = len(chat_chunk("chatcmpl-bench", {"content": ""}, usage=usage))
    text = _text(size - overhead)
    return chat_chunk("chatcmpl-bench", {"content": text}, usage=usage), text


def gemini_chunk(text: str, response_id: str, tokens: int | None = None) -> dict[str, Any]:
    """A `GenerateContentResponse` chunk with one text part; the last (`tokens`: the output's) also carries the
    finish reason and the final usage, the others the usage so far (the prompt's)."""
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    usage: dict[str, int] = {"promptTokenCount": GEMINI_PROMPT_TOKENS, "totalTokenCount": GEMINI_PROMPT_TOKENS}
    if tokens is not None:
        candidate["finishReason"] = "STOP"
        usage = {
            "promptTokenCount": GEMINI_PROMPT_TOKENS,
            "candidatesTokenCount": tokens,
            "totalTokenCount": GEMINI_PROMPT_TOKENS + tokens,
        }
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": GEMINI_MODEL, "responseId": response_id}


def gemini_sse(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk, separators=(',', ':'))}\r\n\r\n".encode()


def gemini_delta(size: int, response_id: str, tokens: int | None = None) -> tuple[dict[str, Any], str]:
    """One text chunk whose SSE event is about `size` bytes, and its text."""
    text = _text(size - len(gemini_sse(gemini_chunk("", response_id, tokens))))
    return gemini_chunk(text, response_id, tokens), text


class Mock:
    def __init__(self) -> None:
        self.stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"requests": 0, "injected": 0, "conns": set()})
        self.sequence = 0
        self.gates: dict[str, list[Any]] = {}
        """name: [asyncio.Event, requests waiting]"""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/stats/reset", self.reset_stats)
        app.router.add_get("/gates/{name}", self.gate_status)
        app.router.add_post("/gates/{name}/open", self.open_gate)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def get_stats(self, request: web.Request) -> web.Response:
        out = {name: {**s, "conns": len(s["conns"])} for name, s in self.stats.items()}
        return web.json_response(out)

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats.clear()
        return web.json_response({})

    def _gate(self, name: str) -> list[Any]:
        if name not in self.gates:
            while len(self.gates) >= MAX_GATES:
                self.gates.pop(next(iter(self.gates)))
            self.gates[name] = [asyncio.Event(), 0]
        return self.gates[name]

    async def gate_status(self, request: web.Request) -> web.Response:
        return web.json_response({"waiting": self._gate(request.match_info["name"])[1]})

    async def open_gate(self, request: web.Request) -> web.Response:
        self._gate(request.match_info["name"])[0].set()
        return web.json_response({})

    async def wait_gate(self, name: str) -> None:
        gate = self._gate(name)
        gate[1] += 1
        try:
            await asyncio.wait_for(gate[0].wait(), GATE_TIMEOUT)
        except TimeoutError:
            pass
        finally:
            gate[1] -= 1

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        if request.method != "POST" or not path.endswith(("/v1/messages", "/chat/completions", *_GEMINI_PATHS)):
            return web.json_response({"error": {"message": f"mock: no route {request.method} {path}"}}, status=404)
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": {"message": "mock: body is not JSON"}}, status=400)
        stat = self.stats[request.headers.get("x-bench-scenario", "-")]
        stat["requests"] += 1
        if b'"bmcp_' in body:
            stat["injected"] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None and len(stat["conns"]) < 100_000:
            stat["conns"].add(tuple(peer[:2]))
        k, gate = knobs(request, body)
        self.sequence += 1
        if gate:
            await self.wait_gate(gate)
        anthropic = path.endswith("/v1/messages")
        gemini = path.endswith(_GEMINI_PATHS)
        if not (path.endswith(":streamGenerateContent") if gemini else payload.get("stream")):
            if k["ttfe_ms"]:
                await asyncio.sleep(k["ttfe_ms"] / 1000)
            json_answer = self.gemini_json if gemini else self.anthropic_json if anthropic else self.openai_json
            answer = json_answer(k)
            return web.Response(body=answer, content_type="application/json")
        if gemini:
            alt_sse = request.query.get("alt") == "sse"
            events = self.gemini_stream(k, alt_sse)
            return await self.stream(request, events, k, "text/event-stream" if alt_sse else None)
        if anthropic:
            events = self.anthropic_stream(k)
        else:
            usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            events = self.openai_stream(k, usage)
        return await self.stream(request, events, k, "text/event-stream")

    async def stream(
        self, request: web.Request, events: list[bytes], k: dict[str, int], content_type: str | None = None
    ) -> web.StreamResponse:
        """`events` written one by one (`content_type` None: `application/json`, Gemini's array)."""
        if k["ttfe_ms"]:
            await asyncio.sleep(k["ttfe_ms"] / 1000)
        headers = {"content-type": content_type or "application/json"}
        if content_type == "text/event-stream":
            headers["cache-control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        pace = k["pace_ms"] / 1000
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            for i, event in enumerate(events):
                if i and pace:
                    await asyncio.sleep(pace)
                await response.write(event)
            await response.write_eof()
        return response

    def anthropic_stream(self, k: dict[str, int]) -> list[bytes]:
        delta, _ = anthropic_delta(k["bytes"])
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_bench{self.sequence}",
                "type": "message",
                "role": "assistant",
                "model": ANTHROPIC_MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        }
        return [
            sse("message_start", start),
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            *([delta] * k["events"]),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": max(1, k["events"])},
                },
            ),
            sse("message_stop", {"type": "message_stop"}),
        ]

    def anthropic_json(self, k: dict[str, int]) -> bytes:
        _, text = anthropic_delta(k["bytes"])
        message = {
            "id": f"msg_bench{self.sequence}",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [{"type": "text", "text": text * max(1, k["events"])}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": max(1, k["events"])},
        }
        return json.dumps(message).encode()

    def openai_stream(self, k: dict[str, int], usage: bool) -> list[bytes]:
        cid = "chatcmpl-bench"
        delta, _ = openai_delta(k["bytes"], usage)
        events = [
            chat_chunk(cid, {"role": "assistant", "content": ""}, usage=usage),
            *([delta] * k["events"]),
            chat_chunk(cid, {}, "stop", usage=usage),
        ]
        if usage:
            tokens = {"prompt_tokens": 25, "completion_tokens": max(1, k["events"]), "total_tokens": 25 + k["events"]}
            events.append(
                sse(
                    None,
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": OPENAI_MODEL,
                        "choices": [],
                        "usage": tokens,
                    },
                )
            )
        events.append(b"data: [DONE]\n\n")
        return events

    def openai_json(self, k: dict[str, int]) -> bytes:
        _, text = openai_delta(k["bytes"], True)
        completion = {
            "id": f"chatcmpl-bench{self.sequence}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": OPENAI_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text * max(1, k["events"]), "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 25, "completion_tokens": max(1, k["events"]), "total_tokens": 25 + k["events"]},
        }
        return json.dumps(completion).encode()

    def gemini_id(self) -> str:
        return f"bench-{self.sequence:012d}"  # one width: a chunk's size does not change with the request

    def gemini_stream(self, k: dict[str, int], sse: bool) -> list[bytes]:
        """`events` text chunks (at least one), the last with the finish reason and the final usage."""
        rid, n = self.gemini_id(), max(1, k["events"])
        delta, _ = gemini_delta(k["bytes"], rid)
        final, _ = gemini_delta(k["bytes"], rid, n)
        if sse:
            return [gemini_sse(delta)] * (n - 1) + [gemini_sse(final)]
        middle = b",\r\n" + json.dumps(delta, separators=(",", ":")).encode()
        last = b",\r\n" + json.dumps(final, separators=(",", ":")).encode() + b"]"
        out = [middle] * (n - 1) + [last]
        out[0] = b"[" + out[0][3:]
        return out

    def gemini_json(self, k: dict[str, int]) -> bytes:
        rid = self.gemini_id()
        _, text = gemini_delta(k["bytes"], rid)
        answer = gemini_chunk(text * max(1, k["events"]), rid, max(1, k["events"]))
        return json.dumps(answer).encode()


def tls_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1/localhost, and the path of the CA that signed it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = directory / "mock-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context, ca_path


async def serve(port: int, directory: Path) -> None:
    context, ca_path = tls_context(directory)
    mock = Mock()
    runner = web.AppRunner(mock.app(), access_log=None, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, backlog=4096)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY https://127.0.0.1:{bound} CA={ca_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.wait_for(runner.cleanup(), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write mock-ca.pem (default: a temp dir)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="aibridge-mock-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve(args.port, directory))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
