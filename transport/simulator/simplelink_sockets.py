"""The simulated CC3220's socket and DNS commands (SPEC §2, §5; [guide] Tables 14-26, 48).

AT+Connect, AT+Recv, AT+Select and AT+NetAPPGetHostByName are blocked commands: ``OK`` at once,
then nothing else runs until their result (SPEC §2). Data is base64 (format 1) as the driver
sends it, or binary (format 0) as far as a line-based UART allows (SPEC §1). A SEC socket's
options become the :class:`~transport.simulator.tls.TlsSettings` the shell runs TLS with.
"""

from __future__ import annotations

from transport.simulator.network_actions import OpenSsl, OpenTcp, Resolve
from transport.simulator.simplelink_core import (
    DNS_FAILED,
    EAGAIN,
    EBADF,
    EISCONN,
    ENETUNREACH,
    ENOTCONN,
    ENSOCK,
    ESECT00MANYSSLOPENED,
    ETIMEDOUT,
    MAX_PAYLOAD,
    NOT_MODELLED,
    PARSE_ERROR,
    SECURE_SOCKETS,
    SOCKETS,
    Blocked,
    ModuleCore,
    Reply,
    SecureOptions,
    Socket,
    SocketState,
    bitmask,
    decode_data,
    encode_data,
    ipv4,
    number,
    process_error,
    split_parameters,
    split_with_data,
)
from transport.simulator.tls import ALL_SUITES, ModuleFile, TlsSettings

# SECURE_MASK names ([guide] Table 21) as OpenSSL names: what the NWP offers in its hello.
CIPHERS = {
    "SSL_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "SSL_RSA_WITH_RC4_128_MD5": "RC4-MD5",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA": "DHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
}
# SECMETHOD ([guide] Table 21) as tls.py's versions: 3 is TLS 1.2 only, the CC3220's best
# (it has no TLS 1.3); 0-2 are refused by this OpenSSL, as a modern server would refuse them.
METHODS = {"SSLV3": 0, "TLSV1": 1, "TLSV1_1": 2, "TLSV1_2": 3, "SSLV3_TLSV1_2": 3}
FILE_OPTIONS = {
    "SECURE_FILES_CA_FILE_NAME": "ca_file",
    "SECURE_FILES_CERTIFICATE_FILE_NAME": "certificate_file",
    "SECURE_FILES_PRIVATE_KEY_FILE_NAME": "private_key_file",
}


