"""File transfers over HTTP(S), whatever carries them: the seam and the shared algorithm.

A :class:`HttpClient` fetches a file to a host path and uploads one as multipart/form-data.
The Quectel driver implements it on the module's AT+QHTTP* commands
(:mod:`transport.modems.quectel_http`), the host link on the OS's own TCP/IP stack
(:mod:`transport.modems.host_http`). Both fetch through :func:`fetch_in_pieces`: the image
comes in bounded HTTP ``Range`` pieces (RFC 9110 §14), each appended to ``<dest>.part`` and
synced, so that

* the carrier (a serial line shared with OCPP) is never held for more than one piece;
* a carrier that can (:class:`PipelinedSource`) is told the next piece's request while this
  one's body is still being taken, so that the network fetches it meanwhile;
* a broken transfer resumes from the last good byte, also after a restart: ``<dest>.part.json``
  remembers the URL (its password hidden, :func:`redact_url`), the total size and the server's
  validator (``ETag`` or ``Last-Modified``), sent back in ``If-Range`` so a file changed on the
  server is fetched anew instead of being spliced (:class:`PartialFile`, which the FTP
  transfers of :mod:`transport.ftp` share);
* the result is checked: the total of ``Content-Range`` (or ``Content-Length``), and a SHA-256
  when one is given.

A server that ignores ``Range`` answers 200 with the whole file: the carrier then decides how
to take the body (see the Quectel driver); the algorithm starts the file over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import SplitResult, urlsplit

from transport.errors import (
    HttpStatusError,
    TransferCorrupt,
    TransferError,
    TransferInterrupted,
    UnsupportedLocation,
)

log = logging.getLogger(__name__)

USER_AGENT = "chargepoint"
MAX_HEAD = 16 * 1024
RETRIES_NOW = 3  # a piece that fails with an error the manual answers with "resend"
_CONTENT_RANGE = re.compile(r"bytes (?P<first>\d+)-(?P<last>\d+)/(?P<total>\d+|\*)")
# The user information of a URL (RFC 3986 §3.2.1): "user:password@" or a lone token "user@".
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)([^/@\s\"':]*)(:[^/@\s\"']*)?@", re.IGNORECASE)

Progress = Callable[[int, int | None], None]  # (bytes so far, total if known)


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``ftp://cp:***@host``);
    a lone user token (``https://<token>@host``) is hidden whole. For logs, error messages and
    files a technician may pass on: credentials in a location are used, never shown."""

    def hide(match: re.Match[str]) -> str:
        scheme, user, password = match.group(1), match.group(2), match.group(3)
        return f"{scheme}{user}:***@" if password is not None else f"{scheme}***@"

    return _USERINFO.sub(hide, text)


