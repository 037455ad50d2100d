"""A TCP proxy that holds back each response by a fixed delay: a remote endpoint on the sandbox.

Cross-region replication talks to endpoints tens of milliseconds away, where a copy waits on the network rather
than on CPU; the sandbox's endpoints answer in microseconds. Put in front of a moto server, this proxy makes
every request wait `delay` before its response starts (moto closes each connection after one response, so one
connection is one request). Bytes are passed through unchanged.

Usage: python tests/bench/latency_proxy.py UPSTREAM_PORT DELAY_MS   (prints the port it listens on, then serves)
"""

from __future__ import annotations

import asyncio
import sys

CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float = 0.0) -> None:
    """Copy until EOF; the first chunk waits `delay_s` (measured from when the pipe started)."""
    started = asyncio.get_running_loop().time()
    try:
        first = True
        while chunk := await reader.read(CHUNK):
            if first and delay_s:
                await asyncio.sleep(max(0.0, started + delay_s - asyncio.get_running_loop().time()))
            first = False
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _serve(upstream_port: int, delay_s: float) -> None:
    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    upstream_port, delay_ms = int(argv[0]), float(argv[1])
    asyncio.run(_serve(upstream_port, delay_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
