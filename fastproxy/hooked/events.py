"""``GET /next`` with event hooks: the event is gathered whole on the exchange's own
connection, the hooks run, and it is delivered (as it came when unchanged); or the Runtime API
is answered for a rejected event and the next one fetched for the same long-poll."""

from __future__ import annotations

import json
import time

from fastproxy import runtime_api as api
from fastproxy.call import Reply, UpstreamCallError, call, request_bytes
from fastproxy.hooked.base import (
    PREFIX,
    Handler,
    field_value,
    log,
    text_fields,
    whole_response,
    wire_fields,
)
from fastproxy.hooks.api import Event, Headers, InvocationContext, Reject
from fastproxy.hooks.chain import HookFailure, Pending


class EventHandler(Handler):
    """``GET /next``: fetch the event whole, run the event hooks, deliver or reject it.

    The event comes over the exchange's own upstream connection, gathered instead of relayed;
    plain (non-async) hooks then run on the spot, so an invocation whose hooks are plain
    functions costs no task. Only a refused event, or a hook that must be awaited, takes one.
    """

    def on_head(self) -> None:
        pass  # nothing goes upstream until the request is complete

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        pass

    def on_end(self, trailers: list[bytes]) -> None:
        self.ex.hold_response(self._arrived)
        self.send([self.head_bytes])

    def _arrived(self, parts: list[bytes]) -> None:
        reader = self.ex.reader
        assert reader.head is not None
        body = b"".join(reader.payload)
        self._handle(Reply(reader.head.status, reader.out_head, parts, body, reader.trailers))

    def _handle(self, reply: Reply) -> None:
        """An answer to ``/next``: an event for the hooks, or anything else as it came."""
        received = time.monotonic_ns()
        if reply.status != 200:
            self.ex.deliver(reply.parts)
            return
        text = text_fields(reply.fields)
        context = InvocationContext.from_next_headers(text, received)
        outcome = self.chain.event_now(Event(context, text, reply.body))
        if isinstance(outcome, Pending):
            self.spawn(self._settle(outcome, reply, context, text))
        else:
            self._decide(outcome, reply, context, text)

    async def _settle(
        self, outcome: Pending, reply: Reply, context: InvocationContext, text: Headers
    ) -> None:
        self._decide(await outcome.rest, reply, context, text)

    def _decide(
        self, result: Event | Reject | HookFailure, reply: Reply, context: InvocationContext,
        text: Headers,
    ) -> None:  # fmt: skip
        if not isinstance(result, Event):
            # A Reject, or a HookFailure under the closed policy: same answer upstream.
            self.spawn(self._refuse_and_fetch(context, result.error_type, result.message))
            return
        context.event_delivered_ns = time.monotonic_ns()
        context.proxy_ns += context.event_delivered_ns - context.event_received_ns
        if self.chain.has_result_hooks:
            self.server.contexts.add(context)
        if result.body is reply.body and result.headers == text:
            self.ex.deliver(reply.parts)  # unchanged: as it came
        else:
            self.ex.deliver(
                whole_response(reply.status_line, wire_fields(result.headers), result.body)
            )

    async def _refuse_and_fetch(
        self, context: InvocationContext, error_type: str, message: str
    ) -> None:
        """Refuse the event upstream, then fetch the next one for the same long-poll."""
        try:
            await self._refuse(context, error_type, message)
            reply = await call(self.server.pool, b"GET", [self.head_bytes])
        except UpstreamCallError as exc:
            self.ex.fail(502, exc.error_type, str(exc))
            return
        self._handle(reply)

    async def _refuse(self, context: InvocationContext, error_type: str, message: str) -> None:
        """Answer the Runtime API for an event the runtime will never see."""
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        post = [
            (b"Host", field_value(self.fields, b"host") or b"localhost"),
            (b"Content-Type", b"application/json"),
            (api.H_ERROR_TYPE.encode(), error_type.encode("latin-1", "replace")),
        ]
        if context.invocation_id:
            post.append((api.H_INVOCATION_ID.encode(), context.invocation_id.encode("latin-1")))
        target = PREFIX + context.request_id.encode("latin-1") + b"/error"
        reply = await call(self.server.pool, b"POST", request_bytes(b"POST", target, post, body))
        log.warning(
            "event %s refused (%s); the Runtime API answered %d",
            context.request_id, error_type, reply.status,
        )  # fmt: skip
        if self.chain.has_end_hooks:
            self.observe_end(context, reply.status, error_type)
