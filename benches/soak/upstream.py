#!/usr/bin/env python3
"""The soak test's upstream: a small HTTP/1.1 keep-alive server on 127.0.0.1 (stdlib only).

    python3 upstream.py PORT

GET/HEAD/POST on any path answer 200 with JSON: the path, and what the gateway sent that the
driver checks (Authorization, X-Forwarded-User). A WebSocket upgrade (RFC 6455) on any path is
accepted and every data frame is echoed back (text or binary; ping answered with pong, close
with close). Prints `UPSTREAM_READY` on stdout once listening.
"""

import base64
import hashlib
import json
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soak-upstream"

    def log_message(self, *args):
        pass

    def answer(self, body=True):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        doc = json.dumps(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "user": self.headers.get("X-Forwarded-User"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(doc)))
        self.end_headers()
        if body:
            self.wfile.write(doc)

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def do_HEAD(self):
        self.answer(body=False)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            while True:
                b1, b2 = read_exact(self.rfile, 2)
                opcode = b1 & 0x0F
                n = b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", read_exact(self.rfile, 2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", read_exact(self.rfile, 8))
                mask = read_exact(self.rfile, 4) if b2 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(read_exact(self.rfile, n)))
                if opcode == 0x8:
                    self.wfile.write(ws_frame(0x8, data[:2]))
                    self.wfile.flush()
                    return
                if opcode == 0x9:
                    self.wfile.write(ws_frame(0xA, data))
                elif opcode in (0x1, 0x2):
                    self.wfile.write(ws_frame(opcode, data))
                self.wfile.flush()
        except (EOFError, OSError, ValueError):
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Handler)
    srv.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("UPSTREAM_READY", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
