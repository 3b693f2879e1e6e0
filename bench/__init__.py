"""Benchmarks of the node against Kamailio + rtpengine (`make bench`, `python -m bench`).

- :mod:`bench.systems`: the two systems under test and CPU accounting from /proc;
- :mod:`bench.scenarios`: SIPp caller, callee and REGISTER scenarios;
- :mod:`bench.rtpload`: two-way G.711 streams, echo and per-call counters (a process);
- :mod:`bench.load`: one measured load run; :mod:`bench.capture`: SIP timings on the wire;
- :mod:`bench.profile`: py-spy summary of the node; :mod:`bench.report`: tables, Markdown.
"""
