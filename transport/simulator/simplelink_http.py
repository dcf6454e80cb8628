"""The simulated CC3220's HTTP client: AT+HttpCreate/Connect/SetHeader/SendReq/GetHeader/
ReadResBody/Disconnect/Destroy (SPEC §7; [guide] Tables 76-83).

As on the real NWP, an HTTP client's connection is one of the 16 sockets (and an HTTPS one one
of the 6 secure ones): it goes through the shell like AT+Connect's, TLS included, so the shell
needs nothing of HTTP. The module writes the request itself (a chunked upload really sends
``Transfer-Encoding: chunked``) and reads the response out of the socket's receive buffer, the
body de-chunked as the host asks for it, so a slow reader holds the server back by TCP flow
control. The commands are not blocked commands (SPEC §2): their one answer comes when the
network has answered, the module busy meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from transport.simulator.simplelink_core import (
    EINVAL,
    EISCONN,
    ENETUNREACH,
    ENOBUFS,
    ENOMEM,
    ENOTCONN,
    ENSOCK,
    ESECSNOVERIFY,
    ESECT00MANYSSLOPENED,
    ETIMEDOUT,
    MAX_PAYLOAD,
    NOT_MODELLED,
    PARSE_ERROR,
    SECURE_SOCKETS,
    Blocked,
    Reply,
    SecureOptions,
    Socket,
    SocketState,
    bitmask,
    decode_data,
    encode_data,
    number,
    process_error,
    split_parameters,
    split_with_data,
)
from transport.simulator.simplelink_sockets import SocketCommands

CLIENTS = 4  # index 0..3; a 5th AT+HttpCreate is -12 (SPEC §7)
MAX_HEADER = 16 * 1024

# [guide] Table 82's options as header names.
REQUEST_HEADERS = {
    f"req_{key}": name
    for key, name in {
        "accept": "Accept",
        "accept_charset": "Accept-Charset",
        "accept_encoding": "Accept-Encoding",
        "accept_language": "Accept-Language",
        "allow": "Allow",
        "auth": "Authorization",
        "cache_control": "Cache-Control",
        "connection": "Connection",
        "content_encoding": "Content-Encoding",
        "content_language": "Content-Language",
        "content_location": "Content-Location",
        "content_type": "Content-Type",
        "cookie": "Cookie",
        "date": "Date",
        "expect": "Expect",
        "forwarded": "Forwarded",
        "from": "From",
        "host": "Host",
        "if_match": "If-Match",
        "if_modified_since": "If-Modified-Since",
        "if_none_match": "If-None-Match",
        "if_range": "If-Range",
        "if_unmodified_since": "If-Unmodified-Since",
        "origin": "Origin",
        "proxy_auth": "Proxy-Authorization",
        "range": "Range",
        "te": "TE",
        "tx_encoding": "Transfer-Encoding",
        "upgrade": "Upgrade",
        "user_agent": "User-Agent",
        "via": "Via",
        "warning": "Warning",
    }.items()
}
RESPONSE_HEADERS = {
    f"res_{key}": name
    for key, name in {
        "age": "Age",
        "allow": "Allow",
        "cache_control": "Cache-Control",
        "connection": "Connection",
        "content_encoding": "Content-Encoding",
        "content_language": "Content-Language",
        "content_length": "Content-Length",
        "content_location": "Content-Location",
        "content_range": "Content-Range",
        "content_type": "Content-Type",
        "date": "Date",
        "etag": "ETag",
        "expires": "Expires",
        "last_modified": "Last-Modified",
        "location": "Location",
        "proxy_auth": "Proxy-Authenticate",
        "retry_after": "Retry-After",
        "server": "Server",
        "set_cookie": "Set-Cookie",
        "trailer": "Trailer",
        "tx_encoding": "Transfer-Encoding",
        "upgrade": "Upgrade",
        "vary": "Vary",
        "via": "Via",
        "www_auth": "WWW-Authenticate",
        "warning": "Warning",
    }.items()
}
METHODS = {
    "get": "GET",
    "post": "POST",
    "head": "HEAD",
    "options": "OPTIONS",
    "put": "PUT",
    "del": "DELETE",
    "connect": "CONNECT",
}


class BodyReader:
    """A response body as it comes out of the receive buffer: counted by Content-Length,
    de-chunked (RFC 9112 §7.1), or up to the server's close; none at all for HEAD, 204, 304."""

    def __init__(self, mode: str, length: int = 0) -> None:
        self.mode = mode  # "none", "length", "chunked" or "close"
        self.remaining = length
        self.done = mode == "none" or (mode == "length" and length == 0)
        self._chunk_state = "size"  # size, data, data end, trailer

    def take(self, raw: bytearray, most: int, closed: bool) -> bytes:
        """Up to ``most`` body bytes out of ``raw`` (consumed); ``closed``: the server has
        closed, so what is in ``raw`` is all there will be."""
        out = bytearray()
        if self.mode == "close":
            out += raw[:most]
            del raw[: len(out)]
            self.done = closed and not raw
        elif self.mode == "length":
            n = min(most, self.remaining, len(raw))
            out += raw[:n]
            del raw[:n]
            self.remaining -= n
            self.done = self.remaining == 0
        elif self.mode == "chunked":
            while not self.done and len(out) < most and self._chunk_step(raw, out, most):
                pass
        return bytes(out)

    def _chunk_step(self, raw: bytearray, out: bytearray, most: int) -> bool:
        """One step of de-chunking; False when it needs more bytes."""
        if self._chunk_state == "data":
            n = min(most - len(out), self.remaining, len(raw))
            if n == 0:
                return False
            out += raw[:n]
            del raw[:n]
            self.remaining -= n
            if self.remaining == 0:
                self._chunk_state = "data end"
            return True
        end = raw.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(raw[:end])
        del raw[: end + 2]
        if self._chunk_state == "size":
            size = int(line.split(b";")[0].strip() or b"0", 16)
            self.remaining = size
            self._chunk_state = "data" if size else "trailer"
        elif self._chunk_state == "data end":
            self._chunk_state = "size"
        elif not line:  # the empty line after the trailer fields
            self.done = True
        return True


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case name: value
    body: BodyReader
    discard: bool = False  # drop_body, or a new request came before the body was read


