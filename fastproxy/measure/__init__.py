"""The measurement core shared by ``fastproxy bench`` and the repository's ``python -m bench``.

- :mod:`~fastproxy.measure.stats`: nearest-rank percentiles and "added vs direct" summaries;
- :mod:`~fastproxy.measure.rounds`: interleaving (every path gets a round in turn, the order
  rotating, so a slow patch of the machine falls on every path alike);
- :mod:`~fastproxy.measure.procstat`: CPU time and peak RSS of a process tree from ``/proc``.

Nothing here imports the proxy: it measures processes from the outside.
"""
