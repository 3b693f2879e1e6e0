"""Errors of the SIP core, split by whose fault they are (see docs/CONTRACTS.md).

* ``SipError`` is the base of every error this package raises.
* ``SipParseError`` is the *peer's* fault: the bytes we received are not a SIP
  message we can process. It carries the response the peer deserves
  (``status``/``reason``, 400 Bad Request unless a more precise code applies);
  for a response, or for garbage without usable headers, the caller drops it.
* ``TransactionError`` is *our* fault: the local code asked the transaction layer
  for something that cannot be done (unknown transaction, wrong state, ...).

``REASON_PHRASES`` is the default reason phrase table (RFC 3261 section 21 plus the
extension codes we may meet); it lives here so that errors can name their reason
without importing the message module.
"""

from __future__ import annotations

__all__ = [
    "REASON_PHRASES",
    "SipError",
    "SipParseError",
    "TransactionError",
    "default_reason",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_REASONS = {
    1: "Trying",
    2: "OK",
    3: "Redirect",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def default_reason(status: int) -> str:
    """Reason phrase for ``status``; unknown codes get their class's generic phrase."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return _CLASS_REASONS.get(status // 100, "Unknown")


class SipError(Exception):
    """Base of every error raised by ``appliance.sip``."""


class SipParseError(SipError):
    """The peer sent something we cannot process (remote fault).

    ``status`` and ``reason`` are the response the peer deserves (RFC 3261
    section 21.4); ``detail`` says what was wrong, for logs and the Warning header.
    """

    def __init__(self, detail: str = "", *, status: int = 400, reason: str | None = None) -> None:
        self.detail = detail
        self.status = status
        self.reason = reason if reason is not None else default_reason(status)
        super().__init__(
            f"{status} {self.reason}: {detail}" if detail else f"{status} {self.reason}"
        )


class TransactionError(SipError):
    """Local misuse of the transaction layer (our fault): unknown transaction, bad state."""
