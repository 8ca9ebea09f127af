"""A real gRPC server (grpcio) for tests/grpc.rs: service `test.Echo`, raw-bytes messages
(no protobuf code generation needed), on 127.0.0.1 with a free port.

    grpc_server.py [--tls CERT KEY]

Prints `PORT <n>` once serving; stops when stdin closes (the test dropped it).

Methods (every message is raw bytes):
  Unary          echoes the request as JSON {"echo", "metadata"}: the metadata it received,
                 so the test sees what tollgate forwarded; initial metadata `x-initial: yes`,
                 trailing metadata `x-trailer: done`, `x-count: 1`
  ServerStream   request b"N": N messages b"0".."N-1"; trailing `x-count: N`
  ClientStream   the request messages joined with b"|"; trailing `x-count`
  Bidi           each message answered as it arrives with b"echo:" + message (the test's client
                 sends the next only after reading the previous answer: no buffering anywhere)
  Slow           answers b"late" after the number of seconds in the request (at most 30)
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc


def metadata_of(context):
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


def unary(request, context):
    context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata((("x-trailer", "done"), ("x-count", "1")))
    body = {"echo": request.decode("utf-8", "replace"), "metadata": metadata_of(context)}
    return json.dumps(body).encode()


def server_stream(request, context):
    n = min(int(request or b"0"), 1000)
    context.set_trailing_metadata((("x-count", str(n)),))
    for i in range(n):
        yield str(i).encode()


def client_stream(request_iterator, context):
    parts = list(request_iterator)
    context.set_trailing_metadata((("x-count", str(len(parts))),))
    return b"|".join(parts)


def bidi(request_iterator, context):
    count = 0
    for message in request_iterator:
        count += 1
        yield b"echo:" + message
    context.set_trailing_metadata((("x-count", str(count)),))


def slow(request, context):
    deadline = time.monotonic() + min(float(request or b"0"), 30.0)
    while time.monotonic() < deadline and context.is_active():
        time.sleep(0.01)
    return b"late"


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        with open(sys.argv[2], "rb") as f:
            cert = f.read()
        with open(sys.argv[3], "rb") as f:
            key = f.read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(((key, cert),)))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    # Until the test closes our stdin (or dies).
    threading.Thread(target=lambda: (sys.stdin.read(), server.stop(0)), daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
