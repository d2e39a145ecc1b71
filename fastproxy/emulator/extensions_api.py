"""The Extensions API (``2020-01-01``) of the local sandbox, served on the Runtime API listener.

Rules follow RAPID as the official emulator implements them (PROTOCOL.md §3):

- ``register`` needs ``Lambda-Extension-Name``. A name equal to the file name of a launched
  executable registers that *external* extension; any other name is an *internal* extension
  (one living inside the runtime process), which may not subscribe to ``SHUTDOWN``. Internal
  registrations close once init completes. At most 10 extensions.
- Every call after ``register`` carries ``Lambda-Extension-Identifier``.
- ``event/next`` long-polls; one outstanding call per extension. Events are ``INVOKE`` and
  ``SHUTDOWN`` JSON documents with the real fields.
- Misuse is answered ``403`` with the RAPID ``errorType``.

The sandbox (``sandbox.py``) drives the lifecycle; this module only keeps the registry, the
per-extension event queues and the states, and wakes the sandbox on every change.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fastproxy import runtime_api as api
from fastproxy.emulator._http import Exchange, PeerDisconnected, json_body
from fastproxy.emulator.runtime_api import ACCOUNT_ID, error_body

REGISTER_PATH: Final = api.EXT_REGISTER_PATH
EVENT_NEXT_PATH: Final = api.EXT_EVENT_NEXT_PATH
KNOWN_EVENTS: Final = ("INVOKE", "SHUTDOWN")
NOT_ALLOWED: Final = "State transition is not allowed"

# Extension states (RIE core/agentsstate names).
LAUNCHED: Final = "Launched"
REGISTERED: Final = "Registered"
READY: Final = "Ready"
RUNNING: Final = "Running"
INIT_ERROR: Final = "InitError"
EXIT_ERROR: Final = "ExitError"


class ApiError(Exception):
    """A misuse answered with 403 and a RAPID error document."""

    def __init__(self, error_type: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status


@dataclass
class Extension:
    """One extension as the Extensions API knows it."""

    name: str
    external: bool
    id: str = ""
    state: str = LAUNCHED
    events: tuple[str, ...] = ()
    error_type: str | None = None
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    poller: asyncio.Future[bytes] | None = None
    registered_at: float | None = None

    @property
    def subscribed_invoke(self) -> bool:
        return "INVOKE" in self.events

    @property
    def subscribed_shutdown(self) -> bool:
        return "SHUTDOWN" in self.events


@dataclass(frozen=True)
class FunctionMetadata:
    function_name: str
    function_version: str
    handler: str


class ExtensionsApi:
    """Registry + HTTP handler for ``/2020-01-01/extension/*``."""

    def __init__(
        self,
        metadata: FunctionMetadata,
        *,
        managed_instances: bool = False,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.metadata = metadata
        self.managed_instances = managed_instances
        self.on_change = on_change
        self.registration_open = True
        self.extensions: list[Extension] = []
        self._by_id: dict[str, Extension] = {}

    # ----------------------------------------------------------------- sandbox side

    def reset(self) -> None:
        """Forget every extension (a new init generation); registration reopens."""
        for ext in self.extensions:
            if ext.poller is not None and not ext.poller.done():
                ext.poller.cancel()
        self.extensions.clear()
        self._by_id.clear()
        self.registration_open = True
        self._changed()

    def expect_external(self, name: str) -> Extension:
        """Note a launched executable; its ``register`` call must use ``name``."""
        ext = Extension(name=name, external=True)
        self.extensions.append(ext)
        return ext

    def close_registration(self) -> None:
        self.registration_open = False

    @property
    def registered(self) -> list[Extension]:
        return [ext for ext in self.extensions if ext.state != LAUNCHED]

    def all_ready(self, *, invoke_only: bool = False) -> bool:
        """Every registered extension (or every INVOKE subscriber) is parked in event/next."""
        return all(
            ext.state == READY
            for ext in self.registered
            if ext.subscribed_invoke or not invoke_only
        )

    def dispatch_invoke(
        self, request_id: str, deadline_ms: int, function_arn: str, trace_id: str | None
    ) -> None:
        event: dict[str, object] = {
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms,
            "requestId": request_id,
            "invokedFunctionArn": function_arn,
        }
        if trace_id:
            event["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        self._broadcast(json_body(event), lambda ext: ext.subscribed_invoke)

    def dispatch_shutdown(self, reason: str, deadline_ms: int) -> list[Extension]:
        event = {"eventType": "SHUTDOWN", "deadlineMs": deadline_ms, "shutdownReason": reason}
        return self._broadcast(json_body(event), lambda ext: ext.subscribed_shutdown)

    def _broadcast(self, body: bytes, wanted: Callable[[Extension], bool]) -> list[Extension]:
        targets = [ext for ext in self.registered if wanted(ext)]
        for ext in targets:
            if ext.poller is not None and not ext.poller.done():
                ext.poller.set_result(body)
            else:
                ext.queue.append(body)
        return targets

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ----------------------------------------------------------------- HTTP side

    async def handle(self, ex: Exchange) -> None:
        """Serve one ``/2020-01-01/...`` request."""
        try:
            body = await ex.read_body()
        except PeerDisconnected:
            return
        routes = {
            REGISTER_PATH: ("POST", self._register),
            EVENT_NEXT_PATH: ("GET", None),
            api.EXT_INIT_ERROR_PATH: ("POST", self._init_error),
            api.EXT_EXIT_ERROR_PATH: ("POST", self._exit_error),
        }
        route = routes.get(ex.path)
        if route is None:
            await ex.respond(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")
            return
        method, handler = route
        if ex.method != method:
            await ex.respond(405, b"", content_type=None)
            return
        try:
            if handler is None:
                await self._event_next(ex)
                return
            await handler(ex, body)
        except ApiError as exc:
            await ex.respond(exc.status, error_body(exc.error_type, exc.message))

    async def _register(self, ex: Exchange, body: bytes) -> None:
        name = ex.header(api.H_EXT_NAME) or ""
        if not name:
            raise ApiError("Extension.InvalidExtensionName", "Empty extension name")
        events = _parse_register_body(body)
        ext = next(
            (e for e in self.extensions if e.external and e.name == name),
            None,
        )
        if ext is not None:
            for event in events:
                if event not in KNOWN_EVENTS or (self.managed_instances and event == "INVOKE"):
                    raise ApiError("Extension.InvalidEventType", f"{event}: invalid event type")
            if ext.state != LAUNCHED:
                raise ApiError(
                    "Extension.InvalidExtensionState",
                    f"State transition from {ext.state} to {REGISTERED} failed for extension "
                    f"{name}. Error: {NOT_ALLOWED}",
                )
        else:
            for event in events:
                # Internal extensions live in the runtime process: no SHUTDOWN for them (and
                # nothing at all on Managed Instances).
                if event != "INVOKE" or self.managed_instances:
                    raise ApiError("Extension.InvalidEventType", f"{event}: invalid event type")
            if not self.registration_open:
                raise ApiError(
                    "Extension.RegistrationClosed", "Extension registration closed already"
                )
            if any(not e.external and e.name == name for e in self.extensions):
                raise ApiError(
                    "Extension.InvalidExtensionState", "Extension with this name already registered"
                )
            if len(self.extensions) >= api.MAX_EXTENSIONS:
                raise ApiError(
                    "Extension.TooManyExtensions", f"Extension limit ({api.MAX_EXTENSIONS}) reached"
                )
            ext = Extension(name=name, external=False)
            self.extensions.append(ext)
        ext.id = str(uuid.uuid4())
        ext.events = tuple(events)
        ext.state = REGISTERED
        ext.registered_at = time.monotonic()
        self._by_id[ext.id] = ext
        response: dict[str, str] = {
            "functionName": self.metadata.function_name,
            "functionVersion": self.metadata.function_version,
            "handler": self.metadata.handler,
        }
        features = ex.header(api.H_EXT_ACCEPT_FEATURE) or ""
        if "accountId" in (f.strip() for f in features.split(",")):
            response["accountId"] = ACCOUNT_ID
        await ex.respond(200, json_body(response), headers=[(api.H_EXT_ID, ext.id)])
        self._changed()

    def _identify(self, ex: Exchange) -> Extension:
        value = ex.header(api.H_EXT_ID)
        if not value:
            raise ApiError(
                "Extension.MissingExtensionIdentifier",
                f"Missing {api.H_EXT_ID} header",
            )
        try:
            uuid.UUID(value)
        except ValueError:
            raise ApiError(
                "Extension.InvalidExtensionIdentifier", f"Invalid {api.H_EXT_ID}"
            ) from None
        ext = self._by_id.get(value)
        if ext is None:
            raise ApiError("Extension.UnknownExtensionIdentifier", f"Unknown extension {value}")
        return ext

    async def _event_next(self, ex: Exchange) -> None:
        ext = self._identify(ex)
        if ext.state not in (REGISTERED, RUNNING):
            raise ApiError(
                "Extension.InvalidExtensionState",
                f"State transition from {ext.state} to {READY} failed for extension {ext.id}. "
                f"Error: {NOT_ALLOWED}",
            )
        if ext.queue:
            event = ext.queue.popleft()
        else:
            ext.state = READY
            poller: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            ext.poller = poller
            self._changed()
            gone = await ex.wait_disconnect(poller)
            ext.poller = None
            if gone:
                if poller.done() and not poller.cancelled():
                    ext.queue.appendleft(poller.result())
                if ext.state == READY:
                    ext.state = RUNNING
                self._changed()
                return
            if poller.cancelled():  # pragma: no cover - reset() while parked
                return
            event = poller.result()
        ext.state = RUNNING
        self._changed()
        await ex.respond(200, event, headers=[(api.H_EXT_EVENT_ID, str(uuid.uuid4()))])

    async def _init_error(self, ex: Exchange, body: bytes) -> None:
        await self._report_error(ex, INIT_ERROR, (REGISTERED,))

    async def _exit_error(self, ex: Exchange, body: bytes) -> None:
        await self._report_error(ex, EXIT_ERROR, (REGISTERED, READY, RUNNING))

    async def _report_error(self, ex: Exchange, target: str, allowed: tuple[str, ...]) -> None:
        ext = self._identify(ex)
        error_type = ex.header(api.H_EXT_ERROR_TYPE)
        if not error_type:
            raise ApiError("Extension.MissingHeader", f"{api.H_EXT_ERROR_TYPE} not found")
        if ext.state not in allowed:
            raise ApiError(
                "Extension.InvalidExtensionState",
                f"State transition from {ext.state} to {target} failed for extension {ext.id}. "
                f"Error: {NOT_ALLOWED}",
            )
        ext.state = target
        ext.error_type = error_type
        await ex.respond(202, json_body({"status": "OK"}))
        self._changed()


def _parse_register_body(body: bytes) -> list[str]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise ApiError("InvalidRequestFormat", str(exc)) from None
    if not isinstance(parsed, dict):
        raise ApiError("InvalidRequestFormat", "register body must be a JSON object")
    if parsed.get("configurationKeys"):
        raise ApiError(
            "InvalidRequestFormat",
            "configurationKeys are deprecated; use environment variables instead",
        )
    events = parsed.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ApiError("InvalidRequestFormat", "events must be a list of strings")
    return [str(e) for e in events]
