"""The invoke endpoint: ``POST /2015-03-31/functions/function/invocations``.

Compatible with the official emulator's endpoint, plus what it cannot do (its issue #175):

- request: body = event (at most 6,291,456 bytes), always delivered as ``application/json``
  like the official emulator (curl's form content type must not reach the runtime);
  ``X-Amz-Client-Context`` (base64) becomes ``Lambda-Runtime-Client-Context`` (decoded);
  ``X-Amzn-Trace-Id`` becomes ``Lambda-Runtime-Trace-Id``; ``X-Amz-Tenant-Id`` the tenant
  id; ``X-Amzn-RequestId`` is used as the request id when given (else a fresh UUID).
- buffered result: ``200`` with the runtime's body and ``Content-Type``;
- ``/error``, an oversized response, or a sandbox failure (crash, timeout, init error):
  ``200`` with ``X-Amz-Function-Error: Unhandled`` and the error JSON, as the Lambda Invoke API;
- streamed result: relayed chunk by chunk as it arrives (chunked), with the runtime's
  ``Content-Type``; the runtime's ``Lambda-Runtime-Function-Error-Type`` / ``-Body`` trailers
  become HTTP trailers of the same names (declared in ``Trailer``). A failure after the stream
  started ends it with those trailers. With request header ``X-Fastproxy-Decode-Prelude: 1``,
  an ``application/vnd.awslambda.http-integration-response`` stream is decoded the way a
  Function URL does it: the prelude's ``statusCode``, ``headers`` and ``cookies`` become the
  response's status and headers, and only the body after the 8 NUL bytes is relayed.

Every response carries ``X-Amzn-RequestId`` (when an invocation was created).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Final

from fastproxy import runtime_api as api
from fastproxy.emulator._http import Exchange, PeerDisconnected, json_body
from fastproxy.emulator.prelude import PreludeDecoder, PreludeError
from fastproxy.emulator.records import InvocationResult, RequestRecord

if TYPE_CHECKING:
    from fastproxy.emulator.sandbox import InvokeOutcome, Sandbox

H_DECODE_PRELUDE: Final = "X-Fastproxy-Decode-Prelude"
H_FUNCTION_ERROR: Final = "X-Amz-Function-Error"
H_REQUEST_ID: Final = "X-Amzn-RequestId"
TRAILERS: Final = (api.H_ERROR_TYPE, api.H_ERROR_BODY)


def error_document(error_type: str, message: str) -> bytes:
    return json_body({"errorMessage": message, "errorType": error_type})


def trailer_error(error_type: str, message: str) -> list[tuple[str, str]]:
    detail = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return [(api.H_ERROR_TYPE, error_type), (api.H_ERROR_BODY, base64.b64encode(detail).decode())]


class InvokeRelay:
    """Writes one invocation's result to the invoke caller (a ``ResponseSink``)."""

    def __init__(self, ex: Exchange, *, decode_prelude: bool) -> None:
        self._ex = ex
        self._decode_prelude = decode_prelude
        self._decoder: PreludeDecoder | None = None
        self.request_id = ""
        self.started = False
        self.finished = False
        self.caller_gone = False

    def _base_headers(self) -> list[tuple[str, str]]:
        headers = [("X-Amz-Executed-Version", "$LATEST")]
        if self.request_id:
            headers.insert(0, (H_REQUEST_ID, self.request_id))
        return headers

    async def _guard(
        self, step: str, data: bytes = b"", trailers: list[tuple[str, str]] | None = None
    ) -> None:
        # The caller going away must not disturb the runtime's stream: keep draining it.
        if self.caller_gone:
            return
        try:
            if step == "data":
                await self._ex.send_data(data)
            else:
                await self._ex.end_response(trailers or [])
        except PeerDisconnected:
            self.caller_gone = True

    async def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        head = [*headers, *self._base_headers(), ("Trailer", ", ".join(TRAILERS))]
        try:
            await self._ex.start_response(status, head)
        except PeerDisconnected:
            self.caller_gone = True

    # ResponseSink ------------------------------------------------------------

    async def begin(self, record: RequestRecord) -> None:
        self.request_id = _request_id_of(record.path)
        content_type = record.header("Content-Type") or "application/octet-stream"
        media_type = content_type.split(";", 1)[0].strip().lower()
        if self._decode_prelude and media_type == api.HTTP_INTEGRATION_RESPONSE:
            self._decoder = PreludeDecoder()
            return
        await self._start(200, [("Content-Type", content_type)])

    async def data(self, piece: bytes) -> None:
        if self.finished:
            return
        decoder = self._decoder
        if decoder is not None and decoder.prelude is None:
            try:
                piece = decoder.feed(piece)
            except PreludeError as exc:
                await self._respond_error(502, "Runtime.InvalidPrelude", str(exc))
                return
            if decoder.prelude is None:
                return
            await self._start(decoder.prelude.status, decoder.prelude.headers)
        if piece:
            await self._guard("data", piece)

    async def end(self, result: InvocationResult) -> None:
        if not result.streaming or self.finished:
            return
        if self._decoder is not None and self._decoder.prelude is None:
            await self._respond_error(
                502, "Runtime.InvalidPrelude", "stream ended before the prelude separator"
            )
            return
        trailers = [
            (name, value) for name in TRAILERS if (value := result.trailer(name)) is not None
        ]
        self.finished = True
        await self._guard("end", trailers=trailers)

    async def abort(self, record: RequestRecord) -> None:
        if self.started and not self.finished:
            self.finished = True
            await self._guard(
                "end",
                trailers=trailer_error(
                    "Runtime.TruncatedResponse", "the runtime's response stream broke off"
                ),
            )

    # After the invoke ---------------------------------------------------------

    async def complete(self, outcome: InvokeOutcome) -> None:
        """Write whatever the streamed path has not written yet."""
        if self.finished or self.caller_gone:
            return
        self.request_id = self.request_id or outcome.request_id
        if self.started:
            error = outcome.error
            self.finished = True
            await self._guard(
                "end",
                trailers=trailer_error(error.error_type, error.message) if error else [],
            )
            return
        self.finished = True
        result = outcome.result
        if outcome.error is not None:
            body = error_document(outcome.error.error_type, outcome.error.message)
            await self._respond(200, body, "application/json", function_error=True)
        elif result is None:  # pragma: no cover - outcome has one or the other
            await self._respond(500, error_document("Sandbox.Failure", "no result"), None)
        elif result.status == 413:
            body = error_document(
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size "
                f"({api.MAX_BUFFERED_RESPONSE_BYTES} bytes).",
            )
            await self._respond(200, body, "application/json", function_error=True)
        elif result.kind == "error":
            await self._respond(200, result.body, "application/json", function_error=True)
        else:
            await self._respond(200, result.body, result.content_type or "application/json")

    async def _respond(
        self, status: int, body: bytes, content_type: str | None, *, function_error: bool = False
    ) -> None:
        headers = self._base_headers()
        if function_error:
            headers.append((H_FUNCTION_ERROR, "Unhandled"))
        try:
            await self._ex.respond(status, body, content_type=content_type, headers=headers)
        except PeerDisconnected:
            self.caller_gone = True

    async def _respond_error(self, status: int, error_type: str, message: str) -> None:
        self.finished = True
        if self.started:
            await self._guard("end", trailers=trailer_error(error_type, message))
            return
        self.started = True
        await self._respond(status, error_document(error_type, message), "application/json")


