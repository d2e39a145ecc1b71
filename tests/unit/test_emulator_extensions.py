"""The sandbox's Extensions API over real sockets: registration rules, events, 403 types."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread
from fastproxy.emulator.extensions_api import ExtensionsApi, FunctionMetadata


@dataclass
class Env:
    emu: EmulatorThread
    extensions: ExtensionsApi
    conns: list[http.client.HTTPConnection]

    def conn(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.emu.address, timeout=10)
        self.conns.append(conn)
        return conn

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        conn = conn or self.conn()
        conn.request(method, path, body=body if method == "POST" else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp, resp.read()

    def register(
        self, name: str | None, events: list[str], features: str | None = None
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        headers = {} if name is None else {api.H_EXT_NAME: name}
        if features:
            headers[api.H_EXT_ACCEPT_FEATURE] = features
        return self.call(
            "POST", api.EXT_REGISTER_PATH, json.dumps({"events": events}).encode(), headers
        )

    def register_id(self, name: str, events: list[str]) -> str:
        status, resp, body = self.register(name, events)
        assert status == 200, body
        return resp.getheader(api.H_EXT_ID) or ""


def error_type(body: bytes) -> str:
    return str(json.loads(body)["errorType"])


def make_env(managed_instances: bool = False) -> Iterator[Env]:
    with EmulatorThread() as emu:
        cond = emu.emulator.recorder.cond

        def wake_waiters() -> None:
            # Lets emu.wait_until() see extension state changes.
            with cond:
                cond.notify_all()

        extensions = ExtensionsApi(
            FunctionMetadata("my-function", "$LATEST", "app.handler"),
            managed_instances=managed_instances,
            on_change=wake_waiters,
        )

        def attach() -> None:
            emu.emulator.extension_handler = extensions.handle
            extensions.expect_external("ext-a")
            extensions.expect_external("ext-b")

        emu.call(attach)
        env = Env(emu, extensions, [])
        try:
            yield env
        finally:
            for conn in env.conns:
                conn.close()


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


@pytest.fixture
def lmi_env() -> Iterator[Env]:
    yield from make_env(managed_instances=True)


def test_external_register_returns_identifier_and_function_metadata(env: Env) -> None:
    status, resp, body = env.register("ext-a", ["INVOKE", "SHUTDOWN"])
    assert status == 200
    uuid.UUID(resp.getheader(api.H_EXT_ID) or "")
    assert json.loads(body) == {
        "functionName": "my-function",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
    }


def test_account_id_feature_adds_the_account_id(env: Env) -> None:
    status, _, body = env.register("ext-a", [], features="accountId")
    assert status == 200
    assert json.loads(body)["accountId"] == "012345678912"


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        (None, b'{"events": []}', "Extension.InvalidExtensionName"),
        ("", b'{"events": []}', "Extension.InvalidExtensionName"),
        ("ext-a", b"not json", "InvalidRequestFormat"),
        ("ext-a", b"", "InvalidRequestFormat"),
        ("ext-a", b'{"events": [], "configurationKeys": ["k"]}', "InvalidRequestFormat"),
        ("ext-a", b'{"events": ["BOGUS"]}', "Extension.InvalidEventType"),
        # A name that is no launched file is an internal extension: no SHUTDOWN for it.
        ("ext-a.sh", b'{"events": ["SHUTDOWN"]}', "Extension.InvalidEventType"),
    ],
)
def test_bad_registrations_are_403(env: Env, name: str | None, body: bytes, expected: str) -> None:
    headers = {} if name is None else {api.H_EXT_NAME: name}
    status, _, answer = env.call("POST", api.EXT_REGISTER_PATH, body, headers)
    assert status == 403
    assert error_type(answer) == expected


def test_registering_twice_is_invalid_state(env: Env) -> None:
    env.register_id("ext-a", ["SHUTDOWN"])
    status, _, body = env.register("ext-a", ["SHUTDOWN"])
    assert status == 403
    assert error_type(body) == "Extension.InvalidExtensionState"
    assert "State transition from Registered to Registered" in json.loads(body)["errorMessage"]
    env.register_id("internal-x", ["INVOKE"])
    status, _, body = env.register("internal-x", [])
    assert (status, error_type(body)) == (403, "Extension.InvalidExtensionState")


def test_registration_after_init_is_closed(env: Env) -> None:
    env.emu.call(env.extensions.close_registration)
    status, _, body = env.register("late-internal", [])
    assert (status, error_type(body)) == (403, "Extension.RegistrationClosed")


def test_more_than_ten_extensions_is_too_many(env: Env) -> None:
    for n in range(8):  # + the two launched ones = 10
        env.register_id(f"internal-{n}", [])
    status, _, body = env.register("internal-8", [])
    assert status == 403
    assert error_type(body) == "Extension.TooManyExtensions"
    assert json.loads(body)["errorMessage"] == "Extension limit (10) reached"


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        (None, "Extension.MissingExtensionIdentifier"),
        ("not-a-uuid", "Extension.InvalidExtensionIdentifier"),
        (str(uuid.uuid4()), "Extension.UnknownExtensionIdentifier"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", api.EXT_EVENT_NEXT_PATH),
        ("POST", api.EXT_INIT_ERROR_PATH),
        ("POST", api.EXT_EXIT_ERROR_PATH),
    ],
)
def test_identifier_problems_are_403(
    env: Env, identifier: str | None, expected: str, method: str, path: str
) -> None:
    headers = {api.H_EXT_ERROR_TYPE: "Extension.Test"}
    if identifier is not None:
        headers[api.H_EXT_ID] = identifier
    status, _, body = env.call(method, path, b"{}", headers)
    assert (status, error_type(body)) == (403, expected)


def test_event_next_delivers_invoke_and_shutdown_events(env: Env) -> None:
    ext_id = env.register_id("ext-a", ["INVOKE", "SHUTDOWN"])
    conn = env.conn()
    conn.request("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: ext_id})
    env.emu.wait_until(lambda: env.extensions.all_ready())
    env.emu.call(lambda: env.extensions.dispatch_invoke("rid-1", 1234, "arn:x", "Root=1-2-3"))
    resp = conn.getresponse()
    assert resp.status == 200
    uuid.UUID(resp.getheader(api.H_EXT_EVENT_ID) or "")
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(resp.read()) == {
        "eventType": "INVOKE",
        "deadlineMs": 1234,
        "requestId": "rid-1",
        "invokedFunctionArn": "arn:x",
        "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-2-3"},
    }
    # Queued while the extension is not polling; delivered on its next call.
    env.emu.call(lambda: env.extensions.dispatch_shutdown("spindown", 99))
    status, _, body = env.call("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: ext_id})
    assert status == 200
    assert json.loads(body) == {
        "eventType": "SHUTDOWN",
        "deadlineMs": 99,
        "shutdownReason": "spindown",
    }


def test_invoke_goes_only_to_subscribers(env: Env) -> None:
    only_shutdown = env.register_id("ext-a", ["SHUTDOWN"])
    env.emu.call(lambda: env.extensions.dispatch_invoke("rid-1", 1, "arn:x", None))
    conn = env.conn()
    conn.request("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: only_shutdown})
    env.emu.wait_until(lambda: env.extensions.all_ready())
    env.emu.call(lambda: env.extensions.dispatch_shutdown("spindown", 5))
    assert json.loads(conn.getresponse().read())["eventType"] == "SHUTDOWN"


def test_second_concurrent_event_next_is_invalid_state(env: Env) -> None:
    ext_id = env.register_id("ext-a", [])
    first = env.conn()
    first.request("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: ext_id})
    env.emu.wait_until(lambda: env.extensions.all_ready())
    status, _, body = env.call("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: ext_id})
    assert (status, error_type(body)) == (403, "Extension.InvalidExtensionState")


def test_init_error_and_exit_error(env: Env) -> None:
    ext_id = env.register_id("ext-a", [])
    status, _, body = env.call("POST", api.EXT_INIT_ERROR_PATH, b"{}", {api.H_EXT_ID: ext_id})
    assert (status, error_type(body)) == (403, "Extension.MissingHeader")
    headers = {api.H_EXT_ID: ext_id, api.H_EXT_ERROR_TYPE: "Extension.ConfigInvalid"}
    status, _, body = env.call("POST", api.EXT_INIT_ERROR_PATH, b"{}", headers)
    assert (status, body) == (202, b'{"status":"OK"}\n')
    assert (
        env.emu.call(lambda: env.extensions.extensions[0].error_type) == "Extension.ConfigInvalid"
    )
    # InitError is final: neither event/next nor a second error report is allowed.
    status, _, body = env.call("GET", api.EXT_EVENT_NEXT_PATH, headers={api.H_EXT_ID: ext_id})
    assert (status, error_type(body)) == (403, "Extension.InvalidExtensionState")
    other = env.register_id("ext-b", [])
    headers = {api.H_EXT_ID: other, api.H_EXT_ERROR_TYPE: "Extension.Bye"}
    status, _, _ = env.call("POST", api.EXT_EXIT_ERROR_PATH, b"{}", headers)
    assert status == 202


def test_managed_instances_reject_invoke_subscriptions(lmi_env: Env) -> None:
    status, _, body = lmi_env.register("ext-a", ["INVOKE"])
    assert (status, error_type(body)) == (403, "Extension.InvalidEventType")
    assert lmi_env.register("ext-a", ["SHUTDOWN"])[0] == 200
    status, _, body = lmi_env.register("internal", ["INVOKE"])
    assert (status, error_type(body)) == (403, "Extension.InvalidEventType")
