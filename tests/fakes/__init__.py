"""In-process fakes of the external services the bot talks to."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """An HTTP server on a free 127.0.0.1 port, serving in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True).start()
    return server


def base_url(server: ThreadingHTTPServer | None) -> str:
    """Where a started server listens, e.g. http://127.0.0.1:54321."""
    assert server is not None, "server not started"
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def shutdown(server: ThreadingHTTPServer | None) -> None:
    """Stop a server, if it was started."""
    if server is not None:
        server.shutdown()
        server.server_close()
