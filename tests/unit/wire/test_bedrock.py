"""Bedrock's wire formats (addon/wire/bedrock.py): Converse's requests and answers read for the audit, whole and
streamed (the frames as the tap hands them over), and Bedrock's error bodies as botocore reads them."""

import json

from botocore.parsers import RestJSONParser

from addon.wire.bedrock import BedrockConverse, BedrockInvoke, error_body, frame_event
from addon.wire.eventstream import EventStreamDecoder
from tests.support.scenarios import converse_frames, converse_response

CONVERSE = BedrockConverse()


def test_a_converse_request_gives_its_model_prompt_and_limit() -> None:
    body = {
        "model": "anthropic.claude-sonnet-4-5-20250929-v1:0",  # the path's, as the engine adds it
        "stream": True,
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "<system-reminder>ctx</system-reminder>"}, {"text": "hi there"}]}
        ],
        "inferenceConfig": {"maxTokens": 512},
    }
    info = CONVERSE.parse_request(body)
    assert (info.model, info.stream, info.prompt, info.max_output) == (body["model"], True, "hi there", 512)
    assert info.correlating_tool_call_id is None


def test_a_converse_tool_result_links_to_the_call() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "weather?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu_1", "name": "w", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tu_1", "content": [{"text": "sunny"}]}}]},
        ]
    }
    info = CONVERSE.parse_request(body)
    assert (info.prompt, info.correlating_tool_call_id, info.stream, info.max_output) == (None, "tu_1", False, None)


def test_a_whole_converse_answer() -> None:
    parser = CONVERSE.parser()
    answer = converse_response("Sure.", reasoning="thinking hard", tools=[("tu_9", "read_file", {"path": "a"})])
    parser.feed_body(json.dumps(answer).encode())
    turn = parser.turn()
    assert [(c.id, c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [("tu_9", "read_file", {"path": "a"})]
    assert [(t.content, t.source) for t in turn.thoughts] == [("thinking hard", "thinking")]
    assert turn.stop_reason == "tool_use"
    assert turn.usage is not None
    assert (turn.usage.input, turn.usage.output, turn.usage.cache_read, turn.usage.cache_write) == (11, 6, 10, 0)


def test_a_converse_stream_read_from_its_frames() -> None:
    parser = CONVERSE.parser()
    frames = converse_frames(["Hi ", "there"], reasoning="let me see", tools=[("tu_1", "grep", '{"q": "x"}')])
    events = [frame_event(f) for f in EventStreamDecoder().feed(b"".join(frames))]
    for event in events[:-1]:
        assert not CONVERSE.ends_stream(event)
        parser.feed_event(event)
    assert CONVERSE.ends_stream(events[-1])  # `metadata` comes last, with the usage
    parser.feed_event(events[-1])
    turn = parser.turn()
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [("tu_1", "grep", '{"q": "x"}')]
    assert [t.content for t in turn.thoughts] == ["let me see"]
    assert turn.usage is not None and (turn.usage.input, turn.usage.cache_read) == (11, 10)
    assert (turn.stop_reason, turn.error) == ("tool_use", None)


def test_an_exception_frame_is_the_turns_error() -> None:
    from addon.wire.eventstream import encode

    frame = encode(
        {":message-type": "exception", ":exception-type": "throttlingException", ":content-type": "application/json"},
        b'{"message": "Too many requests"}',
    )
    [event] = [frame_event(f) for f in EventStreamDecoder().feed(frame)]
    assert CONVERSE.ends_stream(event)
    parser = CONVERSE.parser()
    parser.feed_event(event)
    assert parser.turn().error == "throttlingException: Too many requests"


def test_an_error_body_is_the_turns_error() -> None:
    parser = CONVERSE.parser()
    parser.feed_body(b'{"message": "The model is not ready"}')
    assert parser.turn().error == "The model is not ready"


def test_errors_read_as_botocore_reads_bedrocks() -> None:
    for status, code in [(400, "ValidationException"), (429, "ThrottlingException"), (502, "InternalServerException")]:
        body = error_body(status, "no")
        parsed = RestJSONParser().parse({"status_code": status, "headers": {}, "body": body}, None)
        assert parsed["Error"] == {"Code": code, "Message": "no"}
    assert BedrockInvoke().error_body(413, "big") == error_body(413, "big") == CONVERSE.error_body(413, "big")


def test_a_frame_whose_payload_is_not_what_it_should_be_is_an_empty_event() -> None:
    from addon.wire.eventstream import encode

    headers = {":event-type": "chunk", ":message-type": "event"}
    for payload in (b"not json", b'{"bytes": "%%%"}', b'{"bytes": 3}'):
        [event] = [frame_event(f) for f in EventStreamDecoder().feed(encode(headers, payload))]
        assert (event.event, event.data) == ("", "")
    exception = encode({":message-type": "exception", ":exception-type": "modelStreamErrorException"}, b"<html>")
    [event] = [frame_event(f) for f in EventStreamDecoder().feed(exception)]
    assert json.loads(event.data)["error"] == {
        "type": "modelStreamErrorException",
        "message": "modelStreamErrorException",
    }
