"""The public hook API: what a hook receives, what it may return, and the shapes it may take.

A hook is any object (a module, a class instance, a module-level instance) with any subset of
these methods::

    on_event(event: Event) -> None | Event | Reject
    on_response(response: Response) -> None | Response
    open_response_stream(context, headers) -> ResponseStream | None
    on_response_end(context, status: int, error_type: str | None) -> None
    on_error(report: ErrorReport) -> None

``on_event``, ``on_response``, ``on_response_end`` and ``on_error`` may be ``async def``. A hook
whose plain (sync) methods do blocking work (file or network I/O, heavy CPU) sets the attribute
``blocking = True``: fastproxy then runs those methods in a worker thread instead of on the
proxy's event loop. ``open_response_stream`` and the stream it returns are always plain, fast,
synchronous code: they run on the loop for every chunk of a streamed response.

An optional ``name`` attribute names the hook in logs; by default the name is the one it was
configured with (``audit``, ``mypackage.hooks:Firewall``).

Example::

    from fastproxy.hooks import Event, Reject

    class DenyLargeEvents:
        name = "deny-large"

        def on_event(self, event: Event) -> Reject | None:
            if len(event.body) > 1_000_000:
                return Reject("Proxy.EventRejected", "event over 1 MB")
            return None

This module imports nothing but the standard library's typing helpers, so user hook packages
can import it at no cost.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from fastproxy import runtime_api as api

Headers = list[tuple[str, str]]
"""HTTP header fields as ``(name, value)`` pairs, in wire order, with the sender's name case."""


def get_header(headers: Headers, name: str) -> str | None:
    """The value of the first field called ``name`` (case-insensitive), or ``None``."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def set_header(headers: Headers, name: str, value: str) -> None:
    """Replace every field called ``name`` (case-insensitive) by one ``name: value`` field.

    The new field takes the place of the first one it replaces, or goes last.
    """
    wanted = name.lower()
    position = len(headers)
    kept: Headers = []
    for key, old in headers:
        if key.lower() == wanted:
            position = min(position, len(kept))
        else:
            kept.append((key, old))
    kept.insert(position, (name, value))
    headers[:] = kept


@dataclass(slots=True)
class InvocationContext:
    """One invocation, as far as hooks are concerned; shared by all hooks of that invocation.

    Times are ``time.monotonic_ns()`` readings. ``proxy_ns`` is maintained by the proxy (time
    spent running hooks and buffering bodies for them); hooks only read it. ``scratch`` belongs
    to the hooks: keep per-invocation state there (under a key unique to your hook), not in the
    hook object, so nothing outlives the invocation.
    """

    request_id: str
    deadline_ms: int | None = None
    function_arn: str | None = None
    trace_id: str | None = None
    invocation_id: str | None = None  # Lambda-Runtime-Invocation-Id, when the API sent one
    event_received_ns: int = 0  # when the event came from the Runtime API
    event_delivered_ns: int | None = None  # when it was handed to the runtime
    response_started_ns: int | None = None  # when the runtime began its /response or /error
    proxy_ns: int = 0
    scratch: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_next_headers(cls, headers: Headers, received_ns: int) -> InvocationContext:
        """Build the context from the response headers of ``GET /runtime/invocation/next``."""
        values = {key.lower(): value for key, value in reversed(headers)}
        deadline = values.get(api.H_DEADLINE_MS.lower(), "")
        return cls(
            request_id=values.get(api.H_REQUEST_ID.lower(), ""),
            deadline_ms=int(deadline) if deadline.isdigit() else None,
            function_arn=values.get(api.H_FUNCTION_ARN.lower()),
            trace_id=values.get(api.H_TRACE_ID.lower()),
            invocation_id=values.get(api.H_INVOCATION_ID.lower()),
            event_received_ns=received_ns,
        )


@dataclass(slots=True)
class Event:
    """An event from ``GET /next``, whole (events are at most 6 MB), before the runtime sees it.

    ``headers`` are the Runtime API's response headers (``Lambda-Runtime-*``, ``Content-Type``).
    A hook may change ``body`` and ``headers`` (in place, or by returning a new ``Event``); the
    proxy re-derives the framing headers (``Content-Length``) from the final body.
    """

    context: InvocationContext
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        return get_header(self.headers, name)


@dataclass(slots=True)
class Reject:
    """Returned by ``on_event``: the runtime never sees the event.

    fastproxy posts ``/runtime/invocation/{id}/error`` upstream with ``error_type`` (as the
    ``Lambda-Runtime-Function-Error-Type`` header and in the JSON body) and ``message``, then
    waits for the next event on the runtime's behalf. Never put payload contents in ``message``.
    """

    error_type: str = "Proxy.EventRejected"
    message: str = "rejected by a fastproxy hook"


@dataclass(slots=True)
class Response:
    """A buffered (non-streaming) ``POST /runtime/invocation/{id}/response``, whole."""

    context: InvocationContext
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        return get_header(self.headers, name)


@dataclass(slots=True)
class ErrorReport:
    """A ``POST /runtime/invocation/{id}/error`` or ``/runtime/init/error``, whole; read-only."""

    kind: Literal["invocation", "init"]
    context: InvocationContext | None  # None for init errors
    headers: Headers
    body: bytes
    error_type: str | None  # Lambda-Runtime-Function-Error-Type


class ResponseStream(Protocol):
    """Sees one streamed response chunk by chunk; made by a hook's ``open_response_stream``.

    ``feed`` returns the bytes to send on in place of ``chunk``. It may hold bytes back (to see
    what follows, e.g. a secret split across chunks) but never more than it needs; ``close``
    is called once at the end of the stream with its trailers and returns what was held back.
    Both run on the event loop for every chunk: keep them fast and never block.
    """

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self, trailers: Headers) -> bytes: ...


# One protocol per hook method, for type-checking user hooks (a hook needs only some of them).
@runtime_checkable
class EventHook(Protocol):
    def on_event(self, event: Event) -> Event | Reject | Awaitable[Event | Reject | None] | None:
        """Pass (``None``), replace (an ``Event``) or reject (a ``Reject``) the event."""
        ...


@runtime_checkable
class ResponseHook(Protocol):
    def on_response(self, response: Response) -> Response | Awaitable[Response | None] | None:
        """Pass (``None``) or replace (a ``Response``) a buffered response."""
        ...


@runtime_checkable
class StreamHook(Protocol):
    def open_response_stream(
        self, context: InvocationContext, headers: Headers
    ) -> ResponseStream | None:
        """A ``ResponseStream`` for this streamed response, or ``None`` to leave it alone."""
        ...


@runtime_checkable
class ResponseEndHook(Protocol):
    def on_response_end(
        self, context: InvocationContext, status: int, error_type: str | None
    ) -> Awaitable[None] | None:
        """The Runtime API answered the runtime's response or error post with ``status``."""
        ...


@runtime_checkable
class ErrorHook(Protocol):
    def on_error(self, report: ErrorReport) -> Awaitable[None] | None:
        """The runtime reported an invocation error or an init error."""
        ...


HOOK_METHODS = ("on_event", "on_response", "open_response_stream", "on_response_end", "on_error")
"""The method names that make an object a hook."""
