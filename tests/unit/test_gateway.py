"""The front door (addon/gateway.py): what `decide` does with a request, the body size limit, and `Gateway`
applying a configuration, wiring observers and building jobs."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from addon.audit import AuditEvent, PromptSubmitted
from addon.audit.lineage import Lineage
from addon.config import Config, hash_token, parse_config
from addon.engine.ports import Observer
from addon.gateway import MAX_REQUEST_BODY, Action, Decision, Gateway, decide, too_large
from addon.ids import uuid7
from addon.observe import NO_OBSERVER, ObservedRecorder, Observers
from addon.observe.dumps import Dumps
from addon.observe.jsonlog import JsonLog
from addon.policy.access import Users
from addon.policy.breaker import OPEN, Breakers, Circuit
from addon.policy.budgets import Ledger, month_start
from addon.policy.identity import mask_secret
from addon.providers.routing import classify
from tests.support.fakes import CHAT_HEADERS, CLAUDE_HEADERS, FakeUpstream

DEFAULTS = parse_config({})
NO_USERS = Users(())
ALICE_TOKEN = "aib_alice-0123456789abcdefghijklmnop"
NO_BYOK = parse_config({"allow_byok": False})


def decided(
    host: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    config: Config = DEFAULTS,
    proxy_user: str | None = None,
) -> Decision:
    decision = decide(config, Users(config.users), host, method, path, headers, proxy_user)
    assert decision is not None
    return decision


# --- decide -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["example.com", "anthropic.com", "api.anthropic.com.evil.net"])
def test_a_host_that_is_no_providers_is_not_decided(host: str) -> None:
    assert decide(DEFAULTS, NO_USERS, host, "POST", "/v1/messages", CLAUDE_HEADERS, None) is None


@pytest.mark.parametrize(
    ("host", "method", "path", "headers"),
    [
        ("api.anthropic.com", "GET", "/v1/models", CLAUDE_HEADERS),
        ("api.anthropic.com", "POST", "/v1/messages/count_tokens", CLAUDE_HEADERS),
        ("api.anthropic.com", "POST", "/v1/messages/count_tokens?beta=true", CLAUDE_HEADERS),
        ("api.anthropic.com", "GET", "/v1/messages", CLAUDE_HEADERS),
        ("api.openai.com", "GET", "/v1/models", CHAT_HEADERS),
        ("api.openai.com", "GET", "/v1/responses", CHAT_HEADERS),  # a WebSocket upgrade
    ],
)
def test_a_passthrough_path_is_passed(host: str, method: str, path: str, headers: list[tuple[str, str]]) -> None:
    decision = decided(host, method, path, headers)
    assert decision.action is Action.PASS
    assert decision.route.api is None
    assert decision.access.refusal is None
    assert decision.access.credential_kind == "byok"


def test_a_refused_passthrough_is_answered_in_anthropics_shape() -> None:
    decision = decided("api.anthropic.com", "GET", "/v1/models", CLAUDE_HEADERS, NO_BYOK)
    assert decision.action is Action.REFUSE
    status, body = decision.error()
    assert status == 403
    parsed = json.loads(body)
    assert parsed["type"] == "error"
    assert parsed["error"]["type"] == "permission_error"
    assert "bring-your-own-key is not enabled" in parsed["error"]["message"]


def test_a_refused_passthrough_is_answered_in_openais_shape() -> None:
    decision = decided("api.openai.com", "GET", "/v1/models", CHAT_HEADERS, NO_BYOK)
    assert decision.action is Action.REFUSE
    status, body = decision.error()
    assert status == 403
    parsed = json.loads(body)
    assert set(parsed) == {"error"}
    assert parsed["error"]["type"] == "permission_error"
    assert "bring-your-own-key is not enabled" in parsed["error"]["message"]


def test_an_invalid_bridge_token_on_a_passthrough_route_is_refused_with_401() -> None:
    headers = [("x-api-key", "aib_nobody-0123456789abcdefghijkl")]
    decision = decided("api.anthropic.com", "POST", "/v1/messages/count_tokens", headers)
    assert decision.action is Action.REFUSE
    status, body = decision.error()
    assert status == 401
    assert json.loads(body)["error"] == {"type": "authentication_error", "message": "invalid bridge token"}


def test_a_passthrough_without_credentials_is_passed_when_byok_is_off() -> None:
    decision = decided("api.openai.com", "GET", "/v1/models", [("User-Agent", "x")], NO_BYOK)
    assert decision.action is Action.PASS


def test_the_responses_api_is_tapped() -> None:
    decision = decided("api.openai.com", "POST", "/v1/responses", CHAT_HEADERS)
    assert decision.action is Action.TAP
    assert decision.route.api is not None and decision.route.api.tapped


@pytest.mark.parametrize(
    ("host", "path", "headers"),
    [
        ("api.anthropic.com", "/v1/messages", CLAUDE_HEADERS),
        ("api.anthropic.com", "/v1/messages?beta=true", CLAUDE_HEADERS),
        ("api.openai.com", "/v1/chat/completions", CHAT_HEADERS),
        ("api.openai.com", "/v1/chat/completions?x=1", CHAT_HEADERS),
    ],
)
def test_messages_and_chat_completions_are_bridged(host: str, path: str, headers: list[tuple[str, str]]) -> None:
    decision = decided(host, "POST", path, headers)
    assert decision.action is Action.BRIDGE
    assert decision.route.bridged
    assert decision.access.refusal is None


MANTLE = "bedrock-mantle.us-east-1.api.aws"
SIGV4 = [("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261202/us-east-1/bedrock-mantle/aws4_request")]


def test_a_sigv4_signed_request_is_tapped_whatever_its_api() -> None:
    """The signature covers the body: a tool injected would break it, so the call is recorded as it is."""
    signed = decided(MANTLE, "POST", "/anthropic/v1/messages", SIGV4)
    assert (signed.action, signed.route.sealed, signed.route.tapped, signed.route.bridged) == (
        Action.TAP,
        True,
        True,
        False,
    )
    job = Gateway.job(signed, "/anthropic/v1/messages", b"{}")
    assert job.metadata == {"tapped": "the body is SigV4-signed"}
    keyed = decided(MANTLE, "POST", "/anthropic/v1/messages", [("Authorization", "Bearer bedrock-api-key-0123")])
    assert (keyed.action, keyed.route.sealed) == (Action.BRIDGE, False)  # a key is reusable: bridged
    assert Gateway.job(keyed, "/anthropic/v1/messages", b"{}").metadata == {}
    passed = decided(MANTLE, "GET", "/anthropic/v1/models", SIGV4)
    assert (passed.action, passed.route.sealed) == (Action.PASS, False)


def test_a_refusal_of_a_bridged_route_is_left_to_the_engine_to_record() -> None:
    headers = [("Authorization", "Bearer aib_nobody-0123456789abcdefghijkl")]
    decision = decided("api.openai.com", "POST", "/v1/chat/completions", headers)
    assert decision.action is Action.BRIDGE  # not REFUSE: the engine answers it, on record
    assert decision.access.refusal is not None
    assert decision.access.refusal.status == 401
    status, body = decision.error()
    assert status == 401
    assert json.loads(body)["error"]["message"] == "invalid bridge token"


def test_a_refusal_of_a_tapped_route_is_left_to_the_engine_too() -> None:
    decision = decided("api.openai.com", "POST", "/v1/responses", CHAT_HEADERS, NO_BYOK)
    assert decision.action is Action.TAP
    assert decision.access.refusal is not None
    assert decision.access.refusal.status == 403


# --- too_large ----------------------------------------------------------------------------------------------


def test_a_body_at_the_limit_is_not_too_large() -> None:
    route = classify(DEFAULTS, "api.anthropic.com", "POST", "/v1/messages")
    assert too_large(route, 0) is None
    assert too_large(route, MAX_REQUEST_BODY) is None


def test_a_recorded_route_over_the_limit_gets_a_provider_shaped_413() -> None:
    size = MAX_REQUEST_BODY + 1
    anthropic = too_large(classify(DEFAULTS, "api.anthropic.com", "POST", "/v1/messages"), size)
    assert anthropic is not None
    status, body, message = anthropic
    assert status == 413
    assert str(size) in message and str(MAX_REQUEST_BODY) in message
    assert json.loads(body) == {"type": "error", "error": {"type": "request_too_large", "message": message}}

    openai = too_large(classify(DEFAULTS, "api.openai.com", "POST", "/v1/chat/completions"), size)
    assert openai is not None
    assert openai[0] == 413
    assert json.loads(openai[1])["error"]["message"] == openai[2]
    assert "type" in json.loads(openai[1])["error"]

    tapped = too_large(classify(DEFAULTS, "api.openai.com", "POST", "/v1/responses"), size)
    assert tapped is not None and tapped[0] == 413


def test_passthrough_routes_and_no_route_are_never_too_large() -> None:
    passthrough = classify(DEFAULTS, "api.anthropic.com", "POST", "/v1/messages/count_tokens")
    assert passthrough is not None and passthrough.api is None
    assert too_large(passthrough, MAX_REQUEST_BODY * 10) is None
    assert too_large(None, MAX_REQUEST_BODY * 10) is None


# --- Gateway ------------------------------------------------------------------------------------------------


class StubWriter:
    """An audit writer's surface that the gateway uses, remembering each call."""

    path = target = "stub.duckdb"  # a file: no shared state

    def __init__(self, spend: dict[str, int] | None = None) -> None:
        self.spend = spend or {}
        self.retention: list[int | None] = []
        self.spend_asked: list[datetime] = []
        self.lookups: list[str] = []
        self.events: list[AuditEvent] = []

    def set_retention(self, days: int | None) -> None:
        self.retention.append(days)

    def spend_since(self, since: datetime) -> dict[str, int]:
        self.spend_asked.append(since)
        return dict(self.spend)

    def find_tool_call(self, tool_call_id: str) -> tuple[UUID, UUID | None] | None:
        self.lookups.append(tool_call_id)
        return None

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


