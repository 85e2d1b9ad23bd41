"""set_member: one top-level member changed, every other byte of the document kept."""

import json

import pytest

from addon.wire.json_splice import member_spans, set_member

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
