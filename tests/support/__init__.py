"""What the tests share, one module per role.

- :mod:`support.proxy`: ``fastproxy serve`` as a child process (``ProxyProcess``,
  ``running_proxy``) and the paths it can take (``PATHS``).
- :mod:`support.wire`: a runtime's side of the wire: raw sockets and a keep-alive h11 client.
- :mod:`support.replies`: what a runtime received, parsed with h11 (the reference parser).
- :mod:`support.procfs`: ``/proc`` probes (fds, sockets, RSS, process state) and polling.
- :mod:`support.scripts`: behaviour functions for the emulator's scripting hook
  (:mod:`fastproxy.emulator.scripting`).
- :mod:`support.fuzz`: hypothesis strategies the two fuzzers share.

Responses and requests are always parsed with h11, never with the code under test.
"""