class SeenEvents(Observer):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def event(self, event: AuditEvent) -> None:
        self.events.append(event)


def gateway(writer: StubWriter | None = None) -> Gateway:
    return Gateway(writer or StubWriter(), FakeUpstream())  # type: ignore[arg-type]


BUDGETED: dict[str, Any] = {
    "users": {"alice": {"token": hash_token(ALICE_TOKEN)}},
    "budgets": {"users": {"alice": 5}},
}


def test_apply_sets_the_engines_limits_prices_and_retention() -> None:
    writer = StubWriter()
    gw = gateway(writer)
    config = parse_config(
        {
            "max_tool_rounds": 3,
            "keepalive_interval": 2.5,
            "retention_days": 40,
            "prices": {"anthropic/house-model": {"input": 1, "output": 2}},
        }
    )
    assert gw.engine.prices.prices("anthropic", "house-model") is None
    gw.apply(config)
    assert gw.config is config
    assert gw.engine.max_tool_rounds == 3
    assert gw.engine.keepalive_interval == 2.5
    prices = gw.engine.prices.prices("anthropic", "house-model")
    assert prices is not None
    assert (prices.input, prices.output) == (1, 2)
    assert writer.retention[-1] == 40


def test_apply_without_budgets_keeps_no_ledger_and_reads_no_spend() -> None:
    writer = StubWriter({"alice": 1})
    gw = gateway(writer)
    gw.apply(parse_config({}))
    assert gw.engine.ledger is None
    assert writer.spend_asked == []


