"""benchmarks.load's client and CPU figures: a kept connection that survives the server closing it,
and the CPU seconds of a process tree."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmarks.load import KeepAlive
from benchmarks.server import tree_cpu_s


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body)
        out = b'{"ok": true}'
        self.send_response(200 if body.get("fine", True) else 400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        if body.get("close"):
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:  # quiet
        pass


def test_keep_alive_posts_json_reports_the_status_and_reconnects_after_a_close():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = KeepAlive(f"http://127.0.0.1:{server.server_port}", {"x-api-key": "k"})
        assert client.post("/events", {"user_id": "u", "close": True}) == 200
        assert client.post("/events", {"user_id": "v"}) == 200  # the server closed the first connection
        assert client.post("/recommend", {"fine": False}) == 400
        client.close()
        assert [b.get("user_id") for b in _Echo.seen] == ["u", "v", None]
    finally:
        server.shutdown()


def test_tree_cpu_seconds_of_this_process_and_of_no_process():
    sum(i * i for i in range(200_000))  # some CPU
    assert tree_cpu_s(os.getpid()) > 0
    assert tree_cpu_s(None) is None
