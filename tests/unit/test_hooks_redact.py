"""The redact hook: what it masks, and that streaming masks exactly what buffering does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy.hooks import InvocationContext, Response
from fastproxy.hooks.builtin.redact import (
    CONTEXT_BYTES,
    RedactConfig,
    RedactHook,
    Redactor,
    from_env,
)

KEY_ID = b"AKIAIOSFODNN7EXAMPLE"
TEMP_KEY_ID = b"ASIAY34FZKBOKMUTVV7A"
SECRET = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = (
    b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM = (
    b"-----BEGIN RSA PRIVATE KEY-----\n"
    b"MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi..Z1BjP5CE/Wm/Rr500P\n"
    b"RLHcpDmZbGhRg5hmZ0hJXG9sbz0gd29ybGQ=\n"
    b"-----END RSA PRIVATE KEY-----"
)
M = b"[REDACTED]"

# Every kind of secret, and near misses that must survive, in one response.
DOCUMENT = (
    b'{"AccessKeyId": "' + KEY_ID + b'", "temp": "' + TEMP_KEY_ID + b'",\n'
    b'"SecretAccessKey": "' + SECRET + b'",\n'
    b'"headers": {"Authorization": "Bearer ' + JWT + b'"},\n'
    b'"key": "' + PEM + b'",\n'
    b'"note": "the bearer of bad news; xAKIAIOSFODNN7EXAMPLE; secret=short",\n'
    b'"ini": "aws_secret_access_key = ' + SECRET + b'", "end": "AKIA"}'
)
EXPECTED = (
    b'{"AccessKeyId": "' + M + b'", "temp": "' + M + b'",\n'
    b'"SecretAccessKey": "' + M + b'",\n'
    b'"headers": {"Authorization": "Bearer ' + M + b'"},\n'
    b'"key": "' + M + b'",\n'
    b'"note": "the bearer of bad news; xAKIAIOSFODNN7EXAMPLE; secret=short",\n'
    b'"ini": "aws_secret_access_key = ' + M + b'", "end": "AKIA"}'
)

REDACTOR = Redactor(RedactConfig())


def stream_through(redactor: Redactor, chunks: list[bytes]) -> tuple[bytes, int]:
    """The streamed output and the most bytes held back at any point."""
    stream = redactor.stream()
    out, most = [], 0
    for chunk in chunks:
        out.append(stream.feed(chunk))
        most = max(most, stream.held_bytes)
    out.append(stream.close([]))
    return b"".join(out), most


def test_buffered_masks_every_built_in_secret_and_keeps_near_misses() -> None:
    assert REDACTOR.redact(DOCUMENT) == EXPECTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"key=" + KEY_ID, b"key=" + M),
        (b"AKIAIOSFODNN7EXAMPLE1", b"AKIAIOSFODNN7EXAMPLE1"),  # 21 characters: not a key id
        (b"AWS_SECRET_ACCESS_KEY=" + SECRET, b"AWS_SECRET_ACCESS_KEY=" + M),
        (b"secretAccessKey: '" + SECRET + b"'", b"secretAccessKey: '" + M + b"'"),
        (
            b'{\\"SecretAccessKey\\":\\"' + SECRET + b'\\"}',
            b'{\\"SecretAccessKey\\":\\"' + M + b'\\"}',
        ),
        (SECRET, SECRET),  # 40 characters without a label are not recognisably a secret
        (b"authorization: bearer abcdefgh12345678", b"authorization: bearer " + M),
        (b"Bearer short", b"Bearer short"),
        (b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", M + b"\n"),
        (b"-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----", None),
        (KEY_ID + TEMP_KEY_ID, KEY_ID + TEMP_KEY_ID),  # one 40-character word: neither matches
        (KEY_ID + b" " + TEMP_KEY_ID, M + b" " + M),
    ],
)
def test_buffered_cases(text: bytes, expected: bytes | None) -> None:
    assert REDACTOR.redact(text) == (text if expected is None else expected)


def test_nothing_to_mask_returns_the_same_object() -> None:
    body = b'{"ok": true}' * 100
    assert REDACTOR.redact(body) is body


def test_a_secret_split_at_every_possible_boundary_is_masked() -> None:
    for cut in range(len(DOCUMENT) + 1):
        out, _ = stream_through(REDACTOR, [DOCUMENT[:cut], DOCUMENT[cut:]])
        assert out == EXPECTED, f"split at {cut}"


def test_one_byte_chunks_are_masked_and_held_bytes_stay_bounded() -> None:
    out, most = stream_through(REDACTOR, [bytes([b]) for b in DOCUMENT])
    assert out == EXPECTED
    # Never more than the longest secret in flight (the PEM block here) needs.
    assert most <= len(PEM)
    assert most <= REDACTOR.window


def test_plain_text_is_never_held_back() -> None:
    stream = REDACTOR.stream()
    for word in (b"hello ", b"world, ", b"nothing secret here ", b"{}\n"):
        assert stream.feed(word) == word
        assert stream.held_bytes == 0


def test_a_possible_secret_is_held_only_until_it_is_decided() -> None:
    stream = REDACTOR.stream()
    assert stream.feed(b'{"id": "AKIA') == b'{"id": "'
    assert stream.held_bytes == 4
    assert stream.feed(KEY_ID[4:]) == b""  # complete, but the next byte could extend it
    assert stream.feed(b'", "n": 1') == M + b'", "n": 1'
    assert stream.held_bytes == 0
    # A false start is released as soon as it cannot be a secret.
    assert stream.feed(b" AKIA") == b" "
    assert stream.feed(b".") == b"AKIA."


def test_the_mask_is_written_once_per_secret_whatever_the_chunking() -> None:
    text = b"x " + KEY_ID + b"\n"
    out, _ = stream_through(REDACTOR, [text[:5], text[5:9], text[9:15], text[15:]])
    assert out == b"x " + M + b"\n"


def test_held_bytes_are_bounded_by_max_secret_for_an_unterminated_block() -> None:
    redactor = Redactor(RedactConfig(max_secret=256))
    stream = redactor.stream()
    stream.feed(b"-----BEGIN RSA PRIVATE KEY-----\n")
    most = 0
    for _ in range(100):
        stream.feed(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n")
        most = max(most, stream.held_bytes)
    assert most <= 256 + 200
    assert redactor.window <= 256 + 200


def test_user_patterns_mask_whole_matches_or_the_secret_group() -> None:
    config = from_env(
        {
            "FASTPROXY_REDACT_PATTERNS": r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"
            + "\n"
            + r'"ssn": "(?P<secret>\d{3}-\d{2}-\d{4})"',
            "FASTPROXY_REDACT_MASK": "***",
        }
    ).config
    redactor = Redactor(config)
    text = b'{"card": "4111-1111-1111-1111", "ssn": "078-05-1120", "id": "' + KEY_ID + b'"}'
    expected = b'{"card": "***", "ssn": "***", "id": "***"}'
    assert redactor.redact(text) == expected
    for cut in range(len(text) + 1):
        assert stream_through(redactor, [text[:cut], text[cut:]])[0] == expected


def test_user_patterns_as_a_json_array_and_builtins_subset() -> None:
    hook = from_env(
        {
            "FASTPROXY_REDACT_PATTERNS": '["tok_[a-z0-9]{8}", "pin=\\\\d{4}"]',
            "FASTPROXY_REDACT_BUILTINS": "bearer-token",
        }
    )
    text = b"tok_abcd1234 pin=1234 " + KEY_ID + b" Bearer abcdefgh12345678"
    assert hook.redactor.redact(text) == M + b" " + M + b" " + KEY_ID + b" Bearer " + M


def test_hook_on_response_and_stream() -> None:
    hook = RedactHook(RedactConfig())
    context = InvocationContext(request_id="r")
    clean = Response(context, [], b"{}")
    assert hook.on_response(clean) is None
    dirty = Response(context, [("Content-Type", "application/json")], DOCUMENT)
    result = hook.on_response(dirty)
    assert result is not None and result.body == EXPECTED
    stream = hook.open_response_stream(context, [])
    assert stream.feed(DOCUMENT) + stream.close([]) == EXPECTED


def test_lookbehind_context_survives_chunk_boundaries() -> None:
    # "x" + key id is one word: not a key id, even when the boundary falls right after the x.
    text = b"....x" + KEY_ID + b"..."
    for cut in range(len(text) + 1):
        assert stream_through(REDACTOR, [text[:cut], text[cut:]])[0] == text
    assert CONTEXT_BYTES >= 1


SECRETS = [KEY_ID, b"SecretAccessKey=" + SECRET, b"Bearer " + JWT, PEM, b"AKIA", b"bearer x"]


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(SECRETS), st.binary(max_size=40), st.sampled_from([b" ", b'"'])),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_any_chunking_gives_the_buffered_result(parts: list[bytes], cuts: list[int]) -> None:
    text = b"".join(parts)
    points = sorted({min(cut, len(text)) for cut in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    out, most = stream_through(REDACTOR, chunks)
    assert out == REDACTOR.redact(text)
    assert most <= REDACTOR.window


def test_invalid_pattern_names_the_variable() -> None:
    from fastproxy.hooks import HookConfigError

    with pytest.raises(HookConfigError, match="FASTPROXY_REDACT_PATTERNS: pattern 2"):
        from_env({"FASTPROXY_REDACT_PATTERNS": "ok\n[unclosed"})
    with pytest.raises(HookConfigError, match="matches the empty string"):
        from_env({"FASTPROXY_REDACT_PATTERNS": "a*"})
    assert re.compile(b"x")  # the module works on bytes patterns