def test_apply_with_budgets_rebuilds_the_ledger_from_this_months_spend() -> None:
    writer = StubWriter({"alice": 1_234_567})
    gw = gateway(writer)
    before = month_start(datetime.now(UTC))
    gw.apply(parse_config(BUDGETED))
    ledger = gw.engine.ledger
    assert isinstance(ledger, Ledger)
    assert writer.spend_asked[-1] in (before, month_start(datetime.now(UTC)))
    assert ledger.limit_for("alice") == 5_000_000
    assert ledger.spent("alice") == 1_234_567
    assert gw.users.by_token(ALICE_TOKEN) is not None

    gw.apply(parse_config({}))
    assert gw.engine.ledger is None


def test_apply_with_a_group_budget_only_keeps_a_ledger() -> None:
    gw = gateway()
    gw.apply(parse_config({"budgets": {"groups": {"eng": 10}}}))
    assert isinstance(gw.engine.ledger, Ledger)


def test_breakers_exist_only_while_configured() -> None:
    gw = gateway()
    gw.apply(parse_config({}))
    assert gw.breakers is None
    gw.apply(parse_config({"circuit_breaker": {"failure_threshold": 2}}))
    assert isinstance(gw.breakers, Breakers)
    assert gw.breakers.config.failure_threshold == 2
    gw.apply(parse_config({"circuit_breaker": {"enabled": False}}))
    assert gw.breakers is None


