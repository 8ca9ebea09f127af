"""A real OTLP/HTTP trace receiver for the tests: decodes each POST /v1/traces body as an
ExportTraceServiceRequest with the OpenTelemetry protobufs and keeps every span as a JSON object.

    otlp_receiver.py PORT_FILE [--status CODE]

Listens on a free loopback port and writes it to PORT_FILE when ready. GET /spans answers a JSON
list of the spans received so far; GET /requests answers what each POST carried (path, content
type, and the raw body in hex, so a test can search the exported bytes for secrets). With
--status, POSTs are answered with that status (a collector refusing everything).
"""

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LOCK = threading.Lock()
SPANS = []
REQUESTS = []


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def spans_of(req):
    out = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_id": s.parent_span_id.hex(),
                        "trace_state": s.trace_state,
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "status": {"code": s.status.code, "message": s.status.message},
                        "service_name": resource.get("service.name"),
                        "scope": ss.scope.name,
                    }
                )
    return out


class Handler(BaseHTTPRequestHandler):
    status = 200

    def log_message(self, *args):
        pass

    def answer(self, code, body, content_type):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            if self.path == "/spans":
                body = json.dumps(SPANS)
            elif self.path == "/requests":
                body = json.dumps(REQUESTS)
            else:
                return self.answer(404, b"not found", "text/plain")
        self.answer(200, body.encode(), "application/json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with LOCK:
            REQUESTS.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body_hex": body.hex(),
                }
            )
        if self.status != 200:
            return self.answer(self.status, b"refused", "text/plain")
        if self.path != "/v1/traces":
            return self.answer(404, b"not found", "text/plain")
        req = ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except DecodeError as e:
            return self.answer(400, str(e).encode(), "text/plain")
        with LOCK:
            SPANS.extend(spans_of(req))
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port_file")
    ap.add_argument("--status", type=int, default=200)
    args = ap.parse_args()
    Handler.status = args.status
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
