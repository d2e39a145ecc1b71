"""``firewall``: rejects events before the runtime sees them.

Rules, checked in this order (the first that fires rejects the event):

* ``FASTPROXY_FIREWALL_MAX_EVENT_BYTES``: events larger than this many bytes;
* ``FASTPROXY_FIREWALL_DENY``: events whose body bytes match any of these regular expressions
  (one per line, or a JSON array of strings);
* ``FASTPROXY_FIREWALL_REQUIRE_JSON=1``: events whose body is not valid JSON.

A rejected invocation fails with ``errorType`` ``Proxy.EventRejected`` and a message naming the
rule (never the payload); the runtime is not told and simply receives the next event. At least
one rule must be configured.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from fastproxy.hooks import settings
from fastproxy.hooks.api import Event, Reject
from fastproxy.hooks.settings import HookConfigError

ERROR_TYPE: Final = "Proxy.EventRejected"


@dataclass(frozen=True)
class FirewallConfig:
    max_event_bytes: int | None = None
    require_json: bool = False
    deny: list[re.Pattern[bytes]] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FirewallConfig:
        config = cls(
            max_event_bytes=settings.positive_int(env, settings.ENV_FIREWALL_MAX_EVENT_BYTES, None),
            require_json=settings.flag(env, settings.ENV_FIREWALL_REQUIRE_JSON),
            deny=settings.pattern_list(env, settings.ENV_FIREWALL_DENY),
        )
        if config.max_event_bytes is None and not config.require_json and not config.deny:
            raise HookConfigError(
                "no firewall rule is set: use "
                f"{settings.ENV_FIREWALL_MAX_EVENT_BYTES}, {settings.ENV_FIREWALL_DENY} or "
                f"{settings.ENV_FIREWALL_REQUIRE_JSON}=1"
            )
        return config


class FirewallHook:
    """Rejects events by size, deny pattern or invalid JSON (see the module docstring)."""

    name = "firewall"

    def __init__(self, config: FirewallConfig | None = None) -> None:
        self.config = config if config is not None else FirewallConfig.from_env(os.environ)

    def on_event(self, event: Event) -> Reject | None:
        config = self.config
        body = event.body
        if config.max_event_bytes is not None and len(body) > config.max_event_bytes:
            return Reject(
                ERROR_TYPE,
                f"event of {len(body)} bytes is over the {config.max_event_bytes}-byte limit "
                f"({settings.ENV_FIREWALL_MAX_EVENT_BYTES})",
            )
        for number, pattern in enumerate(config.deny, 1):
            if pattern.search(body) is not None:
                return Reject(
                    ERROR_TYPE,
                    f"event matches deny pattern {number} ({settings.ENV_FIREWALL_DENY})",
                )
        if config.require_json:
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                return Reject(
                    ERROR_TYPE,
                    f"event is not valid JSON ({settings.ENV_FIREWALL_REQUIRE_JSON})",
                )
        return None


def from_env(env: Mapping[str, str]) -> FirewallHook:
    return FirewallHook(FirewallConfig.from_env(env))
