"""Quectel HTTP(S) error codes 701-730 (EC20 HTTP manual ch. 4, seed 000; BG95 HTTP(S)
application note ch. 4-5, seed 001; at-protocol.md §6), one exception class each.

Each message says what the module reported and what the manual advises; ``retry_now`` marks
the errors the manual answers with "resend the request" (seed 001 §4.6).
"""

from __future__ import annotations

from transport.errors import TransferError


class ModuleHttpError(TransferError):
    """The module's HTTP(S) client reported ``<err>`` (``+CME ERROR: <err>`` or a URC)."""

    code = 0
    meaning = "HTTP(S) error"
    advice = ""

    def __init__(self, doing: str) -> None:
        super().__init__(f"{doing}: module error {self.code} ({self.meaning}): {self.advice}")
        self.doing = doing


class HttpUnknownError(ModuleHttpError):
    code = 701
    meaning = "HTTP(S) unknown error"
    advice = "retry; if it persists, re-activate the PDP context (AT+QIDEACT, AT+QIACT)"


class HttpTimeout(ModuleHttpError):
    code = 702
    meaning = "HTTP(S) timeout"
    advice = "the server did not answer in time: retry, and check that it is reachable"
    retry_now = True


class HttpBusy(ModuleHttpError):
    code = 703
    meaning = "HTTP(S) busy"
    advice = (
        "another HTTP(S) operation is running on the module: wait for it to end (or "
        "AT+QHTTPSTOP) and retry"
    )


class HttpUartBusy(ModuleHttpError):
    code = 704
    meaning = "HTTP(S) UART busy"
    advice = (
        "another port of the module is in data mode and only one can be at a time: retry "
        "once it has left data mode"
    )


class HttpNoRequest(ModuleHttpError):
    code = 705
    meaning = "HTTP(S) no GET/POST requests"
    advice = "read the response only after the +QHTTPGET/+QHTTPPOST URC has come"


class HttpNetworkBusy(ModuleHttpError):
    code = 706
    meaning = "HTTP(S) network busy"
    advice = "the network is busy: retry later"


class HttpNetworkOpenFailed(ModuleHttpError):
    code = 707
    meaning = "HTTP(S) network open failed"
    advice = "check registration (AT+CEREG?, AT+CGREG?) and the APN (AT+QICSGP)"


class HttpNetworkNotConfigured(ModuleHttpError):
    code = 708
    meaning = "HTTP(S) network no configuration"
    advice = (
        'no PDP context is configured for HTTP: set the APN (AT+QICSGP) and AT+QHTTPCFG="contextid"'
    )


class HttpNetworkDeactivated(ModuleHttpError):
    code = 709
    meaning = "HTTP(S) network deactivated"
    advice = "the PDP context is not active: activate it (AT+QIACT) and retry"


class HttpNetworkError(ModuleHttpError):
    code = 710
    meaning = "HTTP(S) network error"
    advice = "re-activate the PDP context (AT+QIDEACT, AT+QIACT) and retry"


class HttpUrlError(ModuleHttpError):
    code = 711
    meaning = "HTTP(S) URL error"
    advice = "the URL is malformed: it must start with http:// or https:// and name a host"


class HttpEmptyUrl(ModuleHttpError):
    code = 712
    meaning = "HTTP(S) empty URL"
    advice = "set the URL with AT+QHTTPURL before the request"


class HttpIpAddressError(ModuleHttpError):
    code = 713
    meaning = "HTTP(S) IP address error"
    advice = "check the server address in the URL"


class HttpDnsError(ModuleHttpError):
    code = 714
    meaning = "HTTP(S) DNS error"
    advice = (
        "check the host name, that the PDP context is active (AT+QIACT?) and that the "
        "module has a DNS server (AT+QIDNSCFG, not 0.0.0.0); re-activating the context "
        "renews it"
    )


class HttpSocketCreateError(ModuleHttpError):
    code = 715
    meaning = "HTTP(S) socket create error"
    advice = "the module has no free socket: close unused ones; a module restart clears leaked ones"


class HttpSocketConnectError(ModuleHttpError):
    code = 716
    meaning = "HTTP(S) socket connect error"
    advice = (
        "the server refused or is unreachable: check host, port, firewall and (for https)"
        " the TLS settings"
    )


class HttpSocketReadError(ModuleHttpError):
    code = 717
    meaning = "HTTP(S) socket read error"
    advice = "resend the request"
    retry_now = True


class HttpSocketWriteError(ModuleHttpError):
    code = 718
    meaning = "HTTP(S) socket write error"
    advice = "resend the request"
    retry_now = True


class HttpSocketClosed(ModuleHttpError):
    code = 719
    meaning = "HTTP(S) socket closed"
    advice = "the server closed the connection: resend the request"
    retry_now = True


class HttpEncodeError(ModuleHttpError):
    code = 720
    meaning = "HTTP(S) data encode error"
    advice = "the request could not be encoded: check the request header"


class HttpDecodeError(ModuleHttpError):
    code = 721
    meaning = "HTTP(S) data decode error"
    advice = "the server's response could not be decoded"


class HttpReadTimeout(ModuleHttpError):
    code = 722
    meaning = "HTTP(S) read timeout"
    advice = "the data stalled: resend the request"
    retry_now = True


class HttpResponseFailed(ModuleHttpError):
    code = 723
    meaning = "HTTP(S) response failed"
    advice = "no valid response from the server: resend the request"
    retry_now = True


class HttpIncomingCallBusy(ModuleHttpError):
    code = 724
    meaning = "Incoming call busy"
    advice = "an incoming call holds the module: retry after it"


class HttpVoiceCallBusy(ModuleHttpError):
    code = 725
    meaning = "Voice call busy"
    advice = "a voice call holds the module: retry after it"


class HttpInputTimeout(ModuleHttpError):
    code = 726
    meaning = "Input timeout"
    advice = "the module did not get the announced bytes in time: the serial line stalled"
    retry_now = True


class HttpWaitDataTimeout(ModuleHttpError):
    code = 727
    meaning = "Wait data timeout"
    advice = "no data came in time: resend the request"
    retry_now = True


class HttpResponseTimeout(ModuleHttpError):
    code = 728
    meaning = "Wait HTTP(S) response timeout"
    advice = (
        "the server did not answer within the response time: retry, or allow a longer response time"
    )
    retry_now = True


class HttpOutOfMemory(ModuleHttpError):
    code = 729
    meaning = "Memory allocation failed"
    advice = "the module ran out of memory: use smaller pieces; restart the module if it persists"


class HttpInvalidParameter(ModuleHttpError):
    code = 730
    meaning = "Invalid parameter"
    advice = "the module refused a parameter: a bug in the driver, please report it"


HTTP_ERRORS: dict[int, type[ModuleHttpError]] = {
    cls.code: cls for cls in ModuleHttpError.__subclasses__()
}


def module_http_error(code: int, doing: str) -> TransferError:
    """The exception for ``<err>`` ``code`` while ``doing`` (a FILE error 4xx, or an unknown code,
    gets a plain :class:`TransferError` naming it)."""
    cls = HTTP_ERRORS.get(code)
    if cls is not None:
        return cls(doing)
    return TransferError(f"{doing}: module error {code}")
