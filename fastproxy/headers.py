"""Hop-by-hop header handling (RFC 9110 section 7.6.1), on h11's parsed header lists.

Works on h11's ``(raw_name, lower_name, value)`` triples so that forwarding keeps every
end-to-end header byte for byte (original name case, original value) without h11
re-validating what its own parser already validated.
"""

from __future__ import annotations

from typing import Final

from fastproxy._h11 import Headers

# Always connection-specific. ``Trailer`` is end-to-end and is kept: streamed Runtime API
# responses pre-declare their error trailers with it. ``Proxy-Authorization`` is meant for
# this hop only; fastproxy never authenticates, so it must not leak upstream either.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Framing is re-derived by h11 on the other side, except that a request keeps its own
# Content-Length / Transfer-Encoding so the upstream sees the same framing. ``Expect`` is
# answered by the proxy itself and never sent upstream.
REQUEST_DROP: Final = HOP_BY_HOP | {b"expect"}
RESPONSE_DROP: Final = HOP_BY_HOP

Triple = tuple[bytes, bytes, bytes]


def connection_tokens(items: list[Triple]) -> frozenset[bytes]:
    """The lower-cased tokens of every ``Connection`` field."""
    tokens: set[bytes] = set()
    for _, name, value in items:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return frozenset(tokens)


def end_to_end(headers: Headers, drop: frozenset[bytes]) -> Headers:
    """The end-to-end subset of ``headers``, in order, as an h11 ``Headers`` object."""
    items: list[Triple] = headers._full_items
    for item in items:
        if item[1] in drop:
            break
    else:
        return headers  # the common case: nothing to drop, nothing to copy
    extra: frozenset[bytes] | None = None
    kept: list[Triple] = []
    for item in items:
        name = item[1]
        if name in drop:
            if name == b"connection":
                extra = connection_tokens(items)
            continue
        kept.append(item)
    if extra:
        # Fields named in Connection are hop-by-hop too (RFC 9110 7.6.1); framing fields
        # stay under h11's control whatever the peer listed.
        extra = extra - {b"content-length", b"transfer-encoding", b"trailer"}
        kept = [item for item in kept if item[1] not in extra]
    return Headers(kept)


def count(headers: Headers) -> int:
    return len(headers._full_items)