class SocketCommands(ModuleCore):
    """AT+Socket, AT+Close, AT+SetSockOpt, AT+Connect, AT+Send, AT+Recv, AT+Select and
    AT+NetAPPGetHostByName; see the module docstring."""

    def _init_sockets(self) -> None:
        self._dns_seq = 0
        self._dns_answers: dict[int, str | None] = {}

    def _read_file(self, name: str) -> bytes | None:
        """A closed file of the module's file system (:mod:`.simplelink_files`)."""
        raise NotImplementedError

    def tls_settings(self, options: SecureOptions, host: str, now: float) -> TlsSettings:
        """What a SEC socket's options say about a connection to ``host`` now: the files are
        read from the file store as they are at connect time, the dates checked against the
        module clock as a warning (-461), the domain name checked (and sent as SNI) only when
        SECURE_DOMAIN_NAME_VERIFICATION named one (SPEC §5)."""

        def file(name: str) -> ModuleFile:
            return ModuleFile(name, self._read_file(name) if name else None)

        verify = bool(options.ca_file)
        # A client certificate is presented when either file is named; a missing one of
        # the pair is then -457/-458 (client certificates without a CA file: not modelled).
        presents = bool(options.certificate_file or options.private_key_file)
        names = [CIPHERS[name] for name in options.ciphers] or list(CIPHERS.values())
        return TlsSettings(
            host=options.domain or host,
            seclevel=(2 if presents else 1) if verify else 0,
            version=METHODS[options.method],
            cipher_suite=ALL_SUITES,
            cacert=file(options.ca_file),
            clientcert=file(options.certificate_file),
            clientkey=file(options.private_key_file),
            sni=bool(options.domain),
            checkhost=bool(options.domain),
            module_time=self.module_time(now),
            negotiate_time=self.profile.tls_handshake_timeout,
            ciphers=":".join(names),
            date_is_warning=True,
        )

    # -- AT+Socket, AT+Close ([guide] Tables 14-15) --

    def _cmd_socket(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 3:
            return [PARSE_ERROR]
        family, kind, protocol = (p.upper() for p in found)
        if family not in ("INET", "INET6", "RF") or kind not in ("STREAM", "DGRAM", "RAW"):
            return [PARSE_ERROR]
        if protocol not in ("TCP", "UDP", "RAW", "SEC"):
            return [PARSE_ERROR]
        if family != "INET" or kind != "STREAM" or protocol not in ("TCP", "SEC"):
            return [NOT_MODELLED]  # IPv6, UDP, raw sockets and transceiver mode
        sd = self._free_sd()
        if sd is None:
            return [process_error(ENSOCK)]
        secure = protocol == "SEC"
        if secure and self._secure_count() >= SECURE_SOCKETS:
            return [process_error(ESECT00MANYSSLOPENED)]
        self._add_socket(Socket(sd, secure))
        return [f"+socket:{sd}", "OK"]

    def _cmd_close(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 1 or number(found[0]) is None:
            return [PARSE_ERROR]
        sock = self._host_socket(number(found[0]))
        if sock is None:
            return [process_error(EBADF)]
        self._close_connection(sock, abort=False)
        del self.sockets[sock.sd]
        self.refused_sends.discard(sock.sd)
        return [f"+close:{sock.sd}", "OK"]

    # -- AT+SetSockOpt ([guide] Table 21) --

    def _cmd_setsockopt(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) < 4 or number(found[0]) is None:
            return [PARSE_ERROR]
        level, option, values = found[1].upper(), found[2].upper(), found[3:]
        if level in ("IP", "PHY"):
            return [NOT_MODELLED]  # multicast, raw IP and transceiver options
        if level != "SOCKET":
            return [PARSE_ERROR]
        sock = self._host_socket(number(found[0]))
        if sock is None:
            return [process_error(EBADF)]
        if option == "SECMETHOD":
            if values[0].upper() not in METHODS:
                return [PARSE_ERROR]
            sock.tls.method = values[0].upper()
        elif option == "SECURE_MASK":
            names = [name.upper() for name in bitmask(values[0])]
            if not names or any(name not in CIPHERS for name in names):
                return [PARSE_ERROR]
            sock.tls.ciphers = tuple(names)
        elif option in FILE_OPTIONS:
            setattr(sock.tls, FILE_OPTIONS[option], values[0])
        elif option == "SECURE_DOMAIN_NAME_VERIFICATION":
            sock.tls.domain = values[0]
        elif option in ("KEEPALIVE", "KEEPALIVETIME"):
            # Taken; the simulated network never loses a connection silently unless a test
            # blackholes it, and then keepalive probes are not modelled.
            if number(values[0]) is None:
                return [PARSE_ERROR]
        elif option == "RCVTIMEO":
            seconds = number(values[0])
            micros = number(values[1]) if len(values) > 1 else 0
            if seconds is None or micros is None:
                return [PARSE_ERROR]
            timeout = seconds + micros / 1e6
            sock.rcvtimeo = timeout if timeout > 0 else None
        elif option == "NONBLOCKING":
            if values[0] not in ("0", "1"):
                return [PARSE_ERROR]
            if values[0] == "1":
                return [NOT_MODELLED]  # every socket blocks (AT+Select tells when to read)
        else:
            return [NOT_MODELLED]  # RCVBUF, LINGER, ALPN, DH files, ...: not modelled
        return ["OK"]

    def _cmd_getsockopt(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    # -- AT+Connect ([guide] Table 19): blocked --

    def _cmd_connect(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 4 or number(found[0]) is None:
            return [PARSE_ERROR]
        family = found[1].upper()
        port = number(found[2], 1, 65535)
        address = ipv4(found[3])
        if family == "INET6":
            return [NOT_MODELLED]
        if family != "INET" or port is None or address is None:
            return [PARSE_ERROR]  # SPEC §5: an IP address; DNS is AT+NetAPPGetHostByName
        sock = self._host_socket(number(found[0]))
        if sock is None:
            return self._blocked_result(process_error(EBADF))
        if sock.state is not SocketState.OPEN:
            return self._blocked_result(process_error(EISCONN))
        if not self.has_ip:
            return self._blocked_result(process_error(ENETUNREACH))
        self._open(sock, address, port, address, now)
        return Blocked(lambda _at: sock.connect_result, early_ok=True)

    def _open(self, sock: Socket, host: str, port: int, address: str, now: float) -> None:
        """Ask the shell for the connection (TLS for a SEC socket) to ``host``."""
        sock.state = SocketState.CONNECTING
        sock.address, sock.port = address, port
        sock.connect_result = None
        if sock.secure:
            self._actions.append(
                OpenSsl(sock.sd, host, port, self.tls_settings(sock.tls, host, now))
            )
        else:
            self._actions.append(OpenTcp(sock.sd, host, port))

    @staticmethod
    def _blocked_result(line: str) -> Blocked:
        """A blocked command that failed once past its parsing: ``OK``, then ``line`` (SPEC §2)."""
        return Blocked(lambda _at: [line], early_ok=True)

    # -- AT+Send ([guide] Table 25) --

    def _cmd_send(self, params: str | None, now: float) -> Reply:
        found = split_with_data(params or "", 3)
        if found is None:
            return [PARSE_ERROR]
        (sd_text, data_format, length), rest = found
        data = decode_data(data_format, length, rest)
        if number(sd_text) is None or data is None or len(data) > MAX_PAYLOAD:
            return [PARSE_ERROR]  # SPEC §5
        sock = self._host_socket(number(sd_text))
        if sock is None:
            return [process_error(EBADF)]
        if sock.state is not SocketState.CONNECTED:
            return [process_error(ENOTCONN)]
        if self._send_on(sock, data):
            self._extra_delay, self.send_result_delay = self.send_result_delay, 0.0
            return ["OK"]

        # The send buffer is full: sl_Send blocks until the network takes enough (SPEC §5).
        def attempt(_at: float) -> list[str] | None:
            if sock.state is not SocketState.CONNECTED or self.sockets.get(sock.sd) is not sock:
                return [process_error(ENOTCONN)]
            return ["OK"] if self._send_on(sock, data) else None

        return Blocked(
            attempt,
            early_ok=False,
            deadline=now + self.profile.send_block_timeout,
            expire=lambda _at: [process_error(ETIMEDOUT)],
        )

    # -- AT+Recv ([guide] Table 23): blocked --

    def _cmd_recv(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 3 or found[1] not in ("0", "1"):
            return [PARSE_ERROR]
        sd, data_format, most = number(found[0]), found[1], number(found[2], 1, MAX_PAYLOAD)
        if sd is None or most is None:
            return [PARSE_ERROR]
        sock = self._host_socket(sd)
        if sock is None:
            return self._blocked_result(process_error(EBADF))

        def attempt(_at: float) -> list[str] | None:
            if sock.rx:
                data = bytes(sock.rx[:most])
                del sock.rx[:most]
                return [f"+recv:{sock.sd},{data_format},{encode_data(data_format, data)}", "OK"]
            if sock.state is SocketState.PEER_CLOSED:
                return [f"+recv:{sock.sd},{data_format},0,", "OK"]
            if sock.state is not SocketState.CONNECTED:
                return [process_error(ENOTCONN)]
            return None  # SPEC §5: it blocks until data comes

        timeout = sock.rcvtimeo
        return Blocked(
            attempt,
            early_ok=True,
            deadline=None if timeout is None else now + timeout,
            expire=lambda _at: [process_error(EAGAIN)],
        )

    # -- AT+Select ([guide] Table 20): blocked --

    def _cmd_select(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 4:
            return [PARSE_ERROR]
        nfds = number(found[0], 1, SOCKETS)
        sds = [number(part) for part in bitmask(found[1])]
        seconds, micros = number(found[2]), number(found[3])
        if nfds is None or seconds is None or micros is None or not sds:
            return [PARSE_ERROR]
        # sl_Select's nfds is the highest sd plus one, as POSIX's (SPEC, simulator's note): a set
        # naming an sd that nfds leaves out would never be watched; say so at once.
        if any(sd is None or sd >= nfds for sd in sds):
            return [PARSE_ERROR]
        watched = sorted({sd for sd in sds if sd is not None})

        def attempt(_at: float) -> list[str] | None:
            socks = [self._host_socket(sd) for sd in watched]
            if any(sock is None for sock in socks):
                return [process_error(EBADF)]
            ready = [str(s.sd) for s in socks if s is not None and self._readable(s)]
            return [f"+select:{'|'.join(ready)}", "OK"] if ready else None

        return Blocked(
            attempt,
            early_ok=True,
            deadline=now + seconds + micros / 1e6,
            expire=lambda _at: ["+select:", "OK"],
        )

    # -- AT+NetAPPGetHostByName ([guide] Table 48): blocked --

    def _cmd_netappgethostbyname(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 2 or not found[0]:
            return [PARSE_ERROR]
        name, family = found[0], found[1].upper()
        if family == "INET6":
            return [NOT_MODELLED]
        if family != "INET":
            return [PARSE_ERROR]
        if not self.has_ip:
            return self._blocked_result(process_error(ENETUNREACH))
        self._dns_seq += 1
        request = self._dns_seq
        self._actions.append(Resolve(request, name))

        def attempt(_at: float) -> list[str] | None:
            if request not in self._dns_answers:
                return None
            address = self._dns_answers.pop(request)
            if address is None:
                return [process_error(DNS_FAILED)]
            return [f"+netappgethostbyname:{name},{address}", "OK"]

        return Blocked(attempt, early_ok=True)

    def name_resolved(self, request_id: int, address: str | None) -> None:
        """The shell's DNS answered request ``request_id`` (None: no such name)."""
        if request_id == self._dns_seq:
            self._dns_answers[request_id] = address
            self._network_event()

    # -- the rest of [guide] §6.2, not modelled: servers, UDP, ping --

    def _cmd_accept(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_bind(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_listen(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_recvfrom(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_sendto(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_netappping(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]
