"""The simulated CC3220's file system: AT+FileOpen/Write/Read/Close/Del/GetInfo (SPEC §6;
[guide] Tables 38-45).

Files live in the NWP's serial flash: they survive AT+Stop/AT+Start and resets, open handles do
not. A file opened for writing is written aside and becomes the file only at AT+FileClose, so a
SEC socket never sees half a certificate (SPEC §6: "visible to sockets only when closed").
Secure files (tokens, signatures) are not modelled. The Quectel module's storage
(:mod:`.module_storage`) does not fit: its names are ``UFS:``/``RAM:`` without ``/``, its errors
Quectel's, so the CC3220's is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transport.simulator.simplelink_core import (
    NOT_MODELLED,
    PARSE_ERROR,
    ModuleCore,
    Reply,
    bitmask,
    decode_data,
    encode_data,
    number,
    process_error,
    split_parameters,
    split_with_data,
)

# TI's errors.h file system errors (SPEC §6 chose -10341 for "not found").
FILE_NAME_EXISTS = -10293  # CREATE without OVERWRITE of an existing file
INVALID_HANDLE = -10335
OFFSET_OUT_OF_RANGE = -10337  # a write past the size given at creation
WRONG_FILE_OPEN_FLAGS = -10340  # reading a file opened to write, and the reverse
FILE_NOT_EXISTS = -10341
MAX_WRITE = 1024  # decoded bytes per AT+FileWrite (SPEC §6)
MAX_NAME = 180  # characters of a full path name
BLOCK = 4096  # the serial flash's block: what a file's allocation is counted in
OPEN_OPTIONS = ("read", "write", "create", "overwrite", "create_failsafe")
SECURE_OPTIONS = (
    "create_secure",
    "create_nosignature",
    "create_static_token",
    "create_vendor_token",
    "create_public_write",
    "create_public_read",
)


@dataclass
class StoredFile:
    data: bytes
    max_size: int
    write_counter: int = 1


@dataclass
class _OpenFile:
    name: str
    writing: bool
    max_size: int
    data: bytearray = field(default_factory=bytearray)  # what a write handle will leave


class FileCommands(ModuleCore):
    """The file system commands; see the module docstring."""

    def _init_files(self) -> None:
        self.files: dict[str, StoredFile] = {}  # in flash: kept across resets
        self._open_files: dict[int, _OpenFile] = {}
        self._next_file_id = 1

    def _reset_files(self) -> None:
        """A reset or AT+Stop: open handles are lost, and with them unfinished writes."""
        self._open_files.clear()

    def _read_file(self, name: str) -> bytes | None:
        stored = self.files.get(name)
        return stored.data if stored is not None else None

    def _cmd_fileopen(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 2 <= len(found) <= 3 or not 0 < len(found[0]) <= MAX_NAME:
            return [PARSE_ERROR]
        name, options = found[0], bitmask(found[1])
        max_size = number(found[2]) if len(found) == 3 and found[2] else 0
        if max_size is None or not options:
            return [PARSE_ERROR]
        if any(option in SECURE_OPTIONS for option in options):
            return [NOT_MODELLED]  # secure files and their tokens
        if any(option not in OPEN_OPTIONS for option in options):
            return [PARSE_ERROR]
        stored = self.files.get(name)
        if options == ["read"]:
            if stored is None:
                return [process_error(FILE_NOT_EXISTS)]
            handle = _OpenFile(name, False, stored.max_size, bytearray(stored.data))
        elif "read" in options:
            return [process_error(WRONG_FILE_OPEN_FLAGS)]
        elif stored is None:
            if "create" not in options:
                return [process_error(FILE_NOT_EXISTS)]
            if max_size <= 0:
                return [PARSE_ERROR]  # the size is mandatory to create ([guide] Table 38)
            handle = _OpenFile(name, True, max_size)
        elif "create" in options and "overwrite" not in options and "write" not in options:
            return [process_error(FILE_NAME_EXISTS)]
        else:
            keep = "overwrite" not in options  # WRITE changes the file in place
            size = max(max_size, stored.max_size)
            handle = _OpenFile(name, True, size, bytearray(stored.data if keep else b""))
        file_id = self._next_file_id
        self._next_file_id += 1
        self._open_files[file_id] = handle
        return [f"+fileopen:{file_id},0", "OK"]  # secure token 0 (SPEC §6)

    def _open_file(self, text: str) -> _OpenFile | None:
        file_id = number(text)
        return self._open_files.get(file_id) if file_id is not None else None

    def _cmd_filewrite(self, params: str | None, now: float) -> Reply:
        found = split_with_data(params or "", 4)
        if found is None:
            return [PARSE_ERROR]
        (file_id, offset_text, data_format, length), rest = found
        data = decode_data(data_format, length, rest)
        offset = number(offset_text)
        if number(file_id) is None or offset is None or data is None or len(data) > MAX_WRITE:
            return [PARSE_ERROR]
        handle = self._open_file(file_id)
        if handle is None:
            return [process_error(INVALID_HANDLE)]
        if not handle.writing:
            return [process_error(WRONG_FILE_OPEN_FLAGS)]
        if offset + len(data) > handle.max_size:
            return [process_error(OFFSET_OUT_OF_RANGE)]
        if offset > len(handle.data):
            handle.data += bytes(offset - len(handle.data))
        handle.data[offset : offset + len(data)] = data
        return [f"+filewrite:{len(data)}", "OK"]

    def _cmd_fileread(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or len(found) != 4 or found[2] not in ("0", "1"):
            return [PARSE_ERROR]
        offset, length = number(found[1]), number(found[3], 1, 2**16)
        if number(found[0]) is None or offset is None or length is None:
            return [PARSE_ERROR]
        handle = self._open_file(found[0])
        if handle is None:
            return [process_error(INVALID_HANDLE)]
        if handle.writing:
            return [process_error(WRONG_FILE_OPEN_FLAGS)]
        data = bytes(handle.data[offset : offset + length])
        return [f"+fileread:{found[2]},{encode_data(found[2], data)}", "OK"]

    def _cmd_fileclose(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 1 <= len(found) <= 3 or number(found[0]) is None:
            return [PARSE_ERROR]
        if any(found[1:]):
            return [NOT_MODELLED]  # signed files: a certificate and a signature
        file_id = number(found[0])
        handle = self._open_files.pop(file_id) if file_id in self._open_files else None
        if handle is None:
            return [process_error(INVALID_HANDLE)]
        if handle.writing:
            old = self.files.get(handle.name)
            counter = old.write_counter + 1 if old is not None else 1
            self.files[handle.name] = StoredFile(bytes(handle.data), handle.max_size, counter)
        return ["OK"]

    def _cmd_filedel(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 1 <= len(found) <= 2 or not found[0]:
            return [PARSE_ERROR]
        if found[0] not in self.files:
            return [process_error(FILE_NOT_EXISTS)]
        del self.files[found[0]]
        return ["OK"]

    def _cmd_filegetinfo(self, params: str | None, now: float) -> Reply:
        found = split_parameters(params or "")
        if found is None or not 1 <= len(found) <= 2 or not found[0]:
            return [PARSE_ERROR]
        stored = self.files.get(found[0])
        if stored is None:
            return [process_error(FILE_NOT_EXISTS)]
        # Flags: none (no secure, failsafe or bundle files here); one token, 0; the storage
        # size is the allocation rounded up to whole flash blocks.
        storage = -(-stored.max_size // BLOCK) * BLOCK
        return [
            f"+filegetinfo:,{len(stored.data)},{stored.max_size},0,{storage},"
            f"{stored.write_counter}",
            "OK",
        ]

    def _cmd_filegetfilelist(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]

    def _cmd_filectl(self, params: str | None, now: float) -> Reply:
        return [NOT_MODELLED]  # factory restore, bundles, commit and rollback
