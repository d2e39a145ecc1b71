"""``fastproxy bench``: what fastproxy adds to *your* function, measured in the local sandbox.

- :mod:`.options`: the command line;
- :mod:`.proxy_files`, :mod:`.layer_source`: which fastproxy goes in the path;
- :mod:`.sides`: the function in a sandbox, direct or proxied, and one timed invocation;
- :mod:`.runner`: warm-up and interleaved rounds (on :mod:`fastproxy.measure`);
- :mod:`.report`: JSON, table, Markdown and the gate;
- :mod:`.cli`: ``main``, exit statuses.
"""
