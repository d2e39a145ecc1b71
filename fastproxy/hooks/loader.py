"""Loading the hooks named by ``FASTPROXY_HOOKS``, once, at start.

``FASTPROXY_HOOKS`` is a comma-separated list; each item is either a built-in hook's short name
(``audit``, ``firewall``, ``redact``, ``trace``), ``module:attribute`` (the attribute may be a
class, instantiated with no arguments, an instance, a module, or a submodule:
``mypackage:hooks`` imports ``mypackage.hooks``), or a bare ``module`` used as the hook itself.

Directories listed in ``FASTPROXY_HOOKS_PATH`` (colon-separated) are put at the front of
``sys.path`` before anything is imported: a hook packaged as its own layer lives under
``/opt/...``, and ``/opt/python`` is on the runtime's path, not on the extension's.

Every problem is a ``HookLoadError`` (a ``ConfigError``) with one line naming the hook and the
reason, so the extension can report it through ``/extension/init/error`` and exit 2.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from fastproxy.hooks.api import HOOK_METHODS
from fastproxy.hooks.chain import HookChain, HookMethod, LoadedHook
from fastproxy.hooks.settings import (
    ENV_HOOKS,
    ENV_HOOKS_PATH,
    HookConfigError,
    failure_policy,
    timeout_s,
)

BUILTINS: Final[Mapping[str, str]] = {
    "audit": "fastproxy.hooks.builtin.audit",
    "firewall": "fastproxy.hooks.builtin.firewall",
    "redact": "fastproxy.hooks.builtin.redact",
    "trace": "fastproxy.hooks.builtin.trace",
}
_BUILTIN_LIST: Final = ", ".join(sorted(BUILTINS))


class HookLoadError(HookConfigError):
    """A configured hook cannot be used; the one-line message names it and says why."""


def add_hooks_path(env: Mapping[str, str]) -> list[str]:
    """Put the ``FASTPROXY_HOOKS_PATH`` directories at the front of ``sys.path``, in order."""
    text = env.get(ENV_HOOKS_PATH, "")
    directories = [item for item in text.split(":") if item.strip()]
    for directory in reversed(directories):
        if directory in sys.path:
            sys.path.remove(directory)
        sys.path.insert(0, directory)
    return directories


def load_hooks(spec: str, env: Mapping[str, str] | None = None) -> list[LoadedHook]:
    """Import and resolve the hooks named in ``spec`` (``FASTPROXY_HOOKS`` syntax), in order.

    ``env`` configures the built-in hooks and gives ``FASTPROXY_HOOKS_PATH`` (default:
    ``os.environ``).
    """
    env = os.environ if env is None else env
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if items:
        add_hooks_path(env)
    return [_load_one(item, env) for item in items]


def chain_from_env(env: Mapping[str, str] | None = None) -> HookChain | None:
    """The hook chain ``FASTPROXY_HOOKS`` asks for, or ``None`` when it is empty or unset.

    ``None`` means the proxy runs its zero-cost pass-through path. Raises ``HookLoadError`` for
    a hook that cannot be loaded and ``HookConfigError`` for a malformed hook setting.
    """
    env = os.environ if env is None else env
    spec = env.get(ENV_HOOKS, "")
    if not spec.strip():
        return None
    policy = failure_policy(env)
    timeout = timeout_s(env)
    hooks = load_hooks(spec, env)
    if not hooks:
        return None
    from fastproxy.logs import get_logger

    return HookChain(
        hooks,
        "closed" if policy == "closed" else "open",
        timeout,
        log=get_logger("fastproxy.hooks", env),
    )


def _load_one(item: str, env: Mapping[str, str]) -> LoadedHook:
    builtin = BUILTINS.get(item)
    if builtin is not None:
        module = importlib.import_module(builtin)
        try:
            obj = module.from_env(env)
        except HookConfigError as exc:
            raise HookLoadError(f"hook {item}: {exc}") from None
        return resolve_hook(obj, item)
    obj = _import_target(item)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise HookLoadError(
                f"hook {item}: creating {obj.__name__}() failed: {type(exc).__name__}: {exc}"
            ) from None
    return resolve_hook(obj, item)


def _import_target(item: str) -> Any:
    module_name, colon, attribute = item.partition(":")
    module_name = module_name.strip()
    attribute = attribute.strip()
    if not module_name or (colon and not attribute):
        raise HookLoadError(
            f"hook {item!r} is malformed: use module:attribute or one of {_BUILTIN_LIST}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = "" if colon or "." in module_name else f" (built-in hooks: {_BUILTIN_LIST})"
        raise HookLoadError(
            f"hook {item}: cannot import {module_name}: {type(exc).__name__}: {exc}{hint}"
        ) from None
    except Exception as exc:
        raise HookLoadError(
            f"hook {item}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    if not colon:
        return module
    target: Any = module
    path = module_name
    for part in attribute.split("."):
        path = f"{path}.{part}"
        try:
            target = getattr(target, part)
            continue
        except AttributeError:
            pass
        if inspect.ismodule(target):
            try:
                target = importlib.import_module(path)
                continue
            except ModuleNotFoundError as exc:
                if exc.name != path:
                    raise HookLoadError(
                        f"hook {item}: cannot import {path}: {type(exc).__name__}: {exc}"
                    ) from None
            except Exception as exc:
                raise HookLoadError(
                    f"hook {item}: importing {path} failed: {type(exc).__name__}: {exc}"
                ) from None
        raise HookLoadError(f"hook {item}: {module_name} has no attribute {attribute}")
    return target


def resolve_hook(obj: object, default_name: str) -> LoadedHook:
    """Resolve the hook methods of ``obj`` once; ``HookLoadError`` if it is not a usable hook."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        name = default_name
    blocking = bool(getattr(obj, "blocking", False))
    found: dict[str, Callable[..., Any]] = {}
    for method_name in HOOK_METHODS:
        method = getattr(obj, method_name, None)
        if method is None:
            continue
        if not callable(method):
            raise HookLoadError(f"hook {name}: {method_name} is not callable")
        found[method_name] = method
    if not found:
        raise HookLoadError(
            f"hook {name}: {type(obj).__name__} has none of the hook methods "
            f"({', '.join(HOOK_METHODS)})"
        )
    opener = found.get("open_response_stream")
    if opener is not None and _is_async(opener):
        raise HookLoadError(
            f"hook {name}: open_response_stream must be a plain function, not async "
            "(it runs for every streamed response, on the event loop)"
        )

    def resolved(method_name: str) -> HookMethod | None:
        fn = found.get(method_name)
        if fn is None:
            return None
        is_async = _is_async(fn)
        return HookMethod(fn, is_async, in_thread=blocking and not is_async)

    return LoadedHook(
        name=name,
        obj=obj,
        blocking=blocking,
        on_event=resolved("on_event"),
        on_response=resolved("on_response"),
        open_response_stream=opener,
        on_response_end=resolved("on_response_end"),
        on_error=resolved("on_error"),
        methods=tuple(found),
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)