@dataclass
class HttpClient:
    index: int
    sd: int | None = None  # its connection's socket
    host: str = ""  # as the Host header says it
    headers: dict[str, tuple[str, bytes, bool]] = field(default_factory=dict)
    response: HttpResponse | None = None
    previous: HttpResponse | None = None  # a response whose body is still to be discarded
    chunking: bool = False  # between chunk_start and chunk_end


class HttpClientCommands(SocketCommands):
    """The HTTP client commands; see the module docstring."""

    def _init_http(self) -> None:
        self.http_clients: dict[int, HttpClient] = {}

    def _reset_http(self) -> None:
        self.http_clients.clear()  # their sockets went with the socket table

    def _client(self, text: str) -> HttpClient | None:
        index = number(text)
        return self.http_clients.get(index) if index is not None else None

    def _http_socket(self, client: HttpClient) -> Socket | None:
        return self.sockets.get(client.sd) if client.sd is not None else None

    def _cmd_httpcreate(self, params: str | None, now: float) -> Reply:
        if params:
            return [PARSE_ERROR]
        free = [i for i in range(CLIENTS) if i not in self.http_clients]
        if not free:
            return [process_error(ENOMEM)]
        self.http_clients[free[0]] = HttpClient(free[0])
        return [f"+httpcreate:{free[0]}", "OK"]

    def _cmd_httpdestroy(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1 or number(found[0]) is None:
            return [PARSE_ERROR]
        client = self._client(found[0])
        if client is None:
            return [process_error(EINVAL)]
        self._disconnect(client)
        del self.http_clients[client.index]
        return ["OK"]

    def _cmd_httpdisconnect(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1 or number(found[0]) is None:
            return [PARSE_ERROR]
        client = self._client(found[0])
        if client is None:
            return [process_error(EINVAL)]
        self._disconnect(client)
        return ["OK"]

    def _disconnect(self, client: HttpClient) -> None:
        sock = self._http_socket(client)
        if sock is not None:
            self._close_connection(sock, abort=False)
            del self.sockets[sock.sd]
        client.sd = None
        client.response = client.previous = None
        client.chunking = False

    # -- AT+HttpConnect ([guide] Table 78) --

    def _cmd_httpconnect(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 2 <= len(found) <= 6 or number(found[0]) is None:
            return [PARSE_ERROR]
        key, cert, ca = (found + [""] * 6)[3:6]
        parts = urlsplit(found[1])
        scheme = parts.scheme.lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            return [PARSE_ERROR]
        host = parts.hostname or ""
        flags = bitmask(found[2]) if len(found) > 2 else []
        if scheme not in ("http", "https") or not host:
            return [PARSE_ERROR]
        if any(flag not in ("ignore_proxy", "host_exist") for flag in flags):
            return [PARSE_ERROR]
        client = self._client(found[0])
        if client is None:
            return [process_error(EINVAL)]
        if self._http_socket(client) is not None:
            return [process_error(EISCONN)]
        if not self.has_ip:
            return [process_error(ENETUNREACH)]
        sd = self._free_sd()
        if sd is None:
            return [process_error(ENSOCK)]
        secure = scheme == "https"
        if secure and self._secure_count() >= SECURE_SOCKETS:
            return [process_error(ESECT00MANYSSLOPENED)]
        sock = Socket(sd, secure, owner="http")
        # TI's HTTP client verifies the server's name against the host it was given.
        sock.tls = SecureOptions(
            ca_file=ca, certificate_file=cert, private_key_file=key, domain=host
        )
        self._add_socket(sock)
        client.sd = sd
        client.host = host if port == (443 if secure else 80) else f"{host}:{port}"
        self._open(sock, host, port, host, now)

        def attempt(_at: float) -> list[str] | None:
            if sock.connect_result is None:
                return None
            # No CA file: connected unverified, which the HTTP client takes (ESECSNOVERIFY);
            # any other code fails the connect, -461 included (SPEC §5: the driver's rule).
            if sock.state is SocketState.CONNECTED and sock.failure in (0, ESECSNOVERIFY):
                return ["OK"]
            code = sock.failure
            self._disconnect(client)
            return [process_error(code)]

        return Blocked(attempt, early_ok=False)

    # -- AT+HttpSetHeader ([guide] Table 82) --

    def _cmd_httpsetheader(self, params: str | None, now: float) -> Reply:
        found = split_with_data(params or "", 5)
        if found is None:
            return [PARSE_ERROR]
        (index, option, flags, data_format, length), rest = found
        value = decode_data(data_format, length, rest)
        option = option.lower()
        persistence = bitmask(flags) or ["not_persistent"]
        if number(index) is None or value is None or len(persistence) != 1:
            return [PARSE_ERROR]
        if persistence[0] not in ("persistent", "not_persistent"):
            return [PARSE_ERROR]
        if option in RESPONSE_HEADERS:
            return [NOT_MODELLED]  # the response filter
        if option not in REQUEST_HEADERS:
            return [PARSE_ERROR]
        client = self._client(index)
        if client is None:
            return [process_error(EINVAL)]
        if not value:
            client.headers.pop(option, None)  # length 0 removes it (SPEC §7)
        else:
            persistent = persistence[0] == "persistent"
            client.headers[option] = (REQUEST_HEADERS[option], value, persistent)
        return ["OK"]

    # -- AT+HttpSendReq ([guide] Table 80) --

    def _cmd_httpsendreq(self, params: str | None, now: float) -> Reply:
        found = split_with_data(params or "", 6)
        if found is None:
            # Format, length and data are "mandatory only in case of methods post or put"
            # ([guide] Table 80): a GET may end after its uri or flags.
            short = split_parameters(params or "")
            if short is None or not 3 <= len(short) <= 6:
                return [PARSE_ERROR]
            found = (short + [""] * (6 - len(short)), "")
        (index, method_name, uri, flag_text, data_format, length), rest = found
        method = METHODS.get(method_name.lower())
        flags = bitmask(flag_text)
        body = decode_data(data_format or "1", length or "0", rest)
        if number(index) is None or method is None or not uri or body is None:
            return [PARSE_ERROR]
        if any(flag not in ("chunk_start", "chunk_end", "drop_body") for flag in flags):
            return [PARSE_ERROR]
        if method == "CONNECT":
            return [NOT_MODELLED]  # proxy tunnels
        client = self._client(index)
        if client is None:
            return [process_error(EINVAL)]
        sock = self._http_socket(client)
        if sock is None or sock.state is not SocketState.CONNECTED:
            return [process_error(ENOTCONN)]
        if "chunk_start" in flags and client.chunking:
            return [process_error(EINVAL)]
        if "chunk_start" in flags:
            client.chunking = True
            data = self._request_head(client, method, uri, None) + _chunk(body)
            return self._send_then(sock, data, now, lambda _at: ["OK"])
        if client.chunking:
            data = _chunk(body)
            if "chunk_end" not in flags:
                return self._send_then(sock, data, now, lambda _at: ["OK"])
            client.chunking = False
            data += b"0\r\n\r\n"
        else:
            with_body = bool(body) or method in ("POST", "PUT")
            data = self._request_head(client, method, uri, len(body) if with_body else None)
            data += body
        # A body left unread is discarded before the new response is read.
        if client.response is not None and not client.response.body.done:
            client.previous = client.response
        client.response = None
        wait = self._await_response(client, sock, method, "drop_body" in flags)
        return self._send_then(sock, data, now, wait)

    def _request_head(self, client: HttpClient, method: str, uri: str, length: int | None) -> bytes:
        """The request line and headers: Host, the headers set, then Content-Length (or
        ``Transfer-Encoding: chunked`` when ``length`` is None for a chunked upload)."""
        lines = [f"{method} {uri} HTTP/1.1".encode("latin-1")]
        if "req_host" not in client.headers:
            lines.append(f"Host: {client.host}".encode("latin-1"))
        for option, (name, value, persistent) in list(client.headers.items()):
            lines.append(name.encode("latin-1") + b": " + value)
            if not persistent:
                del client.headers[option]  # for this request only (SPEC §7)
        if length is not None:
            lines.append(f"Content-Length: {length}".encode("latin-1"))
        elif client.chunking:
            lines.append(b"Transfer-Encoding: chunked")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _send_then(
        self, sock: Socket, data: bytes, now: float, then: Callable[[float], list[str] | None]
    ) -> Blocked:
        """Put ``data`` in the connection's send buffer (waiting for room, SPEC §5), then
        wait for ``then`` to give the answer."""
        sent = False

        def attempt(at: float) -> list[str] | None:
            nonlocal sent
            gone = self.sockets.get(sock.sd) is not sock
            answered = sent and sock.state is SocketState.PEER_CLOSED  # and then closed
            if gone or (sock.state is not SocketState.CONNECTED and not answered):
                return [process_error(ENOTCONN)]  # lost during the request (SPEC §7)
            if not sent:
                sent = self._send_on(sock, data)
                if not sent:
                    return None
            return then(at)

        return Blocked(
            attempt,
            early_ok=False,
            deadline=now + self.profile.http_timeout,
            expire=lambda _at: [process_error(ETIMEDOUT)],
        )

    def _await_response(
        self, client: HttpClient, sock: Socket, method: str, drop_body: bool
    ) -> Callable[[float], list[str] | None]:
        def wait(_at: float) -> list[str] | None:
            closed = sock.state is not SocketState.CONNECTED
            previous = client.previous
            if previous is not None:
                previous.body.take(sock.rx, len(sock.rx), closed)
                if not previous.body.done:
                    return [process_error(ENOTCONN)] if closed else None
                client.previous = None
            response = _parse_head(sock.rx, method)
            if response is None:
                return [process_error(ENOTCONN)] if closed else None
            response.discard = drop_body
            client.response = response
            if drop_body:
                client.previous = response
            return [f"+httpsendreq:{response.status}", "OK"]

        return wait

    # -- AT+HttpGetHeader, AT+HttpReadResBody ([guide] Tables 81, 83) --

    def _cmd_httpgetheader(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 4 or found[2] not in ("0", "1"):
            return [PARSE_ERROR]
        index, option, data_format, most = found[0], found[1].lower(), found[2], number(found[3])
        if number(index) is None or most is None or option not in RESPONSE_HEADERS:
            return [PARSE_ERROR]
        client = self._client(index)
        if client is None:
            return [process_error(EINVAL)]
        response = client.response
        value = response.headers.get(RESPONSE_HEADERS[option].lower()) if response else None
        if value is None:
            return [f"+httpgetheader:{client.index},{data_format},0,", "OK"]  # SPEC §7
        raw = value.encode("latin-1")
        if len(raw) > most:
            return [process_error(ENOBUFS)]  # SPEC is silent: too long for the host's buffer
        return [
            f"+httpgetheader:{client.index},{data_format},{encode_data(data_format, raw)}",
            "OK",
        ]

    def _cmd_httpreadresbody(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 3 or found[1] not in ("0", "1"):
            return [PARSE_ERROR]
        data_format, most = found[1], number(found[2], 1, MAX_PAYLOAD)
        if number(found[0]) is None or most is None:
            return [PARSE_ERROR]
        client = self._client(found[0])
        if client is None:
            return [process_error(EINVAL)]
        nothing = [f"+httpreadresbody:{client.index},0,{data_format},0,", "OK"]
        response = client.response
        sock = self._http_socket(client)
        if response is None or response.discard or response.body.done:
            return nothing
        if sock is None:
            return [process_error(ENOTCONN)]

        def attempt(_at: float) -> list[str] | None:
            if self.sockets.get(sock.sd) is not sock or sock.state is SocketState.DEAD:
                return [process_error(ENOTCONN)]
            closed = sock.state is not SocketState.CONNECTED
            data = response.body.take(sock.rx, most, closed)
            if data:
                more = 0 if response.body.done else 1
                return [
                    f"+httpreadresbody:{client.index},{more},{data_format},"
                    f"{encode_data(data_format, data)}",
                    "OK",
                ]
            if response.body.done:
                return nothing
            return [process_error(ENOTCONN)] if closed else None  # cut mid-body (SPEC §7)

        return Blocked(
            attempt,
            early_ok=False,
            deadline=now + self.profile.http_timeout,
            expire=lambda _at: [process_error(ETIMEDOUT)],
        )

    def _cmd_httpsetopt(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]  # redirects and the response filter

    def _cmd_httpsetproxy(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]


def _chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); nothing for no data (the zero chunk
    would end the body)."""
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n" if data else b""


def _parse_head(raw: bytearray, method: str) -> HttpResponse | None:
    """The status line and header fields, taken out of ``raw`` once they are all there;
    interim (1xx) responses are skipped."""
    while True:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(raw[:end]).decode("latin-1")
        del raw[: end + 4]
        lines = head.split("\r\n")
        status_line = lines[0].split(" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if 100 <= status < 200:
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if method == "HEAD" or status in (204, 304):
            body = BodyReader("none")
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = BodyReader("chunked")
        elif headers.get("content-length", "").isdigit():
            body = BodyReader("length", int(headers["content-length"]))
        else:
            body = BodyReader("close")
        return HttpResponse(status, headers, body)
