"""API dumps: the request and response of every upstream call, as files, for debugging a bad exchange.

Bridged: `{dir}/{provider}/{model}/{unix ms}-{interception id}-{round}.req.txt` and `.resp.txt`, one pair per
upstream call (a tool loop writes one pair per round; the round number keeps them apart), and `.req_error.txt`
when no response came. Passthrough: `{dir}/{provider}/passthrough/{unix ms}-{path}-{4 hex}.req.txt` / `.resp.txt`.

Each file: the request or status line, the headers sorted by name, a blank line, the body. Credentials are
masked (`identity.mask_secret`): authorization and key headers, cookies, any header or JSON field or query
parameter whose name says token, secret, password or key. JSON bodies are pretty-printed (key order kept,
`content-length` rewritten); event streams are written raw as they stream. A model or path never escapes the
directory: names are reduced to `[A-Za-z0-9._-]`.

All file work happens in one writer thread fed by a queue: the event loop only enqueues. Whatever the thread
has written is flushed to the file as soon as the queue is empty, so a stream still open can be read as far as
it got (the stream being debugged is often the one that hangs).
"""

import contextlib
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode
from uuid import UUID

import httpx

from addon.audit import AuditEvent, InterceptionEnded
from addon.engine.ports import Headers, Observer, UpstreamCall
from addon.policy.identity import mask_secret
from addon.policy.redaction import Redactor

if TYPE_CHECKING:
    from addon.engine.job import Job

