"""Hooks: inspect, change or reject events and responses as they pass through fastproxy.

The public API (the types a hook receives and returns) is re-exported here; see
``fastproxy.hooks.api`` for the hook shapes and ``docs/hooks.md`` for a guide. The proxy uses
``chain_from_env`` once at start: ``None`` means no hooks, and the pass-through path is then
exactly the core's.
"""

from __future__ import annotations

from fastproxy.hooks.api import (
    ErrorHook,
    ErrorReport,
    Event,
    EventHook,
    Headers,
    InvocationContext,
    Reject,
    Response,
    ResponseEndHook,
    ResponseHook,
    ResponseStream,
    StreamHook,
    get_header,
    set_header,
)
from fastproxy.hooks.chain import (
    HOOK_FAILED,
    HOOK_TIMEOUT,
    HookChain,
    HookFailure,
    LoadedHook,
    StreamPipeline,
)
from fastproxy.hooks.loader import HookLoadError, chain_from_env, load_hooks
from fastproxy.hooks.settings import HookConfigError

__all__ = (
    "HOOK_FAILED",
    "HOOK_TIMEOUT",
    "ErrorHook",
    "ErrorReport",
    "Event",
    "EventHook",
    "Headers",
    "HookChain",
    "HookConfigError",
    "HookFailure",
    "HookLoadError",
    "InvocationContext",
    "LoadedHook",
    "Reject",
    "Response",
    "ResponseEndHook",
    "ResponseHook",
    "ResponseStream",
    "StreamHook",
    "StreamPipeline",
    "chain_from_env",
    "get_header",
    "load_hooks",
    "set_header",
)
