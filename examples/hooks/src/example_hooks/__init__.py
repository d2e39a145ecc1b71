"""Example fastproxy hooks, packaged as their own Lambda layer (see ../../README.md).

Configure them with, for example::

    FASTPROXY_HOOKS_PATH=/opt/fastproxy-hooks
    FASTPROXY_HOOKS=example_hooks.tenant:TenantGuard,example_hooks.metrics:ResponseMetrics
"""
