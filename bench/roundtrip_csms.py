"""The CSMS side of ``bench.roundtrip``, in a process of its own so that the charge point's CPU
is measured alone.

It accepts one charge point, answers its BootNotification (Accepted, no heartbeats to speak
of) and StatusNotifications, then sends ``--count`` DataTransfer CALLs one after the other and
times each until its CALLRESULT arrives. It prints JSON lines: ``{"listening": port}``, then
``{"round_trips_s": [...], "call_bytes": n, "result_bytes": m, "tls": ...}`` (``tls``: None, or
``tls_version`` and ``cipher`` as negotiated). With ``--certfile`` and
``--keyfile`` it serves wss:// with that certificate (the charge point then connects over TLS).
With ``--pause-ms`` it waits that long after each answer before its next CALL: over host TCP on
loopback the charge point then sits idle between messages as it does behind a network's round
trip, instead of answering CALLs back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
import uuid
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from bench.tls import server_context


async def _session(
    connection: ServerConnection, count: int, done: asyncio.Event, pause: float
) -> None:
    booted = asyncio.Event()
    pending: dict[str, asyncio.Future[str]] = {}

    async def receive() -> None:
        async for message in connection:
            frame = json.loads(message)
            if frame[0] == 2:
                reply: object = {}
                if frame[2] == "BootNotification":
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    reply = {"status": "Accepted", "interval": 86400, "currentTime": now}
                    booted.set()
                await connection.send(json.dumps([3, frame[1], reply]))
            elif frame[1] in pending:
                pending.pop(frame[1]).set_result(str(message))

    receiving = asyncio.create_task(receive())
    await booted.wait()
    await asyncio.sleep(2.0)  # let the StatusNotifications after boot go by before measuring
    loop = asyncio.get_running_loop()
    times: list[float] = []
    call_bytes = result_bytes = 0
    for _ in range(count):
        if pause:
            await asyncio.sleep(pause)
        message_id = str(uuid.uuid4())
        text = json.dumps(
            [2, message_id, "DataTransfer", {"vendorId": "org.example.bench", "data": "ping"}]
        )
        answer: asyncio.Future[str] = loop.create_future()
        pending[message_id] = answer
        started = time.perf_counter()
        await connection.send(text)
        result = await answer
        times.append(time.perf_counter() - started)
        call_bytes, result_bytes = len(text.encode()), len(result.encode())
    # Over wss://: which TLS the charge point's side (the module) negotiated, as evidence.
    tls: ssl.SSLObject | None = connection.transport.get_extra_info("ssl_object")
    cipher = tls.cipher() if tls is not None else None
    record = {"round_trips_s": times, "call_bytes": call_bytes, "result_bytes": result_bytes}
    record["tls"] = {"tls_version": cipher[1], "cipher": cipher[0]} if cipher else None
    print(json.dumps(record), flush=True)
    done.set()
    receiving.cancel()


async def _main(count: int, context: ssl.SSLContext | None = None, pause: float = 0.0) -> None:
    done = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        await _session(connection, count, done, pause)
        await done.wait()

    ocpp16 = Subprotocol("ocpp1.6")
    async with serve(
        handler, "127.0.0.1", 0, subprotocols=[ocpp16], ping_interval=None, ssl=context
    ) as server:
        print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
        await done.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--certfile", type=Path, help="serve wss:// with this certificate chain")
    parser.add_argument("--keyfile", type=Path, help="and this key")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="idle time before each CALL")
    args = parser.parse_args()
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    context = server_context(args.certfile, args.keyfile) if args.certfile else None
    asyncio.run(_main(args.count, context, args.pause_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
