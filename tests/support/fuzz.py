"""What the two fuzzers share: field and chunk strategies, byte mutations, the field oracle.

The oracle on fields (RFC 9110 7.6.1): every end-to-end field a sender wrote reaches the
other side, in order, with its value; no hop-by-hop field does (``Connection``, every field it
names, ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Upgrade``, ``Proxy-Authenticate``,
``Proxy-Authorization``). ``Trailer`` is end-to-end. Framing fields (``Content-Length``,
``Transfer-Encoding``) and ``Expect`` belong to each hop's own framing and are left out of the
comparison; the fuzzers check framing through the bodies.
"""

from __future__ import annotations

from hypothesis import strategies as st

Fields = list[tuple[str, str]]
RawFields = list[tuple[bytes, bytes]]

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)  # fmt: skip
VALUE = st.text('abcdefghijklmnopqrstuvwxyz0123456789 ,;=/"()<>@[]{}?:._-\t', max_size=40).map(
    str.strip
)
HOP_BY_HOP_NAMES = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "upgrade", "proxy-authenticate",
     "proxy-authorization"}
)  # fmt: skip
NOT_COMPARED = frozenset({"content-length", "transfer-encoding", "expect"})
# Hop-by-hop fields as senders write them; "Connection: X-Hop-..." names a field that must go too.
HOP_BY_HOP = [
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Proxy-Authenticate", "Basic"),
    ("Proxy-Authorization", "Basic eA=="),
]
# End-to-end fields real Runtime API traffic carries, next to the generated X-F- ones.
KNOWN_END_TO_END = [
    ("Content-Type", "application/json"),
    ("Trailer", "Lambda-Runtime-Function-Error-Type"),
    ("Lambda-Runtime-Aws-Request-Id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd"),
    ("Lambda-Runtime-Deadline-Ms", "1542409706888"),
    ("Date", "Tue, 01 Dec 2026 04:00:00 GMT"),
    ("X-Dup", "first"),
    ("X-Dup", "second"),
]


@st.composite
def end_to_end_fields(draw: st.DrawFn) -> Fields:
    """End-to-end fields: generated ``X-F-`` names and some real ones, in a drawn order."""
    names = draw(st.lists(TOKEN, max_size=6, unique_by=str.lower))
    fields = [(f"X-F-{name}", draw(VALUE)) for name in names]
    known = draw(st.lists(st.sampled_from(KNOWN_END_TO_END), max_size=3, unique=True))
    out = [*fields, *known]
    return draw(st.permutations(out)) if out else out


@st.composite
def hop_by_hop_fields(draw: st.DrawFn) -> Fields:
    """Hop-by-hop fields, sometimes with a ``Connection`` naming an extra field (also sent)."""
    hop = draw(st.lists(st.sampled_from(HOP_BY_HOP), max_size=3, unique=True))
    if draw(st.booleans()):
        named = f"X-Hop-{draw(TOKEN)}"
        hop += [("Connection", f"keep-alive, {named}"), (named, draw(VALUE))]
    return hop


def end_to_end(fields: RawFields) -> Fields:
    """The fields the oracle compares: all but hop-by-hop, the ones Connection names, framing."""
    named = {
        token.strip(" \t").lower()
        for name, value in fields
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    out = []
    for name, value in fields:
        low = name.decode("latin-1").lower()
        if low in HOP_BY_HOP_NAMES or low in NOT_COMPARED or low in named:
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    return out


def assert_hop_by_hop_gone(sent: Fields, got: RawFields, own_connection: bool = True) -> None:
    """No hop-by-hop field the sender wrote (nor any it named in ``Connection``) got through.

    With ``own_connection``, a ``Connection`` field the proxy wrote itself (``close`` or
    ``keep-alive``, its own hop's business) is allowed.
    """
    named = {
        token.strip().lower()
        for name, value in sent
        if name.lower() == "connection"
        for token in value.split(",")
    } - {"keep-alive", "close"}
    for name, value in got:
        low = name.decode("latin-1").lower()
        if low == "connection" and own_connection:
            assert value.lower() in (b"close", b"keep-alive"), (name, value)
            continue
        assert low not in HOP_BY_HOP_NAMES, ("hop-by-hop field relayed", name, value, sent)
        assert low not in named, ("field named by Connection relayed", name, value, sent)


@st.composite
def chunk_extension(draw: st.DrawFn, quoted: bool = True) -> bytes:
    out = b""
    for name in draw(st.lists(TOKEN, max_size=3 if quoted else 2)):
        out += b";" + name.encode()
        forms = ["bare", "token", "quoted"] if quoted else ["bare", "token"]
        form = draw(st.sampled_from(forms))
        if form == "token":
            out += b"=" + draw(TOKEN).encode()
        elif form == "quoted":
            out += b'="' + draw(VALUE).replace('"', "").encode() + b'"'
    return out


def cuts_for(wire: bytes) -> st.SearchStrategy[list[int]]:
    """Write boundaries: where the sender splits ``wire`` into separate writes."""
    return st.lists(st.integers(0, max(0, len(wire))), max_size=8)


@st.composite
def mutation_of(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with one to four bytes replaced, inserted or deleted (delimiters favoured)."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 34, 44, 58, 59, 127, 255, 48, 70]))
        if not data or action == "insert":
            data.insert(position, byte)
        elif action == "replace":
            data[position] = byte
        else:
            del data[position]
    return bytes(data)


@st.composite
def trailer_fields(draw: st.DrawFn) -> Fields:
    """Trailer fields: generated ``X-T-`` names and the Runtime API's error trailers."""
    names = draw(st.lists(TOKEN, max_size=3, unique_by=str.lower))
    fields = [(f"X-T-{name}", draw(VALUE)) for name in names]
    if draw(st.booleans()):
        fields += [
            ("Lambda-Runtime-Function-Error-Type", "Runtime.StreamError"),
            ("Lambda-Runtime-Function-Error-Body", "eyJlcnJvciI6ICJib29tIn0="),
        ]
    return fields
