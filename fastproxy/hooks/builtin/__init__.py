"""The built-in hooks, each usable on its own and each a model for writing your own.

``audit`` (one JSON line per invocation), ``redact`` (mask secrets in responses, streaming-safe),
``firewall`` (reject events by size, invalid JSON or deny patterns), ``trace`` (W3C
``traceparent`` into API Gateway and Function URL events). Each module has a ``from_env(env)``
factory, which is what ``FASTPROXY_HOOKS=audit,...`` uses, and a hook class that can be
configured in code.
"""