def test_breakers_survive_an_equal_config_and_restart_closed_on_a_new_one() -> None:
    gw = gateway()
    gw.apply(parse_config({"circuit_breaker": {"failure_threshold": 2}}))
    breakers = gw.breakers
    assert breakers is not None
    breakers.circuits[("anthropic", "claude-sonnet-4-5")] = Circuit(state=OPEN, failures=2)

    gw.apply(parse_config({"circuit_breaker": {"failure_threshold": 2}, "max_tool_rounds": 4}))
    assert gw.breakers is breakers
    assert breakers.circuits[("anthropic", "claude-sonnet-4-5")].state == OPEN

    gw.apply(parse_config({"circuit_breaker": {"failure_threshold": 3}}))
    assert gw.breakers is not breakers
    assert gw.breakers is not None
    assert gw.breakers.circuits == {}
    assert isinstance(gw.engine.observer, Observers)
    assert gw.engine.observer.observers == (gw.breakers,)


UNREDACTED: dict[str, Any] = {"redaction": {"audit": False}}


def test_with_no_breaker_and_no_observers_the_engine_records_straight_to_the_writer() -> None:
    writer = StubWriter()
    gw = gateway(writer)
    gw.apply(parse_config(UNREDACTED))
    assert gw.engine.observer is NO_OBSERVER
    assert gw.engine.recorder is writer

    gw.observe([SeenEvents()])
    gw.observe([])
    assert gw.engine.observer is NO_OBSERVER
    assert gw.engine.recorder is writer


def test_observe_puts_the_breaker_first_and_tees_the_recorder() -> None:
    writer = StubWriter()
    gw = gateway(writer)
    gw.apply(parse_config({"circuit_breaker": {}, **UNREDACTED}))
    first, second = SeenEvents(), SeenEvents()
    gw.observe([first, second])
    observer = gw.engine.observer
    assert isinstance(observer, Observers)
    assert observer.observers == (gw.breakers, first, second)
    recorder = gw.engine.recorder
    assert isinstance(recorder, ObservedRecorder)
    assert recorder.inner is writer
    assert isinstance(recorder.observer, Observers) and recorder.observer.observers == observer.observers
    assert recorder.keeps_text is None  # none of these keeps text

    event = PromptSubmitted(interception_id=uuid7(), provider_response_id=None, prompt="hi")
    recorder.emit(event)
    assert writer.events == [event]
    assert first.events == [event] and second.events == [event]


def test_observers_stay_wired_across_apply() -> None:
    gw = gateway()
    seen = SeenEvents()
    gw.observe([seen])
    gw.apply(parse_config({"max_tool_rounds": 2}))
    assert isinstance(gw.engine.observer, Observers)
    assert gw.engine.observer.observers == (seen,)
    gw.apply(parse_config({"circuit_breaker": {}}))
    assert gw.engine.observer.observers == (gw.breakers, seen)  # type: ignore[attr-defined]


async def test_use_writer_repoints_recorder_lineage_retention_and_budgets() -> None:
    old, new = StubWriter({"alice": 1}), StubWriter({"alice": 2})
    gw = gateway(old)
    gw.apply(parse_config({**BUDGETED, "retention_days": 60, **UNREDACTED}))
    gw.use_writer(new)
    assert gw.writer is new
    assert gw.engine.recorder is new
    assert new.retention == [60]
    assert gw.engine.ledger is not None and gw.engine.ledger.spent("alice") == 2
    assert isinstance(gw.engine.lineage, Lineage)
    assert await gw.engine.lineage.resolve("toolu_1") == (None, None)
    assert new.lookups == ["toolu_1"]
    assert old.lookups == []


def test_use_writer_keeps_the_observers_teed() -> None:
    old, new = StubWriter(), StubWriter()
    gw = gateway(old)
    gw.observe([SeenEvents()])
    gw.use_writer(new)
    recorder = gw.engine.recorder
    assert isinstance(recorder, ObservedRecorder)
    assert recorder.inner is new


