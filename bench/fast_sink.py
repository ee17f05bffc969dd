"""A fast SMTP sink for benchmarks, meant to run in its own process: it answers 250 to everything, reads
each DATA to the lone dot and throws the message away. Minimal on purpose (asyncio streams, no parsing):
the sender, not the sink, must be what a benchmark measures.

    python bench/fast_sink.py [PORT]     # prints "port N" on stdout once listening; SIGTERM stops it and
                                         # prints "messages M connections C" on stdout

A benchmark asks for the counts so far with the verb XSTATS (``sink_stats``): a connection of its own,
counted too.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

EHLO = (b"250-fast-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
        b"250 ENHANCEDSTATUSCODES\r\n")


class Counts:
    messages = 0
    connections = 0


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    Counts.connections += 1
    writer.write(b"220 fast-sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                Counts.messages += 1
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb in (b"EHLO", b"HELO"):
                writer.write(EHLO if verb == b"EHLO" else b"250 fast-sink\r\n")
            elif line.upper().startswith(b"XSTATS"):
                writer.write(f"250 messages {Counts.messages} connections {Counts.connections}\r\n".encode())
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP, ...
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_client, "127.0.0.1", port)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    print(f"messages {Counts.messages} connections {Counts.connections}", flush=True)


def sink_stats(port: int) -> tuple[int, int]:
    """(messages, connections) the sink on ``port`` has seen so far; this call's connection is counted."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        f = conn.makefile("rwb")
        f.readline()  # greeting
        f.write(b"XSTATS\r\n")
        f.flush()
        words = f.readline().split()
        f.write(b"QUIT\r\n")
        f.flush()
    return int(words[2]), int(words[4])


@contextmanager
def running_sink() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start the sink in its own process; yields its port and the process (stopped on exit)."""
    proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    if len(first) != 2 or first[0] != "port":
        proc.kill()
        raise RuntimeError(f"the sink did not start: {first}")
    try:
        yield int(first[1]), proc
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
