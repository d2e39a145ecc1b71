"""An event hook: only let HTTP events from known tenants reach the function.

API Gateway and Function URL events must carry an ``x-tenant-id`` header whose value is in
``TENANT_GUARD_ALLOWED`` (comma-separated). Other events (SQS, schedules...) pass untouched.
A rejected invocation fails with ``Proxy.UnknownTenant``; the function never runs for it.
"""

from __future__ import annotations

import json
import os

from fastproxy.hooks import Event, Reject


class TenantGuard:
    name = "tenant-guard"

    def __init__(self) -> None:
        # Configuration is read once, when fastproxy loads the hook at start.
        allowed = os.environ.get("TENANT_GUARD_ALLOWED", "")
        self.allowed = frozenset(item.strip() for item in allowed.split(",") if item.strip())
        if not self.allowed:
            # Raising here stops fastproxy at start with a clear error naming this hook.
            raise ValueError("TENANT_GUARD_ALLOWED is empty")

    def on_event(self, event: Event) -> Reject | None:
        # Cheap test first: most events are not HTTP events, don't parse them.
        if b'"headers"' not in event.body:
            return None
        try:
            data = json.loads(event.body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("headers"), dict):
            return None
        headers = {str(k).lower(): v for k, v in data["headers"].items()}
        if headers.get("x-tenant-id") in self.allowed:
            return None
        # The message names the rule, never the payload.
        return Reject("Proxy.UnknownTenant", "missing or unknown x-tenant-id header")