def test_gateway_decide_and_route_use_the_applied_config() -> None:
    gw = gateway()
    gw.apply(NO_BYOK)
    decision = gw.decide("api.anthropic.com", "GET", "/v1/models", CLAUDE_HEADERS, None)
    assert decision is not None and decision.action is Action.REFUSE
    assert gw.decide("example.com", "GET", "/", [], None) is None
    route = gw.route("api.openai.com", "POST", "/v1/chat/completions")
    assert route is not None and route.bridged
    assert gw.route("example.com", "POST", "/v1/chat/completions") is None


def test_job_carries_the_access_and_extra_metadata() -> None:
    decision = decided("api.anthropic.com", "POST", "/v1/messages?beta=true", CLAUDE_HEADERS, proxy_user="alice")
    job = Gateway.job(decision, "/v1/messages?beta=true", b"{}", source="sdk", api_key_id="k1")
    assert job.route is decision.route
    assert job.path == "/v1/messages?beta=true"
    assert job.body == b"{}"
    assert job.headers == decision.access.headers
    assert job.initiator == "alice"
    assert job.credential_kind == "byok"
    assert job.credential_hint == mask_secret("sk-ant-api03-abcdefgh")
    assert job.metadata == {"source": "sdk", "api_key_id": "k1"}


def test_job_records_a_chatgpt_account_as_a_masked_hint() -> None:
    account = "acct-0123456789abcdefghij"
    headers = [("Authorization", "Bearer eyJ-user-token-0123456789"), ("ChatGPT-Account-ID", account)]
    decision = decided("chatgpt.com", "POST", "/backend-api/codex/responses", headers)
    job = Gateway.job(decision, "/backend-api/codex/responses", b"{}", source="x")
    assert job.metadata == {"account_hint": mask_secret(account), "source": "x"}
    assert account not in json.dumps(job.metadata)

    plain = Gateway.job(decided("api.openai.com", "POST", "/v1/responses", CHAT_HEADERS), "/v1/responses", b"{}")
    assert plain.metadata == {}


def test_where_the_bridge_signs_a_signed_request_is_bridged_and_an_anonymous_one_tapped() -> None:
    aws = {"aws_access_key_id": "AKIAOPERATOR00000000", "aws_secret_access_key": "operator-secret"}
    config = parse_config(
        {"providers": {"bedrock-mantle": aws}, "users": {"alice": {"token": hash_token("aib_alice-0123456789abcdef")}}}
    )
    token = [("Authorization", "Bearer aib_alice-0123456789abcdef")]
    signed_for = decided(MANTLE, "POST", "/anthropic/v1/messages", token, config)
    assert (signed_for.action, signed_for.route.sealed, signed_for.access.aws is not None) == (
        Action.BRIDGE,
        False,
        True,
    )
    own = decided(MANTLE, "POST", "/anthropic/v1/messages", SIGV4, config, "alice")
    assert (own.action, own.route.sealed, own.access.credential_kind) == (Action.TAP, True, "byok")


GEMINI = "generativelanguage.googleapis.com"
GEMINI_PATH = "/v1beta/models/gemini-2.5-pro:streamGenerateContent"


def test_a_key_in_the_query_is_the_clients_own_and_stays_in_its_url() -> None:
    own = decided(GEMINI, "POST", f"{GEMINI_PATH}?alt=sse&key=AIzaSy-own-key-0123", [])
    assert (own.action, own.path, own.access.credential_kind) == (Action.BRIDGE, None, "byok")
    assert own.access.credential_hint == mask_secret("AIzaSy-own-key-0123") and own.access.headers == []
    refused = decided(GEMINI, "POST", f"{GEMINI_PATH}?key=AIzaSy-own-key-0123", [], NO_BYOK)
    assert refused.access.refusal is not None and refused.access.refusal.status == 403


