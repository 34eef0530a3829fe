"""Answers 204 to every HTTP request on the given loopback ports.

LiveKit posts its webhooks to every URL in livekit.yaml (the dev service on
8080, the test suite's receiver on 8089). During `deploy/local.sh bench`
neither runs, and a URL nobody answers costs LiveKit a failed dial and its
retries for every event: about 8 ms of its CPU per room, more than the room
itself. A deployment's callgate answers them; this stands in for the
receivers that are absent, so that the bench measures LiveKit as deployed.

    python3 deploy/webhook_sink.py PORT [PORT...]
"""

import asyncio
import sys


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readline():
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(answer, "127.0.0.1", port) for port in ports]
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main([int(port) for port in sys.argv[1:]]))