@dataclass(frozen=True, slots=True)
class Location:
    """An http(s) URL taken apart the way a request needs it."""

    url: str
    secure: bool
    host: str
    port: int
    target: str  # path and query
    authority: str  # the Host header: host[:port] as written, without credentials

    @property
    def shown(self) -> str:
        """The URL as logs and messages may show it (:func:`redact_url`)."""
        return redact_url(self.url)

    @classmethod
    def parse(cls, url: str) -> Location:
        parts: SplitResult = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UnsupportedLocation(
                f"{redact_url(url)}: the HTTP client takes http:// and https:// locations, "
                f"not {scheme or 'a bare path'}"
            )
        if not parts.hostname:
            raise UnsupportedLocation(f"{redact_url(url)}: no host in the URL")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return cls(
            url=url,
            secure=scheme == "https",
            host=parts.hostname,
            port=parts.port or (443 if scheme == "https" else 80),
            target=target,
            authority=parts.netloc.rpartition("@")[2],
        )

    @property
    def file_name(self) -> str:
        return self.target.split("?")[0].rstrip("/").rpartition("/")[2] or "download"


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]  # names lower-cased

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    @classmethod
    def parse(cls, head: bytes) -> ResponseHead:
        lines = head.decode("latin-1").split("\r\n")
        fields = lines[0].split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise TransferCorrupt(f"not an HTTP status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return cls(int(fields[1]), headers)


def request_head(
    method: str, where: Location, headers: dict[str, str] | None = None, *, body_length: int = 0
) -> bytes:
    """A complete HTTP/1.1 request head (what AT+QHTTPCFG="requestheader",1 lets the host write,
    seed 000 §1.2.1: the target and Host in line with the URL, ending with an empty line)."""
    lines = [
        f"{method} {where.target} HTTP/1.1",
        f"Host: {where.authority}",
        f"User-Agent: {USER_AGENT}",
        "Accept: */*",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method in ("POST", "PUT"):
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def multipart_request(where: Location, field: str, file_name: str, data: bytes) -> bytes:
    """A POST of ``data`` as the one file of a multipart/form-data body (RFC 7578)."""
    boundary = "chargepoint-" + secrets.token_hex(12)
    safe_name = file_name.replace('"', "").replace("\r", "").replace("\n", "")
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode("latin-1")
        + data
        + f"\r\n--{boundary}--\r\n".encode("latin-1")
    )
    head = request_head(
        "POST",
        where,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        body_length=len(body),
    )
    return head + body


# --- fetching in pieces ----------------------------------------------------------------------


T = TypeVar("T")
Consume = Callable[[ResponseHead, AsyncIterator[bytes]], Awaitable[T]]


class PieceSource(Protocol):
    """One HTTP exchange on some carrier: send ``head`` to ``where`` and hand the response head
    and its body (in chunks, the whole body however long) to ``consume``, returning what it
    returns. The carrier releases what it holds when ``consume`` ends, however it ends."""

    async def exchange(self, where: Location, head: bytes, consume: Consume[T]) -> T: ...


# The request of the piece after the one whose response head this is, or None when that
# response is not a piece of a file that goes on.
NextPiece = Callable[[ResponseHead], bytes | None]


@runtime_checkable
class PipelinedSource(PieceSource, Protocol):
    """A carrier that can ask for the next piece while the body of this one is still being
    consumed, so that the network fetches it while the carrier's own link is busy (a Quectel
    module fills a file on its RAM disk while the host reads the previous one over the serial
    line). ``following(response)`` is that next request. The carrier keeps what it fetched
    ahead for an exchange whose ``head`` is exactly that request, and gives it up otherwise
    (a piece asked for again after a failure, the end of the fetch)."""

    async def exchange_ahead(
        self, where: Location, head: bytes, consume: Consume[T], following: NextPiece
    ) -> T: ...


@dataclass(frozen=True, slots=True)
class FetchResult:
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes already there when this fetch began
    pieces: int  # HTTP requests made
    ranged: bool  # the server honoured Range


class HttpClient(Protocol):
    async def fetch(
        self, url: str, dest: Path, *, sha256: str | None = None, progress: Progress | None = None
    ) -> FetchResult: ...

    async def upload(self, url: str, file_name: str, data: bytes, *, field: str = "file") -> int:
        """POST ``data`` as the file ``file_name`` of a multipart/form-data body; the status."""
        ...


@dataclass
class PartialFile:
    """``<dest>.part`` and what is known about it (``<dest>.part.json``): the URL it comes from
    (password hidden), the total size and the server's validator, so that a later fetch, also
    after a restart, goes on from the last good byte only if it is the same file."""

    dest: Path
    url: str
    total: int | None = None
    validator: str | None = None

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")

    @property
    def meta(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part.json")

    @property
    def size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    @classmethod
    def resume(cls, dest: Path, url: str) -> PartialFile:
        partial = cls(dest, redact_url(url))
        try:
            saved = json.loads(partial.meta.read_text())
        except (FileNotFoundError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("url") == partial.url:
            total = saved.get("total")
            validator = saved.get("validator")
            partial.total = total if isinstance(total, int) else None
            partial.validator = validator if isinstance(validator, str) else None
            if partial.total is not None and partial.size > partial.total:
                partial.restart()
        else:
            partial.restart()  # another file's leftovers, or none
        return partial

    def restart(self) -> None:
        self.part.unlink(missing_ok=True)
        self.total = None
        self.validator = None
        self.save()

    def save(self) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.meta.with_name(self.meta.name + ".tmp")
        tmp.write_text(
            json.dumps({"url": self.url, "total": self.total, "validator": self.validator})
        )
        os.replace(tmp, self.meta)

    def finish(self) -> None:
        os.replace(self.part, self.dest)
        self.meta.unlink(missing_ok=True)


async def fetch_in_pieces(
    source: PieceSource,
    url: str,
    dest: Path,
    *,
    piece_size: int,
    sha256: str | None = None,
    progress: Progress | None = None,
) -> FetchResult:
    """Fetch ``url`` to ``dest`` in ``Range`` pieces of ``piece_size`` bytes (see the module
    docstring). Raises :class:`~transport.errors.TransferError` subclasses; what was fetched
    stays in ``<dest>.part`` for the next call to resume."""
    where = Location.parse(url)
    shown = where.shown
    partial = PartialFile.resume(dest, url)
    resumed_from = partial.size
    if resumed_from:
        log.info("resuming %s at byte %d of %s", shown, resumed_from, partial.total or "?")
    pieces = 0
    ranged = True
    failures = 0

    async def take(response: ResponseHead, body: AsyncIterator[bytes]) -> bool:
        """Store one response; True when the file is complete."""
        nonlocal ranged
        start = partial.size
        if response.status == 206:
            first, last, total = _content_range(shown, response, start)
            if partial.total is None or partial.validator is None:
                partial.total = total
                partial.validator = _validator(response)
                partial.save()
            elif total != partial.total:
                raise TransferCorrupt(f"{shown}: the size changed from {partial.total} to {total}")
            await _append(partial, body, progress, limit=last - first + 1)
            return partial.size >= total
        if response.status == 200:
            # The whole file: Range ignored, or If-Range found the file changed.
            ranged = False
            if start:
                log.warning("%s: the server sent the whole file again; starting over", shown)
            partial.restart()
            partial.total = response.content_length
            partial.save()
            await _append(partial, body, progress, limit=partial.total)
            return True
        await _drain(body)
        if response.status == 416 and partial.total is not None and start >= partial.total:
            return True
        if response.status == 416:
            log.warning("%s: range from %d not satisfiable; starting over", shown, start)
            partial.restart()
            return False
        raise HttpStatusError(shown, response.status)

    def following(response: ResponseHead) -> bytes | None:
        """The request the loop below makes next if ``response`` is stored whole."""
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
        if response.status != 206 or match is None or match.group("total") == "*":
            return None
        start, total = int(match.group("last")) + 1, int(match.group("total"))
        if start >= total:
            return None
        validator = partial.validator or _validator(response)
        return piece_request(where, start, min(start + piece_size, total) - 1, validator)

    done = partial.total is not None and partial.size >= partial.total
    while not done:
        start = partial.size
        last = start + piece_size - 1
        if partial.total is not None:
            last = min(last, partial.total - 1)
        head = piece_request(where, start, last, partial.validator)
        pieces += 1
        try:
            if isinstance(source, PipelinedSource):
                done = await source.exchange_ahead(where, head, take, following)
            else:
                done = await source.exchange(where, head, take)
        except TransferError as error:
            failures += 1
            if not error.retry_now or failures > RETRIES_NOW:
                raise
            log.warning("piece from byte %d failed (%s); asking again", start, error)
            continue
        failures = 0
    size = partial.size
    digest = file_sha256(partial.part)
    if partial.total is not None and size != partial.total:
        raise TransferCorrupt(f"{shown}: got {size} bytes, expected {partial.total}")
    if sha256 is not None and digest != sha256.lower():
        partial.restart()
        raise TransferCorrupt(f"{shown}: SHA-256 {digest} does not match the expected {sha256}")
    partial.finish()
    return FetchResult(dest, size, digest, resumed_from, pieces, ranged)


def piece_request(where: Location, start: int, last: int, validator: str | None) -> bytes:
    """The GET of bytes ``start``..``last``; with the validator of the bytes already kept (RFC
    9110 §13.1.5) a file changed on the server comes whole (200) instead of spliced."""
    headers = {"Range": f"bytes={start}-{last}"}
    if validator and start:
        headers["If-Range"] = validator
    return request_head("GET", where, headers)


def _validator(response: ResponseHead) -> str | None:
    return response.headers.get("etag") or response.headers.get("last-modified")


def _content_range(url: str, response: ResponseHead, start: int) -> tuple[int, int, int]:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
    if match is None or match.group("total") == "*":
        raise TransferCorrupt(f"{url}: 206 without a usable Content-Range")
    first = int(match.group("first"))
    if first != start:
        raise TransferCorrupt(f"{url}: asked for bytes from {start}, got them from {first}")
    return first, int(match.group("last")), int(match.group("total"))


async def _append(
    partial: PartialFile,
    body: AsyncIterator[bytes],
    progress: Progress | None,
    *,
    limit: int | None,
) -> None:
    taken = 0
    with partial.part.open("ab") as out:
        try:
            async for chunk in body:
                if limit is not None and taken + len(chunk) > limit:
                    raise TransferCorrupt(f"{partial.url}: more bytes than the range asked for")
                out.write(chunk)
                taken += len(chunk)
                if progress is not None:
                    progress(out.tell(), partial.total)
        finally:
            out.flush()
            os.fsync(out.fileno())
    if limit is not None and taken != limit:
        raise TransferInterrupted(f"{partial.url}: piece ended after {taken} of {limit} bytes")


async def _drain(body: AsyncIterator[bytes]) -> None:
    async for _ in body:
        pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
    except FileNotFoundError:
        pass
    return digest.hexdigest()