logger = logging.getLogger(__name__)

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "www-authenticate",
        "proxy-authenticate",
    }
)
_SECRET_NAME = re.compile(
    r"(^|[_-])(token|secret|password|passwd|api[_-]?key|auth|authorization|cookie|credentials?|signature)$", re.I
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STOP = object()
MAX_JSON_BUFFER = 64 * 1024 * 1024
"""A non-streamed body larger than this is written raw instead of pretty-printed."""


def is_secret_name(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or bool(_SECRET_NAME.search(name))


def mask_header(name: str, value: str) -> str:
    if not is_secret_name(name):
        return value
    scheme, sep, credential = value.partition(" ")
    if sep and scheme.lower() in ("bearer", "basic", "token", "digest", "negotiate"):
        return f"{scheme} {mask_secret(credential.strip())}"
    return mask_secret(value)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (mask_secret(v) if isinstance(v, str) else "...") if is_secret_name(k) and v else _mask_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


def mask_target(target: str) -> str:
    """A request target with secret query parameters masked (`?key=...` on some providers)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    pairs = [
        (k, mask_secret(v) if is_secret_name(k) or k.lower() == "key" else v)  # Google's `?key=`
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{path}?{urlencode(pairs, safe='/:.,')}"


def safe_name(value: str, limit: int = 100) -> str:
    return _UNSAFE.sub("-", value).strip(".-")[:limit] or "unknown"


def render_body(body: bytes, content_type: str) -> bytes:
    """JSON pretty-printed with secrets masked; anything else as it is."""
    if "json" not in content_type.lower() or not body or len(body) > MAX_JSON_BUFFER:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    return json.dumps(_mask_json(data), indent=2, ensure_ascii=False).encode() + b"\n"


def render_head(first_line: str, headers: Iterable[tuple[str, str]], body: bytes | None) -> bytes:
    """First line, sorted and masked headers (content-length rewritten when the body was re-rendered), blank line."""
    lines = [first_line]
    for name, value in sorted(headers, key=lambda h: h[0].lower()):
        if body is not None and name.lower() == "content-length":
            value = str(len(body))
        lines.append(f"{name}: {mask_header(name, value)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")


class DumpWriter:
    """The thread that owns the dump files. `open`/`write`/`close` only enqueue."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aibridge-dumps", daemon=True)
        self._thread.start()
        self._next = 0
        self.errors = 0
        self.redactor: Redactor | None = None
        """Secrets in what is written replaced (`[redaction] audit`), here in the thread; a stream's chunk by chunk."""

    def open(self, path: Path, head: bytes | Callable[[], bytes]) -> int:
        """A file starting with `head`; a callable is rendered in the thread (pretty-printing a large body is
        work the event loop should not do)."""
        self._next += 1
        self._queue.put(("open", self._next, path, head))
        return self._next

    def write(self, handle: int, data: bytes) -> None:
        if data:
            self._queue.put(("write", handle, data))

    def close(self, handle: int, tail: bytes = b"") -> None:
        self._queue.put(("close", handle, tail))

    def file(self, path: Path, content: bytes | Callable[[], bytes]) -> None:
        self.close(self.open(path, content))

    def _failed(self, error: OSError) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 100 == 0:
            logger.warning("aibridge: cannot write an API dump: %s", error)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is on disk (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(("call", done.set))
        done.wait(timeout)

    def _scrubbed(self, data: bytes) -> bytes:
        if self.redactor is None:
            return data
        text = data.decode("utf-8", "surrogateescape")
        clean, found = self.redactor.redact(text)
        return clean.encode("utf-8", "surrogateescape") if found else data

    def _run(self) -> None:
        files: dict[int, IO[bytes] | None] = {}
        unflushed: set[int] = set()
        while (item := self._queue.get()) is not _STOP:
            op, *args = item  # type: ignore[misc]
            try:
                if op == "open":
                    handle, path, head = args
                    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # they hold prompts
                    files[handle] = f = os.fdopen(fd, "wb")
                    f.write(self._scrubbed(head() if callable(head) else head))
                    unflushed.add(handle)
                elif op == "write":
                    if (f := files.get(args[0])) is not None:
                        f.write(self._scrubbed(args[1]))
                        unflushed.add(args[0])
                elif op == "close":
                    if (f := files.pop(args[0], None)) is not None:
                        f.write(args[1])
                        f.close()
                elif op == "call":
                    for f in files.values():
                        if f is not None:
                            f.flush()
                    args[0]()
            except OSError as e:
                self._failed(e)
                if op == "open":
                    files[args[0]] = None  # later writes to it are dropped
            if unflushed and self._queue.empty():  # caught up: what arrived so far goes to the files
                for handle in unflushed:
                    if (f := files.get(handle)) is not None:
                        try:
                            f.flush()
                        except OSError as e:
                            self._failed(e)
                unflushed.clear()
        for f in files.values():
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


class Dumps(Observer):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writer = DumpWriter()
        self._rounds: dict[UUID, int] = {}
        """Upstream calls so far per running interception."""

    def event(self, event: AuditEvent) -> None:
        if isinstance(event, InterceptionEnded):
            self._rounds.pop(event.interception_id, None)

    def close(self) -> None:
        self.writer.stop()

    # --- bridged -------------------------------------------------------------------------------------------

    def upstream(self, job: "Job", url: str, headers: Headers, body: bytes) -> UpstreamCall:
        job_rounds = self._rounds[job.id] = self._rounds.get(job.id, 0) + 1
        model = (job.info.model if job.info else None) or "unknown"
        base = f"{int(time.time() * 1000)}-{job.id}-{job_rounds}"
        stem = self.directory / safe_name(job.route.provider.name) / safe_name(model) / base
        parsed = httpx.URL(url)
        target = parsed.raw_path.decode("ascii", "replace")
        sent = [("host", parsed.netloc.decode("ascii")), *headers, ("content-length", str(len(body)))]  # as framed
        self.writer.file(stem.with_name(base + ".req.txt"), _rendered(("POST", target), sent, body))
        return _Call(self.writer, stem)

    # --- passthrough ---------------------------------------------------------------------------------------

    def passthrough_request(
        self, provider: str, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Path:
        """Dump a passthrough request; returns the stem its response goes under."""
        path = target.split("?", 1)[0]
        base = f"{int(time.time() * 1000)}-{safe_name(path.replace('/', '-'))}-{secrets.token_hex(2)}"
        stem = self.directory / safe_name(provider) / "passthrough" / base
        self.writer.file(stem.with_name(base + ".req.txt"), _rendered((method, target), headers, body))
        return stem

    def passthrough_response(
        self, stem: Path, status: int, reason: str, headers: Iterable[tuple[str, str]]
    ) -> Callable[[bytes], bytes]:
        """Start a passthrough response dump; the returned function is mitmproxy's `response.stream`: it
        passes every chunk on unchanged and writes it (b"" ends the body)."""
        headers = list(headers)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        sink = _ResponseSink(self.writer, stem, f"HTTP/1.1 {status} {reason}".rstrip(), headers, content_type)

        def tee(data: bytes) -> bytes:
            if data:
                sink.chunk(data)
            else:
                sink.end()
            return data

        return tee


def _request_line(method: str, target: str) -> str:
    return f"{method} {mask_target(target)} HTTP/1.1"


def _rendered(
    first_line: str | tuple[str, str], headers: Iterable[tuple[str, str]], body: bytes, tail: bytes = b""
) -> Callable[[], bytes]:
    """A whole dump file, rendered later (in the writer thread): the status line or (method, target) of a
    request, masked headers, then the body."""
    headers = list(headers)

    def render() -> bytes:
        line = first_line if isinstance(first_line, str) else _request_line(*first_line)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        rendered = render_body(body, content_type)
        return render_head(line, headers, rendered if body else None) + rendered + tail

    return render


class _ResponseSink:
    """A response body on its way to a `.resp.txt`: an event stream as it streams, JSON at its end (masked)."""

    def __init__(
        self, writer: DumpWriter, stem: Path, first_line: str, headers: list[tuple[str, str]], content_type: str
    ) -> None:
        self.writer = writer
        self.path = stem.with_name(stem.name + ".resp.txt")
        self.first_line = first_line
        self.headers = headers
        self.content_type = content_type
        self.streaming = "json" not in content_type.lower()
        self.buffer: list[bytes] = []
        self.size = 0
        self.handle: int | None = None
        self.ended = False
        if self.streaming:
            self.handle = writer.open(self.path, render_head(first_line, headers, None))

    def chunk(self, data: bytes) -> None:
        if self.handle is not None:
            self.writer.write(self.handle, data)
            return
        self.buffer.append(data)
        self.size += len(data)
        if self.size > MAX_JSON_BUFFER:  # too big to pretty-print: stream the rest raw
            self.handle = self.writer.open(self.path, render_head(self.first_line, self.headers, None))
            self.writer.write(self.handle, b"".join(self.buffer))
            self.buffer.clear()

    def end(self, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        tail = f"\n[aibridge: the body ended early: {error!r}]\n".encode() if error is not None else b""
        if self.handle is not None:
            self.writer.close(self.handle, tail)
            return
        self.writer.file(self.path, _rendered(self.first_line, self.headers, b"".join(self.buffer), tail))


class _Call(UpstreamCall):
    def __init__(self, writer: DumpWriter, stem: Path) -> None:
        self.writer = writer
        self.stem = stem
        self.sink: _ResponseSink | None = None

    def responded(self, response: httpx.Response) -> None:
        first = f"HTTP/1.1 {response.status_code} {response.reason_phrase}".rstrip()
        content_type = response.headers.get("content-type", "")
        self.sink = _ResponseSink(self.writer, self.stem, first, response.headers.multi_items(), content_type)

    def failed(self, status: int | None, error: BaseException) -> None:
        what = "cancelled: the client went away" if status is None else f"{status}: {error!r}"
        self.writer.file(self.stem.with_name(self.stem.name + ".req_error.txt"), f"{what}\n".encode())

    def chunk(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.chunk(data)

    def closed(self, error: BaseException | None) -> None:
        if self.sink is not None:
            self.sink.end(error)
