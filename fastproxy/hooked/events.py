"""``GET /next`` with event hooks: the proxy fetches the event whole, runs the hooks, and
delivers it (as it came when unchanged), or answers the Runtime API for a rejected event and
fetches the next one for the same long-poll."""

from __future__ import annotations

import json
import time

from fastproxy import runtime_api as api
from fastproxy.call import UpstreamCallError, call, request_bytes
from fastproxy.hooked.base import (
    PREFIX,
    Handler,
    field_value,
    log,
    text_fields,
    whole_response,
    wire_fields,
)
from fastproxy.hooks.api import Event, InvocationContext


class EventHandler(Handler):
    """``GET /next``: fetch the event whole, run the event hooks, deliver or reject it."""

    def on_head(self) -> None:
        pass  # nothing goes upstream until the request is complete

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        pass

    def on_end(self, trailers: list[bytes]) -> None:
        self.spawn(self._run())

    async def _run(self) -> None:
        ex = self.ex
        pool = self.server.pool
        try:
            while True:
                reply = await call(pool, b"GET", [self.head_bytes])
                received = time.monotonic_ns()
                if reply.status != 200:
                    ex.deliver(reply.parts)
                    return
                text = text_fields(reply.fields)
                context = InvocationContext.from_next_headers(text, received)
                result = await self.chain.run_event(Event(context, text, reply.body))
                if isinstance(result, Event):
                    context.event_delivered_ns = time.monotonic_ns()
                    context.proxy_ns += context.event_delivered_ns - received
                    if self.chain.has_result_hooks:
                        self.server.contexts.add(context)
                    if result.body is reply.body and result.headers == text:
                        ex.deliver(reply.parts)  # unchanged: as it came
                    else:
                        ex.deliver(
                            whole_response(
                                reply.status_line, wire_fields(result.headers), result.body
                            )
                        )
                    return
                # A Reject, or a HookFailure under the closed policy: same answer upstream.
                await self._refuse(context, result.error_type, result.message)
        except UpstreamCallError as exc:
            ex.fail(502, exc.error_type, str(exc))

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
            self.observe(self.chain.run_response_end(context, reply.status, error_type))
