"""A webhook receiver that answers 200 to every POST and counts them: the simulator's speed target.

``python -m knit_simulator.sink --port P`` prints "sink listening on http://127.0.0.1:P";
``GET /count`` answers ``{"requests": n, "bytes": b}``. Raw asyncio streams, so the receiver
costs as little as possible and what a benchmark measures is the sender.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import orjson

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Counts:
    requests = 0
    bytes = 0


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /count"):
                payload = orjson.dumps({"requests": Counts.requests, "bytes": Counts.bytes})
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
            else:
                Counts.requests += 1
                Counts.bytes += len(body)
                writer.write(_OK)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"sink listening on http://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m knit_simulator.sink")
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args(argv).port
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
