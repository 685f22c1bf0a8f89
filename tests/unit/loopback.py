"""A loopback HTTP server for download tests: serves given bytes at given paths, never the internet."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve(files: dict[str, bytes], truncate: dict[str, int] | None = None,
          hold: dict[str, threading.Event] | None = None):
    """Yields the base URL (``http://127.0.0.1:PORT``); ``files`` maps a path (``/x.th``) to its bytes.
    ``truncate[path] = n`` announces the full length but sends only the first n bytes, then hangs up.
    ``hold[path]``: sends the first half, then waits for the event (at most 60 s) before the rest."""
    truncate, hold = truncate or {}, hold or {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            body = body[: truncate.get(self.path, len(body))]
            if self.path in hold:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                hold[self.path].wait(60)
                body = body[len(body) // 2:]
            try:
                self.wfile.write(body)
            except OSError:  # the client gave up (a cancelled download)
                pass

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A loopback URL where nothing listens (a port just released): the offline case."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
