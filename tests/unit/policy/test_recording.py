"""What the audit keeps: events scrubbed of secrets ahead of every consumer, or only their metadata."""

from addon.audit import InterceptionEnded, PromptSubmitted, ThoughtRecorded, TokensUsed, ToolCalled, ToolResultReturned
from addon.ids import uuid7
from addon.policy.recording import Scrubber


class FakeRedactor:
    """Redacts the word `hunter2` as a password: the real detector has tests of its own."""

    def redact(self, text: str) -> tuple[str, tuple[str, ...]]:
        if "hunter2" not in text:
            return text, ()
        return text.replace("hunter2", "[REDACTED:password]"), ("password",)


ID = uuid7()


def prompt(text: str) -> PromptSubmitted:
    return PromptSubmitted(interception_id=ID, provider_response_id=None, prompt=text)


def tool(args: str | None, error: str | None = None) -> ToolCalled:
    return ToolCalled(
        interception_id=ID,
        provider_response_id="msg_1",
        provider_tool_call_id="toolu_1",
        server_url=None,
        tool="Bash",
        input=args,
        injected=False,
        invocation_error=error,
        metadata={"redacted": ["aws-access-key"]},
    )


def test_secrets_are_replaced_and_their_kinds_noted() -> None:
    scrub = Scrubber(FakeRedactor())  # type: ignore[arg-type]
    kept = scrub(prompt("my password is hunter2"))
    assert isinstance(kept, PromptSubmitted)
    assert kept.prompt == "my password is [REDACTED:password]" and kept.metadata == {"redacted": ["password"]}
    call = scrub(tool('{"cmd": "login hunter2"}', error="exit 1: hunter2 rejected"))
    assert isinstance(call, ToolCalled) and call.input == '{"cmd": "login [REDACTED:password]"}'
    assert call.invocation_error == "exit 1: [REDACTED:password] rejected"
    assert call.metadata["redacted"] == ["aws-access-key", "password"]  # what was noted before stays
    thought = scrub(ThoughtRecorded(interception_id=ID, content="they typed hunter2"))
    assert isinstance(thought, ThoughtRecorded) and "hunter2" not in thought.content
    end = scrub(InterceptionEnded(interception_id=ID, status="failed", error="upstream said: hunter2 is bad"))
    assert isinstance(end, InterceptionEnded) and end.error == "upstream said: [REDACTED:password] is bad"
    assert scrub.redacted == 4


def test_clean_events_pass_as_they_are() -> None:
    scrub = Scrubber(FakeRedactor())  # type: ignore[arg-type]
    clean = prompt("nothing to see")
    assert scrub(clean) is clean
    usage = TokensUsed(
        interception_id=ID,
        provider_response_id="msg_1",
        input_tokens=1,
        output_tokens=2,
        cache_read_input_tokens=0,
        cache_write_input_tokens=0,
    )
    assert scrub(usage) is usage
    assert scrub.redacted == 0
    none = Scrubber(None)
    secret = prompt("hunter2")
    assert none(secret) is secret  # redaction off: kept as it is


def test_metadata_only_drops_text_and_keeps_the_facts() -> None:
    scrub = Scrubber(FakeRedactor(), "metadata")  # type: ignore[arg-type]
    assert scrub(prompt("the roadmap")) is None
    assert scrub(ThoughtRecorded(interception_id=ID, content="plans")) is None
    call = scrub(tool('{"path": "/etc"}', error="denied"))
    assert isinstance(call, ToolCalled)
    assert (call.tool, call.input, call.invocation_error, call.provider_tool_call_id) == ("Bash", None, None, "toolu_1")
    end = InterceptionEnded(interception_id=ID, status="completed", http_status=200)
    assert scrub(end) is end


def result(excerpt: str | None) -> ToolResultReturned:
    return ToolResultReturned(
        interception_id=ID, provider_tool_call_id="toolu_1", is_error=False, size_bytes=40, excerpt=excerpt
    )


def test_a_tool_results_excerpt_is_redacted_or_dropped_its_facts_kept() -> None:
    kept = Scrubber(FakeRedactor())(result("cat .env: PASSWORD=hunter2"))  # type: ignore[arg-type]
    assert isinstance(kept, ToolResultReturned) and kept.excerpt == "cat .env: PASSWORD=[REDACTED:password]"
    assert kept.metadata == {"redacted": ["password"]}
    bare = Scrubber(FakeRedactor(), "metadata")(result("PASSWORD=hunter2"))  # type: ignore[arg-type]
    assert isinstance(bare, ToolResultReturned)
    assert (bare.excerpt, bare.size_bytes, bare.is_error, bare.provider_tool_call_id) == (None, 40, False, "toolu_1")


def test_a_secret_across_the_excerpts_cut_is_redacted_before_the_cut() -> None:
    longer = ToolResultReturned(
        interception_id=ID,
        provider_tool_call_id="toolu_1",
        is_error=False,
        size_bytes=40,
        excerpt="PASSWORD=hunter2 and more",
        keep=12,  # the cut falls inside the secret
    )
    kept = Scrubber(FakeRedactor())(longer)  # type: ignore[arg-type]
    assert kept is not None
    assert kept.prepared().excerpt == "PASSWORD=[RE"  # what the writer stores: no half of the secret
