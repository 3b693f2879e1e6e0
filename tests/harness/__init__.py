"""End-to-end test harness: real peers driven from pytest.

- ``procs``: :class:`~tests.harness.procs.ManagedProcess` (every external process), port
  helpers (``free_udp_port``, ``free_port_pair``, ``free_port_range``).
- ``baresip``: :class:`~tests.harness.baresip.BaresipPhone`, a headless baresip 1.0 phone
  driven through ctrl_tcp (dial, accept, hangup, hold, resume, transfer, DTMF, events,
  recordings).
- ``sipp``: :class:`~tests.harness.sipp.Sipp` runs SIPp scenarios and parses statistics.
- ``audio``: tones, WAV I/O, Goertzel power, RMS, ``dominant_tone_check``.

Modules are imported on demand (``from tests.harness.baresip import BaresipPhone``) so that
a test needing only ``procs`` does not pull numpy in.
"""
