"""A counting HTTP reverse proxy on loopback, for the transfer benchmark: it stands in front of one
S3 endpoint (moto's server), forwards every byte verbatim and counts the requests by method.

    python benchmarks/counting_proxy.py --upstream http://127.0.0.1:5000 --port 5001

Every client connection gets one upstream connection of its own (opened at its first request)
and the two are joined: requests are read just far enough to find where each one ends (its
headers, then a Content-Length body or chunked body, chunks and trailers as sent), the response
side is a plain byte pipe. So keep-alive, chunked uploads and `Expect: 100-continue` (the
server's interim `100 Continue` passes back like any response byte) behave exactly as without the
proxy, and the Host header reaches the server unchanged: SigV4 signs it, so signatures stay
valid. asyncio streams with large buffers, in a process of its own: on the 2-core machine, under
load, it passed about 2,000 small requests/s (0.2-0.3 ms of its CPU each; the test client was the
limit) and 500-700 MB/s of large bodies, where moto serves about 150 requests/s.

Counted per request: its method; the first PUT and the first GET of an object (a path with a key
below a bucket, path-style as every tool here uses with a loopback IP endpoint; a multipart part
is a PUT of its object), each as a CLOCK_MONOTONIC timestamp (`time.monotonic()` in any process on
the machine reads the same clock) with its request line; bytes each way; requests that asked for
`100 Continue` and requests with a chunked body. With `--log FILE`, every request line forwarded
is written there too (to see what a tool sends).

A small control interface on the same port, never forwarded nor counted (no S3 bucket name starts
with `_`; its requests carry no body):

    GET  /__proxy__/stats   -> {"methods": {"PUT": N, ...}, "requests": N,
                                "first": {"PUT": t, "GET": t}, (absent: none yet)
                                "first_request": {"PUT": "PUT /b/k", ...},
                                "bytes_up": N, "bytes_down": N,
                                "expect_continue": N, "chunked": N}
    POST /__proxy__/reset   -> zeroes all of it; answers the stats as they were
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from urllib.parse import urlsplit

CONTROL = b"/__proxy__/"
CHUNK = 1 << 20  # bytes read at once from a body or a response
HEADER_LIMIT = 1 << 20


class Stats:
    def __init__(self) -> None:
        self.methods: dict[str, int] = {}
        self.first: dict[str, float] = {}  # method -> when its first object request came
        self.first_request: dict[str, str] = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.expect_continue = 0  # requests that asked for `100 Continue` before their body
        self.chunked = 0  # requests with a chunked body

    def reset(self) -> dict:
        before = self.snapshot()
        self.__init__()
        return before

    def snapshot(self) -> dict:
        return {
            "methods": dict(self.methods),
            "requests": sum(self.methods.values()),
            "first": dict(self.first),
            "first_request": dict(self.first_request),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "expect_continue": self.expect_continue,
            "chunked": self.chunked,
        }

    def count(self, method: str, target: str) -> None:
        self.methods[method] = self.methods.get(method, 0) + 1
        if method in ("PUT", "GET") and method not in self.first and is_object(target):
            self.first[method] = time.monotonic()
            self.first_request[method] = f"{method} {target[:200]}"


def is_object(target: str) -> bool:
    """A path-style request for an object: /bucket/key (a query string may follow)."""
    path = urlsplit(target).path if "://" in target else target.split("?", 1)[0]
    parts = path.lstrip("/").split("/", 1)
    return len(parts) == 2 and bool(parts[0]) and bool(parts[1])


class Proxy:
    def __init__(self, upstream: str, log: str | None = None) -> None:
        # open for the process's life, a line at a time
        self.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115
        split = urlsplit(upstream)
        if split.scheme != "http" or not split.hostname:
            raise SystemExit(f"--upstream must be http://host:port, not {upstream!r}")
        self.host = split.hostname
        self.port = split.port or 80
        self.stats = Stats()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        back: asyncio.Task | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break  # the client closed (between requests, or mid-way: nothing to forward)
                line_end = head.index(b"\r\n")
                method, target, _ = (head[:line_end].split(b" ", 2) + [b"", b""])[:3]
                if target.startswith(CONTROL):
                    await self.control(method, target, writer)
                    continue
                headers = parse_headers(head[line_end + 2 :])
                self.stats.count(method.decode("latin-1"), target.decode("latin-1"))
                if self.log is not None:
                    self.log.write(f"{time.monotonic():.6f} {head[:line_end].decode('latin-1')}\n")
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        self.host, self.port, limit=HEADER_LIMIT
                    )
                    back = asyncio.create_task(self.pipe_back(upstream[0], writer))
                up = upstream[1]
                up.write(head)
                self.stats.bytes_up += len(head)
                if "100-continue" in headers.get("expect", "").lower():
                    self.stats.expect_continue += 1
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.stats.chunked += 1
                    await self.chunked(reader, up)
                elif int(headers.get("content-length", "0") or 0) > 0:
                    await self.body(reader, up, int(headers["content-length"]))
                await up.drain()
                if back.done():
                    break  # the server closed its side: the client sees the close next
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if upstream is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):  # also at shutdown
                    if not back.done():
                        upstream[1].write_eof()  # the server answers what it has, then closes
                        await asyncio.wait_for(asyncio.shield(back), timeout=30)
                back.cancel()
                upstream[1].close()
            writer.close()

    async def body(self, reader, up, length: int) -> None:
        while length:
            data = await reader.read(min(length, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", length)
            up.write(data)
            self.stats.bytes_up += len(data)
            length -= len(data)
            await up.drain()

    async def chunked(self, reader, up) -> None:
        """Forward a chunked body as sent: size lines, chunks, the last chunk and any trailers."""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            up.write(size_line)
            self.stats.bytes_up += len(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line that ends the body
                    trailer = await reader.readuntil(b"\r\n")
                    up.write(trailer)
                    self.stats.bytes_up += len(trailer)
                    if trailer == b"\r\n":
                        return
            await self.body(reader, up, size + 2)  # the chunk and its CRLF

    async def pipe_back(self, upstream: asyncio.StreamReader, writer) -> None:
        try:
            while data := await upstream.read(CHUNK):
                writer.write(data)
                self.stats.bytes_down += len(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def control(self, method: bytes, target: bytes, writer) -> None:
        if target.startswith(CONTROL + b"reset") and method == b"POST":
            answer, status = self.stats.reset(), b"200 OK"
        elif target.startswith(CONTROL + b"stats"):
            answer, status = self.stats.snapshot(), b"200 OK"
        else:
            answer, status = {"error": "unknown control request"}, b"404 Not Found"
        body = json.dumps(answer).encode()
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()


def parse_headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


async def serve(host: str, port: int, upstream: str, log: str | None) -> None:
    proxy = Proxy(upstream, log)
    server = await asyncio.start_server(
        proxy.handle, host, port, limit=HEADER_LIMIT, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"counting proxy on http://{host}:{bound} -> {upstream}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://host:port of the S3 server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--log", default=None, help="append every request line to this file")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.upstream, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