class InvokeEndpoint:
    """HTTP handler for the invoke listener of one :class:`Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def handle(self, ex: Exchange) -> None:
        try:
            event = await self._read_event(ex)
        except PeerDisconnected:
            return
        if ex.path != api.INVOKE_PATH:
            await ex.respond(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")
            return
        if ex.method != "POST":
            await ex.respond(405, b"", content_type=None)
            return
        if event is None:
            await ex.respond(
                413,
                error_document(
                    "RequestEntityTooLargeException",
                    f"Request must be smaller than {api.MAX_EVENT_BYTES} bytes for the "
                    "InvokeFunction operation",
                ),
            )
            return
        client_context = ex.header("X-Amz-Client-Context")
        if client_context:
            try:
                client_context = base64.b64decode(client_context, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                await ex.respond(
                    400,
                    error_document(
                        "InvalidRequestContentException",
                        "X-Amz-Client-Context must be base64-encoded",
                    ),
                )
                return
        decode = (ex.header(H_DECODE_PRELUDE) or "").strip().lower() in ("1", "true", "yes")
        relay = InvokeRelay(ex, decode_prelude=decode)
        outcome = await self._sandbox.invoke(
            event,
            request_id=ex.header(H_REQUEST_ID) or None,
            trace_id=ex.header("X-Amzn-Trace-Id") or None,
            client_context=client_context or None,
            tenant_id=ex.header("X-Amz-Tenant-Id") or None,
            sink=relay,
        )
        await relay.complete(outcome)

    async def _read_event(self, ex: Exchange) -> bytes | None:
        """The body, or None (drained) when it is over the event size limit."""
        pieces: list[bytes] = []
        size = 0
        async for piece in ex.iter_body():
            size += len(piece)
            if size <= api.MAX_EVENT_BYTES:
                pieces.append(piece)
        return b"".join(pieces) if size <= api.MAX_EVENT_BYTES else None


def _request_id_of(path: str) -> str:
    rest = path[len(api.INVOCATION_PREFIX) :]
    return rest.rsplit("/", 1)[0]
