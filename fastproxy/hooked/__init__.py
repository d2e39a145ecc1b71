"""Where hooks meet the data path: one handler per exchange a configured hook looks at.

Only imported when hooks are configured, and a handler is made only for the requests the
configured hooks look at; every other exchange is relayed as it is. Handlers follow the
request body themselves (the ``Content-Length`` count, or the chunk scanner handing out chunk
data and trailers) and build parsed views only for the hooks.

Modes, by request:

- ``GET /next`` with event hooks: the event comes over the exchange's own connection,
  gathered whole instead of relayed; the hooks run, and the runtime gets the event: as it came
  when the hooks left it alone, re-framed when they changed it. A rejected event (or, under
  the ``closed`` policy, one a hook failed on) is answered upstream with ``/error``, and the
  proxy fetches the next event for the same long-poll (``call.py``): the runtime never sees it.
- buffered ``/response`` with response hooks: the body is gathered (up to the Runtime API's
  6,291,556-byte limit; past it the response is relayed untouched and the Runtime API answers
  413), the hooks run, and the result goes on over the exchange's own connection (as it came,
  when unchanged); the Runtime API's answer is relayed like any other. A ``closed`` failure
  posts ``/error`` instead.
- streamed ``/response`` with stream hooks: chunk data passes through the hooks' streams as it
  arrives, re-framed chunked, never buffered. A ``closed`` failure aborts the upstream request
  (the Runtime API sees a truncated stream, never a complete one) and answers the runtime 502.
- ``/error`` and ``/init/error`` with error hooks: relayed as they are while a copy of the body
  (bounded) is kept for the hooks, which run after the fact.
- end observers (``on_response_end``) learn the Runtime API's status for every result post.

Plain hook methods (neither ``async`` nor ``blocking``) run on the spot, in the callback that
completed the message (``HookChain.event_now`` and friends): an invocation whose hooks are all
plain costs no task. A hook that must be awaited takes one, from that hook on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastproxy import framing
from fastproxy.hooked.base import (
    INIT_ERROR,
    NEXT,
    PREFIX,
    RESPONSE_MODE,
    Contexts,
    Handler,
    field_value,
)
from fastproxy.hooked.events import EventHandler
from fastproxy.hooked.results import BufferedResponseHandler, ErrorHandler, StreamHandler
from fastproxy.hooks.chain import HookChain

if TYPE_CHECKING:
    from fastproxy.exchange import Exchange


def select(
    exchange: Exchange, data: bytes, head: framing.RequestHead, chain: HookChain
) -> Handler | None:
    """The handler for this request, or None when no configured hook looks at it."""
    path = head.target.partition(b"?")[0]
    method = head.method
    if path == NEXT and method == b"GET":
        return EventHandler(exchange, data, head) if chain.has_event_hooks else None
    if path == INIT_ERROR:
        return ErrorHandler(exchange, data, head, None) if chain.has_error_hooks else None
    if not path.startswith(PREFIX) or method != b"POST":
        return None
    request_id, _, kind = path[len(PREFIX) :].rpartition(b"/")
    if kind not in (b"response", b"error") or not request_id or not chain.has_result_hooks:
        return None
    if kind == b"response" and not (
        chain.has_response_hooks or chain.has_stream_hooks or chain.has_end_hooks
    ):
        # Only error hooks: a response is relayed as it is, and its context is done with.
        exchange.server.contexts.pop(request_id.decode("latin-1"))
        return None
    context = exchange.server.contexts.get(request_id.decode("latin-1"))
    if kind == b"error":
        if chain.has_error_hooks or chain.has_end_hooks:
            return ErrorHandler(exchange, data, head, context)
        return None
    handler = BufferedResponseHandler(exchange, data, head, context)
    mode = field_value(handler.fields, RESPONSE_MODE)
    if mode is not None and mode.lower() == b"streaming":
        if chain.has_stream_hooks or chain.has_end_hooks:
            return StreamHandler(exchange, data, head, context)
        return None
    if chain.has_response_hooks:
        return handler
    if chain.has_end_hooks:
        return StreamHandler(exchange, data, head, context)  # observe only
    return None


__all__ = ["Contexts", "Handler", "select"]
