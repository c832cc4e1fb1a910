"""A loopback HTTP proxy that delays every request by a fixed time before forwarding it to sqld:
a Turso region some distance away, for bench/worker.sh. Usage: delay_proxy.py LISTEN_PORT
UPSTREAM_PORT DELAY_MS (prints nothing; runs until killed)."""
import http.client
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0
local = threading.local()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(DELAY)
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            local.conn.request("POST", self.path, body=body, headers=headers)
            resp = local.conn.getresponse()
        except (http.client.HTTPException, OSError):
            local.conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
            local.conn.request("POST", self.path, body=body, headers=headers)
            resp = local.conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
