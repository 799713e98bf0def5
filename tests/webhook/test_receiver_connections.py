"""Idle connections never keep a delivery out of the standalone receiver, and one address cannot take every place.

At ``max_connections`` the connection idle longest (no request in progress) is closed to make room
for the newcomer; past ``max_connections_per_address`` a newcomer from that address gets 503 and is
closed. The caps are small here so that filling them is quick; other client addresses are other
loopback addresses (127.0.0.2, ...), which Linux lets a client bind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
import raw_http
from prometheus_client import REGISTRY
from receiver_helpers import InProcess, event, landed_ids, settings_for, signed

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
CAP = 20


@pytest.fixture
def raw(landing_url: str) -> Iterator[InProcess]:
    # One address may fill the process's cap here: what is tested is the cap itself.
    harness = InProcess(settings_for(landing_url, max_connections=CAP, max_connections_per_address=2 * CAP), "raw")
    yield harness
    harness.close()


async def _idle(port: int, source: str = "127.0.0.1", asked: bool = False) -> tuple[Reader, Writer]:
    """A connection holding its place with nothing in progress: never asked anything, or after one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if asked:
        writer.write(raw_http.get("/health/live"))
        assert (await raw_http.read_response(reader))[0] == 200
    return reader, writer


def _delivery(document: dict[str, object]) -> bytes:
    body = orjson.dumps(document)
    head = "".join(f"{name}: {value}\r\n" for name, value in signed(body).items())
    return f"POST /webhook HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def _deliver(port: int, document: dict[str, object], source: str = "127.0.0.1") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(_delivery(document))
        status, _, body = await raw_http.read_response(reader)
        return status, body
    except (ConnectionResetError, asyncio.IncompleteReadError):
        return 0, b""
    finally:
        writer.close()


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_idle_connections_make_room_for_a_delivery(raw: InProcess, landing_url: str) -> None:
    """The cap full of idle connections: each delivery gets 200, and the connections idle longest are closed."""
    server = raw.server
    documents = [event() for _ in range(5)]

    async def scenario() -> tuple[list[int], list[bool], list[bool]]:
        # Oldest first: half never asked anything, half kept alive after an answer.
        idle = [await _idle(server.port, asked=i % 2 == 1) for i in range(CAP)]
        await raw_http.until(lambda: len(server.idle) == CAP, 10, "the cap to be full of idle connections")
        statuses = []
        for document in documents:  # each kept open after its answer: the cap stays full
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_delivery(document))
            statuses.append((await raw_http.read_response(reader))[0])
            idle.append((reader, writer))
        oldest = [await raw_http.closed(reader, 5) for reader, _ in idle[:5]]
        newer = [not ended for ended in await asyncio.gather(*(_ended_within(reader, 0.2) for reader, _ in idle[5:]))]
        for _, writer in idle:
            writer.close()
        return statuses, oldest, newer

    closed_before = _counted("knit_webhook_idle_connections_closed_total")
    statuses, oldest, newer = raw.run(scenario())
    assert statuses == [200] * 5
    assert oldest == [True] * 5  # one per delivery, the longest idle first
    assert newer == [True] * CAP  # the rest, and the deliveries' own connections, stay open
    assert _counted("knit_webhook_idle_connections_closed_total") == closed_before + 5
    ids = [str(document["eventId"]) for document in documents]
    assert landed_ids(landing_url, ids) == set(ids)


async def _ended_within(reader: Reader, seconds: float) -> bool:
    """Whether the server ends the connection within ``seconds`` (``False``: still open, nothing sent)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


def test_connections_per_address_are_capped(landing_url: str) -> None:
    """Five per address, ten in all: an address at its cap gets 503 and closes nobody else's connection."""
    harness = InProcess(settings_for(landing_url, max_connections=10, max_connections_per_address=5), "raw")
    server = harness.server

    async def scenario() -> tuple[tuple[int, bytes], int, int, int, bool]:
        first = [await _idle(server.port, "127.0.0.2") for _ in range(5)]
        mine = [await _idle(server.port, "127.0.0.1") for _ in range(5)]
        await raw_http.until(lambda: len(server.connections) == 10, 10, "both addresses at their cap")
        over = await _deliver(server.port, event(), "127.0.0.1")  # its address is at its cap: refused
        still = len(server.connections)
        other = (await _deliver(server.port, event(), "127.0.0.3"))[0]  # closes 127.0.0.2's idlest
        first_closed = await raw_http.closed(first[0][0], 5)
        mine[0][1].close()
        await raw_http.until(lambda: server.per_address.get("127.0.0.1") == 4, 10, "a place of its own")
        again = (await _deliver(server.port, event(), "127.0.0.1"))[0]
        for _, writer in first + mine:
            writer.close()
        return over, still, other, again, first_closed

    refused_before = _counted("knit_webhook_rejections_total", reason="address_connections")
    try:
        (status, body), still, other, again, first_closed = harness.run(scenario())
    finally:
        harness.close()
    assert (status, orjson.loads(body)) == (503, {"error": "too many open connections from this address; retry later"})
    assert still == 10  # refused without closing anyone's idle connection
    assert (other, again, first_closed) == (200, 200, True)
    assert _counted("knit_webhook_rejections_total", reason="address_connections") == refused_before + 1
