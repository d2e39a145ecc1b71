"""The runtime's result posts with hooks: buffered responses gathered for the response hooks,
streamed responses passed through the stream hooks chunk by chunk, errors copied for the error
hooks; end observers learn the Runtime API's status."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from fastproxy import chunks, framing
from fastproxy import runtime_api as api
from fastproxy.call import request_bytes
from fastproxy.hooked.base import (
    ERROR_TYPE_B,
    FRAMING,
    MAX_ERROR_COPY,
    PREFIX,
    ResultHandler,
    field_value,
    text_fields,
    wire_fields,
)
from fastproxy.hooks.api import ErrorReport, Headers, InvocationContext, Response
from fastproxy.hooks.chain import HookFailure, Pending, StreamPipeline

if TYPE_CHECKING:
    from fastproxy.exchange import Exchange


class BufferedResponseHandler(ResultHandler):
    """A buffered ``/response``: gathered, shown to the response hooks, then posted."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.raw: list[bytes] = []  # the request as it came, to post unchanged
        self.payload: list[bytes] = []
        self.size = 0
        self.holding = True
        self.started = time.monotonic_ns()

    def on_head(self) -> None:
        self.raw.append(self.head_bytes)

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        if not self.holding:
            super().on_body(data, pos, end, pieces)
            return
        if end > pos:
            self.raw.append(data[pos:end])
        self.payload += pieces
        self.size += sum(len(p) for p in pieces)
        if self.size > api.MAX_BUFFERED_RESPONSE_BYTES:
            # Too large for the Runtime API anyway: relay as is and let it answer 413.
            self.holding = False
            raw, self.raw, self.payload = self.raw, [], []
            self.send(raw)

    def on_end(self, trailers: list[bytes]) -> None:
        if not self.holding:
            return
        assert self.context is not None
        text = text_fields(self.fields)
        body = b"".join(self.payload)
        outcome = self.chain.response_now(Response(self.context, text, body))
        if isinstance(outcome, Pending):
            self.spawn(self._settle(outcome, text, body))
        else:
            self._post(outcome, text, body)

    async def _settle(self, outcome: Pending, text: Headers, body: bytes) -> None:
        self._post(await outcome.rest, text, body)

    def _post(self, result: Response | HookFailure, text: Headers, body: bytes) -> None:
        """Send the result on, over the exchange's own connection: the Runtime API's answer
        is then relayed like any other. ``text`` and ``body`` are what the hooks were shown."""
        context = self.context
        assert context is not None
        if isinstance(result, HookFailure):
            self.error_type = error_type = result.error_type
            error = json.dumps({"errorMessage": result.message, "errorType": error_type}).encode()
            fields = [(k, v) for k, v in wire_fields(text) if k.lower() != b"content-type"]
            fields += [
                (b"Content-Type", b"application/json"),
                (api.H_ERROR_TYPE.encode(), error_type.encode()),
            ]
            target = PREFIX + context.request_id.encode("latin-1") + b"/error"
            parts = request_bytes(b"POST", target, fields, error)
        elif result.body is body and result.headers == text:
            parts = self.raw  # unchanged: as it came
        else:
            parts = request_bytes(
                b"POST", self.head.target, wire_fields(result.headers), result.body
            )
        context.proxy_ns += time.monotonic_ns() - self.started
        self.send(parts)


class StreamHandler(ResultHandler):
    """A streamed (or merely observed) ``/response``: chunk data passes through the hooks."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.pipeline: StreamPipeline | None = None

    def on_head(self) -> None:
        assert self.context is not None
        if self.chain.has_stream_hooks:
            try:
                self.pipeline = self.chain.open_stream(self.context, text_fields(self.fields))
            except HookFailure as failure:
                self.ex.fail(502, failure.error_type, failure.message)
                return
        if self.pipeline is None:
            super().on_head()
            return
        # Hooks may change lengths: the body goes upstream chunked, whatever its framing.
        lines = [self.head_bytes[: self.head_bytes.find(b"\r\n")]]
        lines += [n + b": " + v for n, v in self.fields if n.lower() not in FRAMING]
        lines.append(b"Transfer-Encoding: chunked")
        self.send([b"\r\n".join(lines) + b"\r\n\r\n"])

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            super().on_body(data, pos, end, pieces)
            return
        try:
            for piece in pieces:
                out = pipeline.feed(piece)
                if out:
                    self.send(chunks.chunk(out))
        except HookFailure as failure:
            self.pipeline = None
            self.ex.fail(502, failure.error_type, failure.message)

    def on_end(self, trailers: list[bytes]) -> None:
        for line in trailers:
            name, _, value = line.partition(b":")
            if name.strip().lower() == ERROR_TYPE_B:
                self.error_type = value.strip(b" \t").decode("latin-1")
        pipeline = self.pipeline
        if pipeline is None:
            return
        fields = [(n, v.strip(b" \t")) for n, _, v in (t.partition(b":") for t in trailers)]
        try:
            tail = pipeline.close(text_fields(fields))
        except HookFailure as failure:
            self.pipeline = None
            self.ex.fail(502, failure.error_type, failure.message)
            return
        if tail:
            self.send(chunks.chunk(tail))
        self.send([chunks.last_chunk(trailers)])


class ErrorHandler(ResultHandler):
    """``/error`` or ``/init/error``: relayed as they are; the error hooks see a copy after."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.copy: list[bytes] = []
        self.size = 0
        self.report: ErrorReport | None = None

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        super().on_body(data, pos, end, pieces)
        for piece in pieces:
            if self.size < MAX_ERROR_COPY:
                self.copy.append(piece[: MAX_ERROR_COPY - self.size])
                self.size += len(piece)

    def on_end(self, trailers: list[bytes]) -> None:
        if self.chain.has_error_hooks:
            error_type = field_value(self.fields, ERROR_TYPE_B)
            self.report = ErrorReport(
                "init" if self.context is None else "invocation", self.context,
                text_fields(self.fields), b"".join(self.copy),
                error_type.decode("latin-1") if error_type else None,
            )  # fmt: skip

    def finished(self) -> None:
        # One task, so the error hooks always see the report before the end hooks run.
        self.observe(self._observe(self.report, self.context, self.status))
        self.forget_context()

    async def _observe(
        self, report: ErrorReport | None, context: InvocationContext | None, status: int
    ) -> None:
        if report is not None:
            await self.chain.run_error(report)
        if context is not None and self.chain.has_end_hooks:
            value = field_value(self.fields, ERROR_TYPE_B)
            error_type = value.decode("latin-1") if value else "Unknown"
            await self.chain.run_response_end(context, status, error_type)
