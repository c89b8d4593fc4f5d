"""A real HTTP proxy in front of moto's server that answers 503 for chosen keys, to show ferry's
retries against a store that has passing (or lasting) faults. Nothing in the client is mocked."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FlakyProxy:
    """`failures[fragment] = n`: the first n requests whose path contains fragment get a 503
    (n < 0: every one). `seen[fragment]` counts the requests that matched."""

    def __init__(
        self, upstream: str, failures: dict[str, int], on_request=None, *, with_headers=False
    ) -> None:
        """`on_request(method, path)`, if given, runs before each request is forwarded (to act
        at a precise point of a client's sequence of requests); with `with_headers`,
        `on_request(method, path, headers)`."""
        self.upstream = urlsplit(upstream).netloc
        self.on_request = on_request
        self.with_headers = with_headers
        self.failures = dict(failures)
        self.seen = dict.fromkeys(failures, 0)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._should_fail(self.path):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(UNAVAILABLE)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(UNAVAILABLE)
                    return
                if proxy.on_request is not None:
                    if proxy.with_headers:
                        proxy.on_request(self.command, self.path, self.headers)
                    else:
                        proxy.on_request(self.command, self.path)
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # a HEAD's Content-Length is the object's, as upstream gave it (it has no body)
                head_length = (
                    response.getheader("Content-Length") if self.command == "HEAD" else None
                )
                self.send_header("Content-Length", head_length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _should_fail(self, path: str) -> bool:
        with self.lock:
            for fragment, remaining in self.failures.items():
                if fragment in path:
                    self.seen[fragment] += 1
                    if remaining != 0:
                        self.failures[fragment] = remaining - 1 if remaining > 0 else remaining
                        return True
            return False

    def __enter__(self) -> FlakyProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class TwoAtOnce:
    """An `on_request` hook that holds every request of the first group it sees (`group_of`
    maps a request to its group, or None for one that is let through) until a request of
    another group arrives, for at most `seconds` in all. A worker process runs one partition
    (or range) at a time, so a task with the first group's work held only goes on when a
    second worker takes another: however late that worker starts, the first cannot run
    every group alone. Retries of a held request (a client timing out) are held too.
    `together` tells whether the other group came."""

    def __init__(self, group_of, seconds: float = 300) -> None:
        self.group_of, self.seconds = group_of, seconds
        self.together = threading.Event()
        self.first = None
        self._deadline = 0.0
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str) -> None:
        import time

        group = self.group_of(method, path)
        if group is None:
            return
        with self._lock:
            if self.first is None:
                self.first, self._deadline = group, time.monotonic() + self.seconds
            elif group != self.first:
                self.together.set()
        if group == self.first:
            self.together.wait(timeout=max(0.0, self._deadline - time.monotonic()))
