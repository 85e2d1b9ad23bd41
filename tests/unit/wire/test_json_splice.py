"""set_member and extend_array: one top-level member changed, every other byte of the document kept."""

import json

import pytest

from addon.wire.json_splice import extend_array, member_spans, set_member

UNICODE_DOC = '{"msg": "héllo \\u00e9 ✓ 😀 \\ud83d\\ude00", "n": 1}'.encode()


def test_replace_an_existing_member() -> None:
    raw = b'{"model":"gpt-4o","stream_options":{"include_usage":false},"stream":true}'
    out = set_member(raw, "stream_options", '{"include_usage":true}')
    assert out == b'{"model":"gpt-4o","stream_options":{"include_usage":true},"stream":true}'


def test_append_a_new_member_last() -> None:
    raw = b'{"model":"gpt-4o","stream":true}'
    assert set_member(raw, "stream_options", '{"include_usage":true}') == (
        b'{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}'
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{}", b'{"k":1}'),
        (b"{ \n }", b'{ \n "k":1}'),
        (b"  {}\n", b'  {"k":1}\n'),
    ],
)
def test_empty_object(raw: bytes, expected: bytes) -> None:
    assert set_member(raw, "k", "1") == expected


def test_whitespace_is_preserved() -> None:
    raw = b'{\n  "a": 1,\n  "b": 2\n}\n'
    assert set_member(raw, "a", "10") == b'{\n  "a": 10,\n  "b": 2\n}\n'
    assert set_member(raw, "c", "3") == b'{\n  "a": 1,\n  "b": 2,"c":3\n}\n'


def test_escaped_member_name_is_matched_by_its_decoded_value() -> None:
    raw = b'{"stream\\u005foptions": null, "x": 0}'
    out = set_member(raw, "stream_options", '{"include_usage":true}')
    assert out == b'{"stream\\u005foptions": {"include_usage":true}, "x": 0}'
    assert json.loads(out) == {"stream_options": {"include_usage": True}, "x": 0}


def test_new_member_name_is_json_escaped() -> None:
    out = set_member(b"{}", 'we"ird\\ké', "1")
    assert json.loads(out) == {'we"ird\\ké': 1}


def test_nested_members_of_the_same_name_are_not_touched() -> None:
    raw = b'{"outer": {"stream_options": 1}, "s": "{\\"stream_options\\": 2}"}'
    out = set_member(raw, "stream_options", "3")
    assert out == raw[:-1] + b',"stream_options":3}'


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'"text"', b"null", b"42", b"", b"   ", b'{"a":}', b'{"a" 1}', b'{"a":1 "b":2}', b"{1: 2}", b'{"a":1,'],
)
def test_not_a_json_object_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        set_member(raw, "k", "1")


def test_invalid_utf8_raises_value_error() -> None:
    with pytest.raises(ValueError):
        set_member(b'{"a": "\xff"}', "k", "1")


def test_member_spans() -> None:
    text = '{ "a" : [1, {"b": "}"}] , "c":"x\\"y" }'
    spans, close = member_spans(text)
    assert {k: text[s:e] for k, (s, e) in spans.items()} == {"a": '[1, {"b": "}"}]', "c": '"x\\"y"'}
    assert text[close] == "}" and close == len(text) - 1


# (document, key, new value JSON, the old value's exact bytes or None when appended, expected document)
CASES = [
    (
        b'{"model": "gpt-4o",\n "stream": true, "messages": [{"role":"user","content":"hi \\u00e9"}]}',
        "stream_options",
        '{"include_usage":true}',
        None,
        {
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "hi é"}],
            "stream_options": {"include_usage": True},
        },
    ),
    (
        b'{ "a" : "x\\"}y" , "stream_options" : {"include_usage": false},\n  "z": [1, 2.50, 1e3, -0.0] }\n',
        "stream_options",
        '{"include_usage":true}',
        b'{"include_usage": false}',
        {"a": 'x"}y', "stream_options": {"include_usage": True}, "z": [1, 2.5, 1000.0, -0.0]},
    ),
    (
        UNICODE_DOC,
        "stream_options",
        '{"include_usage":true,"x":"é"}',
        None,
        {"msg": "héllo é ✓ 😀 😀", "n": 1, "stream_options": {"include_usage": True, "x": "é"}},
    ),
    (
        UNICODE_DOC,
        "n",
        '"ü"',
        b"1",
        {"msg": "héllo é ✓ 😀 😀", "n": "ü"},
    ),
    (
        b'{"cache_control":{"type":"ephemeral"},"big":12345678901234567890,"f":1.0E+2,"t":"\\t\\/"}',
        "big",
        "0",
        b"12345678901234567890",
        {"cache_control": {"type": "ephemeral"}, "big": 0, "f": 100.0, "t": "\t/"},
    ),
    (
        b'{"k":{"deep":[{"k":1}]},"last":null}',
        "k",
        "[]",
        b'{"deep":[{"k":1}]}',
        {"k": [], "last": None},
    ),
]


