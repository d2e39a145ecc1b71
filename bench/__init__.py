"""fastproxy's benchmark suite: ``python -m bench`` (see ``bench/README-performance.md``).

Every figure is taken side by side with the direct path (the runtime loop client talking to
the Runtime API with no proxy) in the same run, in interleaved rounds, and reported as the
time the proxy adds and as a ratio, next to a raw byte relay and nginx as reference points.
"""
