"""A real gRPC client (grpcio) for tests/grpc.rs: one call to `test.Echo` through tollgate over
h2c, printed as one JSON line.

    grpc_client.py TARGET METHOD [--token T] [--timeout SECONDS] [--arg A]...

METHOD is Unary, ServerStream, ClientStream, Bidi or Slow; the --arg values are the request
message(s). Prints {"code", "details", "responses", "initial", "trailing"}: the status name
(OK, UNAUTHENTICATED, ...), the status message, the response messages (text) and the initial
and trailing metadata.
"""

import argparse
import json
import queue

import grpc


def metadata_dict(pairs):
    """Metadata as a dict; a key that came several times (two WWW-Authenticate challenges) keeps
    every value, in order, as a list."""
    out = {}
    for k, v in pairs or ():
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v
    return out


def bidi_requests(args, answers):
    # Lock-step: the next message goes only after the previous answer came back, so the call
    # completes only if every hop streams both ways.
    for i, a in enumerate(args):
        if i > 0:
            answers.get(timeout=20)
        yield a.encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("--token")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--arg", action="append", default=[])
    a = p.parse_args()
    metadata = [("x-client", "python")]
    if a.token:
        metadata.append(("authorization", f"Bearer {a.token}"))
    out = {"code": "OK", "details": "", "responses": [], "initial": {}, "trailing": {}}
    with grpc.insecure_channel(a.target) as channel:
        path = f"/test.Echo/{a.method}"
        call = None
        try:
            if a.method in ("Unary", "Slow"):
                msg = (a.arg[0] if a.arg else "").encode()
                resp, call = channel.unary_unary(path).with_call(msg, metadata=metadata, timeout=a.timeout)
                out["responses"].append(resp.decode())
            elif a.method == "ServerStream":
                call = channel.unary_stream(path)(a.arg[0].encode(), metadata=metadata, timeout=a.timeout)
                out["responses"] = [m.decode() for m in call]
            elif a.method == "ClientStream":
                resp, call = channel.stream_unary(path).with_call(
                    iter([x.encode() for x in a.arg]), metadata=metadata, timeout=a.timeout)
                out["responses"].append(resp.decode())
            elif a.method == "Bidi":
                answers = queue.Queue()
                call = channel.stream_stream(path)(bidi_requests(a.arg, answers), metadata=metadata, timeout=a.timeout)
                for m in call:
                    out["responses"].append(m.decode())
                    answers.put(m)
            else:
                raise SystemExit(f"unknown method {a.method}")
            out["initial"] = metadata_dict(call.initial_metadata())
            out["trailing"] = metadata_dict(call.trailing_metadata())
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details() or ""
            out["initial"] = metadata_dict(e.initial_metadata())
            out["trailing"] = metadata_dict(e.trailing_metadata())
    print(json.dumps(out, default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else str(v)), flush=True)


if __name__ == "__main__":
    main()
