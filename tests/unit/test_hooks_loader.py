"""Loading hooks from FASTPROXY_HOOKS: built-ins, user modules, the hooks path, clear errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastproxy.config import ConfigError
from fastproxy.hooks import HookChain, HookConfigError, HookLoadError, chain_from_env, load_hooks
from fastproxy.hooks.builtin.audit import AuditHook
from fastproxy.hooks.builtin.firewall import FirewallHook
from fastproxy.hooks.builtin.redact import RedactHook
from fastproxy.hooks.builtin.trace import TraceHook

FIREWALL_ENV = {"FASTPROXY_FIREWALL_MAX_EVENT_BYTES": "1000"}


@pytest.fixture
def hook_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory for hook modules; sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(directory: Path, relative: str, source: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


HOOK_MODULE = """
    from fastproxy.hooks import Event, Reject

    class Deny:
        name = "deny-all"

        def on_event(self, event: Event) -> Reject:
            return Reject("Proxy.Denied", "denied")

    instance = Deny()

    def on_event(event: Event) -> None:
        return None

    class NoMethods:
        pass

    class Explodes:
        def __init__(self) -> None:
            raise RuntimeError("no config")

    class AsyncOpener:
        async def open_response_stream(self, context, headers):
            return None

    class Blocking:
        blocking = True

        def on_error(self, report):
            pass

        async def on_response_end(self, context, status, error_type):
            pass
"""


def test_built_in_short_names_load_in_order() -> None:
    hooks = load_hooks("audit, redact,firewall ,trace", FIREWALL_ENV)
    assert [hook.name for hook in hooks] == ["audit", "redact", "firewall", "trace"]
    assert isinstance(hooks[0].obj, AuditHook) and isinstance(hooks[1].obj, RedactHook)
    assert isinstance(hooks[2].obj, FirewallHook) and isinstance(hooks[3].obj, TraceHook)
    assert hooks[0].on_event is not None and hooks[0].open_response_stream is not None
    assert hooks[3].on_response is None


def test_module_attribute_forms(hook_dir: Path) -> None:
    write(hook_dir, "myhooks_a.py", HOOK_MODULE)
    env = {"FASTPROXY_HOOKS_PATH": str(hook_dir)}
    by_class, by_instance, by_module = load_hooks(
        "myhooks_a:Deny, myhooks_a:instance, myhooks_a", env
    )
    # A class is instantiated; its ``name`` attribute names it.
    assert by_class.name == "deny-all" and type(by_class.obj).__name__ == "Deny"
    assert by_instance.obj is sys.modules["myhooks_a"].instance
    assert by_module.name == "myhooks_a" and by_module.on_event is not None


def test_submodule_attribute_is_imported(hook_dir: Path) -> None:
    write(hook_dir, "mypkg_b/__init__.py", "")
    write(hook_dir, "mypkg_b/hooks.py", HOOK_MODULE)
    (hook,) = load_hooks("mypkg_b:hooks", {"FASTPROXY_HOOKS_PATH": str(hook_dir)})
    assert hook.obj is sys.modules["mypkg_b.hooks"]


def test_blocking_applies_to_sync_methods_only(hook_dir: Path) -> None:
    write(hook_dir, "myhooks_c.py", HOOK_MODULE)
    (hook,) = load_hooks("myhooks_c:Blocking", {"FASTPROXY_HOOKS_PATH": str(hook_dir)})
    assert hook.blocking
    assert hook.on_error is not None and hook.on_error.in_thread
    assert hook.on_response_end is not None and hook.on_response_end.is_async
    assert not hook.on_response_end.in_thread


def test_hooks_path_directories_go_first_in_order(hook_dir: Path) -> None:
    first, second = hook_dir / "one", hook_dir / "two"
    write(first, "myhooks_d.py", "def on_event(event):\n    return None\nWHERE = 'one'\n")
    write(second, "myhooks_d.py", "def on_event(event):\n    return None\nWHERE = 'two'\n")
    (hook,) = load_hooks("myhooks_d", {"FASTPROXY_HOOKS_PATH": f"{first}:{second}"})
    assert hook.obj.WHERE == "one"  # type: ignore[attr-defined]
    assert sys.path[:2] == [str(first), str(second)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nosuchmodule_xyz:Hook", "hook nosuchmodule_xyz:Hook: cannot import nosuchmodule_xyz"),
        ("audti", "built-in hooks: audit, firewall, redact, trace"),
        ("myhooks_e:Missing", "hook myhooks_e:Missing: myhooks_e has no attribute Missing"),
        ("myhooks_e:NoMethods", "has none of the hook methods"),
        ("myhooks_e:Explodes", "creating Explodes() failed: RuntimeError: no config"),
        ("myhooks_e:AsyncOpener", "open_response_stream must be a plain function"),
        ("myhooks_e:", "is malformed"),
        ("myhooks_broken", "importing myhooks_broken failed: ZeroDivisionError"),
    ],
)
def test_load_errors_are_one_line_and_name_the_hook(
    hook_dir: Path, spec: str, expected: str
) -> None:
    write(hook_dir, "myhooks_e.py", HOOK_MODULE)
    write(hook_dir, "myhooks_broken.py", "1 / 0\n")
    with pytest.raises(HookLoadError) as caught:
        load_hooks(spec, {"FASTPROXY_HOOKS_PATH": str(hook_dir)})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert isinstance(caught.value, ConfigError)  # the CLI's exit-2 path handles it


def test_chain_from_env_is_none_without_hooks() -> None:
    assert chain_from_env({}) is None
    assert chain_from_env({"FASTPROXY_HOOKS": " , "}) is None


def test_chain_from_env_reads_policy_and_timeout() -> None:
    chain = chain_from_env(
        {
            "FASTPROXY_HOOKS": "trace,audit",
            "FASTPROXY_HOOK_FAILURE": "closed",
            "FASTPROXY_HOOK_TIMEOUT_MS": "250",
        }
    )
    assert isinstance(chain, HookChain)
    assert (chain.names, chain.policy, chain.timeout_s) == (["trace", "audit"], "closed", 0.25)
    assert chain.has_event_hooks and chain.has_stream_hooks and chain.has_end_hooks
    default = chain_from_env({"FASTPROXY_HOOKS": "trace"})
    assert default is not None and (default.policy, default.timeout_s) == ("open", 1.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FASTPROXY_HOOK_FAILURE": "maybe"}, "FASTPROXY_HOOK_FAILURE='maybe' must be open or"),
        ({"FASTPROXY_HOOK_TIMEOUT_MS": "-5"}, "FASTPROXY_HOOK_TIMEOUT_MS='-5' must be a positive"),
        ({"FASTPROXY_REDACT_PATTERNS": "(unclosed"}, "FASTPROXY_REDACT_PATTERNS: pattern 1"),
        ({"FASTPROXY_REDACT_BUILTINS": "bogus"}, "FASTPROXY_REDACT_BUILTINS: unknown bogus"),
        ({"FASTPROXY_AUDIT_PAYLOADS": "perhaps"}, "FASTPROXY_AUDIT_PAYLOADS='perhaps' must be"),
    ],
)
def test_bad_settings_are_clear_config_errors(env: dict[str, str], expected: str) -> None:
    with pytest.raises(HookConfigError) as caught:
        chain_from_env({"FASTPROXY_HOOKS": "redact,audit", **env})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_firewall_without_rules_is_a_load_error() -> None:
    with pytest.raises(HookLoadError, match="hook firewall: no firewall rule is set"):
        load_hooks("firewall", {})
