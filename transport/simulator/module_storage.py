"""The simulated module's file systems: UFS (flash) and RAM, each with a size limit.

Names follow the Quectel FILE manual (at-protocol.md §4): a bare name or ``UFS:<name>`` is on
UFS, ``RAM:<name>`` on the RAM disk. Errors are the manual's ``+CME ERROR`` codes (§4.8), raised
as :class:`FileError` for the command handlers to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_NAME = 80  # bytes (§4)
MAX_OPEN = 4  # open handles at a time before 413

FILE_ERROR_TEXT = {
    400: "Invalid input value",
    401: "Larger than the size of the file",
    402: "Read zero byte",
    403: "Drive full",
    405: "File not found",
    406: "Invalid file name",
    407: "File already existed",
    409: "Fail to write the file",
    410: "Fail to open the file",
    411: "Fail to read the file",
    413: "Reach the max number of file allowed to be opened",
    414: "The file read-only",
    416: "Invalid file descriptor",
    417: "Fail to list the file",
    418: "Fail to delete the file",
    419: "Fail to get disk info",
    420: "No space",
    421: "Time out",
    423: "File too large",
    425: "Invalid parameter",
    426: "File already opened",
}


class FileError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(FILE_ERROR_TEXT.get(code, "file error"))
        self.code = code


def checksum(data: bytes) -> int:
    """The 16-bit XOR checksum of AT+QFUPL/AT+QFDWL (§4.6): big-endian byte pairs XORed, an odd
    last byte taken as the high half."""
    value = 0
    pairs = len(data) - len(data) % 2
    for i in range(0, pairs, 2):
        value ^= (data[i] << 8) | data[i + 1]
    if len(data) % 2:
        value ^= data[-1] << 8
    return value


@dataclass
class _Handle:
    key: str
    mode: int  # 0 read/write (create), 1 truncate, 2 read-only
    position: int = 0


@dataclass
class ModuleStorage:
    ufs_size: int = 14 * 1024 * 1024
    ram_size: int = 512 * 1024
    files: dict[str, bytearray] = field(default_factory=dict)
    handles: dict[int, _Handle] = field(default_factory=dict)
    _next_handle: int = 0

    @staticmethod
    def key(name: str) -> str:
        drive, sep, rest = name.partition(":")
        if not sep:
            drive, rest = "UFS", name
        drive = drive.upper()
        if drive not in ("UFS", "RAM") or not rest or len(rest) > MAX_NAME:
            raise FileError(406)
        if any(c in rest for c in '/\\*?"<>|'):
            raise FileError(406)
        return f"{drive}:{rest}"

    def size(self, drive: str) -> int:
        return self.ufs_size if drive == "UFS" else self.ram_size

    def used(self, drive: str) -> int:
        return sum(len(v) for k, v in self.files.items() if k.startswith(drive + ":"))

    def free(self, drive: str) -> int:
        return self.size(drive) - self.used(drive)

    def listing(self, pattern: str) -> list[tuple[str, int]]:
        """(name as listed, size) of the files matching ``*``, ``RAM:*`` or one name."""
        drive, sep, rest = pattern.partition(":")
        if not sep:
            drive, rest = "UFS", pattern
        drive = drive.upper()
        found = []
        for key, data in sorted(self.files.items()):
            key_drive, _, name = key.partition(":")
            if key_drive != drive:
                continue
            if rest in ("*", "") or rest == name:
                found.append((name if drive == "UFS" else key, len(data)))
        return found

    def write_file(self, name: str, data: bytes, *, overwrite: bool) -> None:
        key = self.key(name)
        if key in self.files and not overwrite:
            raise FileError(407)
        old = len(self.files.get(key, b""))
        if len(data) - old > self.free(key[:3]):
            raise FileError(403)
        self.files[key] = bytearray(data)

    def append(self, name: str, data: bytes) -> None:
        """Add ``data`` at the end of an existing file (a download arriving, AT+QFTPGET)."""
        key = self.key(name)
        if key not in self.files:
            raise FileError(405)
        if len(data) > self.free(key[:3]):
            raise FileError(403)
        self.files[key] += data

    def read_file(self, name: str) -> bytes:
        key = self.key(name)
        if key not in self.files:
            raise FileError(405)
        return bytes(self.files[key])

    def delete(self, name: str) -> None:
        if name in ("*", "UFS:*", "RAM:*"):
            drive = "RAM" if name.startswith("RAM") else "UFS"
            for key in [k for k in self.files if k.startswith(drive + ":")]:
                del self.files[key]
            return
        key = self.key(name)
        if key not in self.files:
            raise FileError(405)
        if any(h.key == key for h in self.handles.values()):
            raise FileError(426)
        del self.files[key]

    # -- handles (AT+QFOPEN and friends, §4.7) --

    def open(self, name: str, mode: int) -> int:
        key = self.key(name)
        if len(self.handles) >= MAX_OPEN:
            raise FileError(413)
        if any(h.key == key for h in self.handles.values()):
            raise FileError(426)
        if mode == 2 and key not in self.files:
            raise FileError(405)
        if mode == 1 or key not in self.files:
            self.files[key] = bytearray()
        handle = self._next_handle
        self._next_handle += 1
        self.handles[handle] = _Handle(key, mode)
        return handle

    def _handle(self, handle: int) -> _Handle:
        found = self.handles.get(handle)
        if found is None:
            raise FileError(416)
        return found

    def read(self, handle: int, length: int | None) -> bytes:
        h = self._handle(handle)
        data = self.files[h.key]
        end = len(data) if length is None else min(len(data), h.position + length)
        chunk = bytes(data[h.position : end])
        h.position = end
        return chunk

    def write(self, handle: int, chunk: bytes) -> int:
        h = self._handle(handle)
        if h.mode == 2:
            raise FileError(414)
        data = self.files[h.key]
        grow = max(0, h.position + len(chunk) - len(data))
        if grow > self.free(h.key[:3]):
            raise FileError(403)
        data[h.position : h.position + len(chunk)] = chunk
        h.position += len(chunk)
        return len(data)

    def seek(self, handle: int, offset: int, whence: int) -> None:
        h = self._handle(handle)
        size = len(self.files[h.key])
        base = {0: 0, 1: h.position, 2: size}.get(whence)
        if base is None or base + offset > size or base + offset < 0:
            raise FileError(400)
        h.position = base + offset

    def position(self, handle: int) -> int:
        return self._handle(handle).position

    def close(self, handle: int) -> None:
        self._handle(handle)
        del self.handles[handle]

    def lose_ram(self) -> None:
        """A reboot: the RAM disk is empty and no file is open."""
        for key in [k for k in self.files if k.startswith("RAM:")]:
            del self.files[key]
        self.handles.clear()
