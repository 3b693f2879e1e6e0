"""The node link: a QUIC connection with mutual TLS from each node to the controller.

:mod:`appliance.link.protocol` is the pure wire format (frames and messages, no I/O);
:mod:`appliance.link.client` is the node's asyncio edge (enrolment, plan application,
heartbeats, reconnection). The controller's side is :mod:`controller.linkd`. See
``docs/LINK.md``.
"""