@pytest.mark.parametrize(("raw", "key", "value", "old", "expected"), CASES)
def test_splice_properties(raw: bytes, key: str, value: str, old: bytes | None, expected: dict) -> None:
    out = set_member(raw, key, value)
    assert json.loads(out) == expected
    if old is not None:
        assert raw.count(old) == 1
        assert out == raw.replace(old, value.encode())
    else:
        member = (("," if json.loads(raw) else "") + json.dumps(key) + ":" + value).encode()
        at = out.find(member)
        assert at > 0
        assert out[:at] + out[at + len(member) :] == raw


# --- extend_array ----------------------------------------------------------------------------------------

ITEMS = ['{"name":"x"}', '{"name":"y"}']


def test_extend_array_appends_last() -> None:
    raw = b'{"tools": [{"name": "a"}, {"name": "b"}], "z": 1}'
    out = extend_array(raw, "tools", ITEMS)
    assert out == b'{"tools": [{"name": "a"}, {"name": "b"},{"name":"x"},{"name":"y"}], "z": 1}'


def test_extend_array_prepends_first() -> None:
    raw = b'{"tools": [{"name": "a"}, {"name": "b"}], "z": 1}'
    out = extend_array(raw, "tools", ITEMS, at_start=True)
    assert out == b'{"tools": [{"name":"x"},{"name":"y"},{"name": "a"}, {"name": "b"}], "z": 1}'


@pytest.mark.parametrize("at_start", [False, True])
@pytest.mark.parametrize("empty", [b"[]", b"[ ]", b"[\n  ]"])
def test_extend_array_fills_an_empty_array(empty: bytes, at_start: bool) -> None:
    raw = b'{"a": 1, "tools": ' + empty + b', "b": 2}'
    out = extend_array(raw, "tools", ITEMS, at_start=at_start)
    assert out == b'{"a": 1, "tools": [{"name":"x"},{"name":"y"}], "b": 2}'


@pytest.mark.parametrize("at_start", [False, True])
def test_extend_array_creates_a_missing_array_last(at_start: bool) -> None:
    raw = b'{"model": "m", "messages": []}'
    out = extend_array(raw, "tools", ITEMS, at_start=at_start)
    assert out == b'{"model": "m", "messages": [],"tools":[{"name":"x"},{"name":"y"}]}'


def test_extend_array_with_nothing_to_add_returns_the_same_bytes() -> None:
    raw = b'{"tools": "not even an array"}'
    assert extend_array(raw, "tools", []) is raw


@pytest.mark.parametrize("value", [b"null", b"{}", b'"[]"', b"3", b'{"0": []}'])
def test_extend_array_member_that_is_not_an_array_raises(value: bytes) -> None:
    with pytest.raises(ValueError, match="not an array"):
        extend_array(b'{"tools": ' + value + b"}", "tools", ITEMS)


def test_extend_array_on_a_non_object_raises() -> None:
    with pytest.raises(ValueError):
        extend_array(b"[1]", "tools", ITEMS)


def test_extend_array_finds_the_closing_bracket_past_brackets_in_strings() -> None:
    raw = b'{"messages": [{"content": "a ] b"}, "]" ] , "tail": "]"}'
    out = extend_array(raw, "messages", ['"new"'])
    assert out == b'{"messages": [{"content": "a ] b"}, "]" ,"new"] , "tail": "]"}'
    assert json.loads(out)["messages"] == [{"content": "a ] b"}, "]", "new"]


SPLICE_DOC = (
    b'{\n  "model" : "claude-sonnet-4-5",\n  "tools": [ {"name": "Read", "input_schema": {"type": "object"},'
    b' "cache_control": {"type": "ephemeral", "ttl": "1h"}} ],\n  "messages": [{"role": "user", "content":'
    b' "h\\u00e9llo \xe2\x9c\x93", "n": 1.50E+2}],\n  "nested": {"tools": [], "messages": []}\n}\n'
)


@pytest.mark.parametrize(("key", "at_start"), [("tools", True), ("tools", False), ("messages", False)])
def test_extend_array_leaves_every_other_byte_alone(key: str, at_start: bool) -> None:
    added = '{"name":"bmcp_x","description":"é"}'
    out = extend_array(SPLICE_DOC, key, [added], at_start=at_start)
    inserted = (added + ",").encode() if at_start else ("," + added).encode()
    at = out.find(inserted)
    assert at > 0
    assert out[:at] + out[at + len(inserted) :] == SPLICE_DOC
    before = json.loads(SPLICE_DOC)
    after = json.loads(out)
    assert after[key] == ([json.loads(added), *before[key]] if at_start else [*before[key], json.loads(added)])
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