def test_a_bridge_token_in_the_query_never_leaves_the_proxy() -> None:
    token = "aib_alice-0123456789abcdef"
    config = parse_config(
        {"providers": {"gemini": {"key": "AIzaSy-central-0123"}}, "users": {"alice": {"token": hash_token(token)}}}
    )
    decision = decided(GEMINI, "POST", f"{GEMINI_PATH}?key={token}&alt=sse", [("Accept", "*/*")], config)
    assert decision.path == f"{GEMINI_PATH}?alt=sse" and decision.access.initiator == "alice"
    assert decision.access.headers == [("Accept", "*/*"), ("x-goog-api-key", "AIzaSy-central-0123")]
    assert decision.action is Action.BRIDGE  # alt=sse still there: the SSE endpoint
    header_wins = decided(GEMINI, "POST", f"{GEMINI_PATH}?key=AIza-q", [("x-goog-api-key", token)], config)
    assert header_wins.path is None and header_wins.access.credential_kind == "centralized"
    # A token in the URL leaves it, whatever else the request carries.
    beside_a_header = decided(
        GEMINI, "POST", f"{GEMINI_PATH}?alt=sse&key={token}", [("x-goog-api-key", "AIza")], config
    )
    assert beside_a_header.path == f"{GEMINI_PATH}?alt=sse"
    beside_a_key = decided(GEMINI, "POST", f"{GEMINI_PATH}?key={token}&key=AIza-own", [], config)
    assert beside_a_key.path == GEMINI_PATH and beside_a_key.access.credential_kind == "centralized"
    vertex = "/v1/publishers/google/models/gemini-2.5-flash:generateContent"  # express mode takes keys too
    on_vertex = decided("aiplatform.googleapis.com", "POST", f"{vertex}?key={token}", [], config)
    assert on_vertex.path == vertex and on_vertex.access.refusal is not None  # no central key on Vertex


def test_by_default_the_writer_scrubs_in_its_thread_and_text_keeping_observers_see_the_same(tmp_path: Path) -> None:
    writer = StubWriter()
    gw = gateway(writer)
    counting, dumps, log = SeenEvents(), Dumps(tmp_path), SeenLog()
    gw.observe([counting, dumps])
    gw.apply(parse_config({}))
    assert writer.scrub is gw.scrubber and gw.scrubber.redactor is not None  # type: ignore[attr-defined]
    assert dumps.writer.redactor is gw.scrubber.redactor  # whole bodies, in the dump thread
    recorder = gw.engine.recorder
    assert isinstance(recorder, ObservedRecorder) and recorder.keeps_text is None  # nobody on the loop keeps text
    gw.observe([counting, dumps, log])
    recorder = gw.engine.recorder
    assert isinstance(recorder, ObservedRecorder) and recorder.scrub is gw.scrubber
    key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    event = PromptSubmitted(interception_id=uuid7(), provider_response_id=None, prompt=f"use {key}")
    recorder.emit(event)
    assert writer.events == [event]  # the writer's copy is scrubbed in its thread
    assert counting.events == [event]  # metrics count what came
    assert [e.prompt for e in log.events] == ["use [REDACTED:aws-access-key]"]  # type: ignore[attr-defined]
    gw.apply(parse_config({"record": "metadata", **UNREDACTED}))
    assert gw.scrubber.redactor is None and dumps.writer.redactor is None and writer.scrub is gw.scrubber  # type: ignore[attr-defined]
    gw.engine.recorder.emit(PromptSubmitted(interception_id=uuid7(), provider_response_id=None, prompt="x"))
    assert len(log.events) == 1 and len(counting.events) == 2  # metadata only: the log gets no prompt at all
    gw.apply(parse_config(UNREDACTED))
    assert writer.scrub is None  # type: ignore[attr-defined]
    dumps.close()


class SeenLog(JsonLog):
    """The JSON log's kind (it keeps error text), remembering what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[AuditEvent] = []

    def event(self, event: AuditEvent) -> None:
        self.events.append(event)


def test_guards_reach_the_engine() -> None:
    gw = gateway()
    gw.apply(parse_config({"allowed_models": {"users": {"alice": ["claude-*"]}}, "redaction": {"outbound": "block"}}))
    assert gw.engine.models is not None and gw.engine.models.allowed("alice") == ("claude-*",)
    assert gw.engine.outbound is not None and gw.engine.outbound[0] == "block"
    gw.apply(parse_config({}))
    assert gw.engine.models is None and gw.engine.outbound is None
