#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) from the existing tests: string literals of
the adversarial, edge and unit tests, the open-redirect corpora, the example configs and key
files, and tokens signed with the test keys. Run from the repository root; idempotent (files are
named by the SHA-1 of their content, as libFuzzer names them)."""

import base64, glob, hashlib, json, os, re, struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
NOW = 1_800_000_000
ISS = "https://idp.example.com"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > 8192:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


LIT = re.compile(r'b?"((?:[^"\\]|\\.)*)"')


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u":
            j = s.index("}", i)
            out.append(chr(int(s[i + 3 : j], 16)))
            i = j + 1
        elif n == "x":
            out.append(chr(int(s[i + 2 : i + 4], 16)))
            i += 4
        elif n == "\n":  # line continuation
            i += 2
            while i < len(s) and s[i] in " \t":
                i += 1
        else:
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}.get(n, n))
            i += 2
    return "".join(out)


def literals(*paths):
    for p in paths:
        for path in glob.glob(os.path.join(ROOT, p)):
            with open(path, encoding="utf-8") as f:
                for m in LIT.finditer(f.read()):
                    try:
                        yield unescape(m.group(1))
                    except (ValueError, IndexError):
                        pass


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    tests = ["tests/adversarial.rs", "tests/edge_host.rs", "tests/edge_headers.rs", "tests/proxy.rs", "tests/forward_auth.rs", "tests/login.rs"]
    # Paths.
    for s in literals("src/path.rs", "src/router.rs", *tests):
        if s.startswith("/") and len(s) < 200 and "\n" not in s:
            put("path", s.split("?")[0])
    # Authorities and requests.
    for s in literals("src/authority.rs", "src/gateway/forward_auth.rs", "tests/edge_host.rs"):
        if len(s) < 300 and "\n" not in s and "/" not in s[:1]:
            put("authority", s)
    for flags, target, hosts in [
        (1, "/x", ["Www.Example.com"]), (1, "/x", []), (1, "/x", ["a.example", "a.example"]),
        (1, "http://www.example.com/x", ["admin.example.com"]), (1, "http://www.example.com/x", ["WWW.example.com."]),
        (1, "https://a.example:443/x", ["a.example"]), (1, "http://a@a.example/x", ["a.example"]),
        (0, "http://a.example/x", []), (2, "https://a.example/x", ["b.example"]), (2, "/x", ["a.example"]),
        (1, "http://127.1/x", ["127.1"]), (1, "/x", ["[::1]:80"]),
    ]:
        put("host_request", bytes([flags]) + "\n".join([target] + hosts).encode())
    # Redirect targets: the public corpora, then the unit tests' cases.
    for corpus in ["tests/data/open-redirects-oauth2-proxy.txt", "tests/data/open-redirects-mod-auth-openidc.txt"]:
        for line in read(corpus).splitlines():
            put("redirect", line)
    for s in literals("src/auth/redirect.rs", "tests/login.rs"):
        if ("/" in s or "\\" in s) and len(s) < 300 and "\n" not in s:
            put("redirect", s)
    # Bearer tokens.
    for s in literals("src/auth/token.rs"):
        if s.lower().startswith(("bearer", "basic")) or s in ("Bearer", "Bearer "):
            put("token", f"/x?access_token=q%2Et\nauthorization: {s}\ncookie: a=1; at=cookie-token")
            put("token", f"/x\nauthorization: {s}")
    put("token", "/x\nauthorization: Bearer a\nauthorization: Bearer b")
    # Cookie lines.
    for s in literals("src/auth/cookie.rs", "src/util.rs", "tests/login.rs", "tests/edge_headers.rs"):
        if "=" in s and "\n" not in s and len(s) < 2000 and not s.startswith("http"):
            put("cookie", s)
    put("cookie", "; ".join(f"s_{i}=x" for i in range(20)))
    put("cookie", "s_1=B; s_00=A\ns_0=A; s_2=C")
    for op, pos, xor, ln, claims in [(0, 5, 1, 0, b'{"sub":"ann"}'), (2, 300, 7, 20, b"x"), (4, 9999, 0, 40, b""), (7, 1, 255, 3, b'{"sub":"b","sid":"s"}')]:
        put("cookie_sealed", bytes([op]) + struct.pack("<H", pos) + bytes([xor, ln]) + claims)
    # Request ids.
    for s in ["abc-123", "bad id with spaces", "a" * 128, "a" * 129, "", "x:y.z_1", "é", "id\tx", "%0d%0a"]:
        put("request_id", s)
    # Forwarding headers: each header list of the forward-auth unit and integration tests.
    pair = r'\("([a-zA-Z-]+)", "((?:[^"\\]|\\.)*)"\)'
    for src in ["src/gateway/forward_auth.rs", "tests/forward_auth.rs"]:
        for m in re.finditer(r"\[(\s*" + pair + r"(?:,\s*" + pair + r")*,?\s*)\]", read(src)):
            lines = [f"{n}: {unescape(v)}" for n, v in re.findall(pair, m.group(1))]
            for flags in (0, 1, 7):
                put("forwarded", bytes([flags]) + "\n".join(lines).encode())
    put("forwarded", b"\x01x-forwarded-for: 1.2.3.4\nx-forwarded-proto: https")
    # Header names: the header lines of the edge and proxy tests' raw requests.
    for s in literals("tests/edge_headers.rs", "tests/proxy.rs", "tests/adversarial.rs", "src/upstream/headers.rs"):
        lines = [l for l in s.replace("\r", "").split("\n") if re.match(r"^[A-Za-z0-9_.~-]+: ", l)]
        if lines:
            for flags in (0, 1):
                put("header_names", bytes([flags]) + "\n".join(lines).encode())
    for s in literals("src/upstream/headers.rs"):
        if re.match(r"^[a-zA-Z0-9_.*-]+$", s):
            put("header_names", b"\x00" + f"{s.rstrip('*')}: v\nx-custom: 1".encode())
    # Configuration: the examples and the tests' configurations.
    for p in glob.glob(os.path.join(ROOT, "config", "*.toml")) + glob.glob(os.path.join(ROOT, "deploy", "**", "*.toml"), recursive=True):
        with open(p, encoding="utf-8") as f:
            put("config", f.read())
    for s in literals("src/config/*.rs", "src/auth/mod.rs"):
        if "[[route]]" in s or "[server]" in s or "${" in s:
            put("config", s)
    # Key sets.
    keys = {}
    for p in glob.glob(os.path.join(ROOT, "tests", "idp", "keys", "*.json")):
        with open(p, encoding="utf-8") as f:
            doc = json.load(f)
        put("jwks", json.dumps(doc))
        keys[os.path.basename(p)] = doc["keys"][0]
    pub = lambda k, **extra: {**{n: v for n, v in k.items() if n not in ("d", "p", "q", "dp", "dq", "qi")}, **extra}
    rsa1, ec1 = keys["rsa1.json"], keys["ec1.json"]
    put("jwks", json.dumps({"keys": [pub(rsa1, kid="rsa1"), pub(ec1, kid="ec1")]}))
    put("jwks", json.dumps({"keys": [pub(rsa1, kid="a", alg="ES256"), pub(rsa1, kid="b", use="enc"), {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, {"kty": "XYZ"}, pub(rsa1, kid="a")]}))
    put("jwks", json.dumps({"keys": [pub(ec1, kid="e", crv="P-384"), pub(rsa1, kid="r", key_ops=["encrypt"]), {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))
    for s in ["[]", '{"keys": 1}', '{"keys": []}', '{"keys": [null, 1, "x", {}]}']:
        put("jwks", s)
    # Discovery documents.
    eps = ["jwks_uri", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "introspection_endpoint", "end_session_endpoint"]
    for issuer, base in [(ISS, ISS), (ISS, "http://127.0.0.1:8080"), (ISS, "http://idp.example.com"), (ISS, "http://localhost.evil.com"),
                         ("https://evil.example", ISS), (ISS, "https://a@evil.com"), (ISS, "ftp://x"), (ISS + "/", ISS)]:
        put("discovery", json.dumps({"issuer": issuer, **{e: f"{base}/{e}" for e in eps}, "authorization_response_iss_parameter_supported": True}))
    for s in ["{}", '{"issuer": 1}', '{"issuer": "https://idp.example.com", "jwks_uri": null}', "[]"]:
        put("discovery", s)
    # Token endpoint answers (first byte: status index 0 = 200, 5 = 400, 7 = 500).
    for st, body in [(0, {"access_token": "at-123456789", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-123456789", "id_token": "a.b.c", "scope": "openid"}),
                     (0, {"access_token": "", "token_type": "Bearer"}), (0, {"access_token": "x", "token_type": "mac"}),
                     (0, {"access_token": "x", "expires_in": -1}), (5, {"error": "invalid_grant", "error_description": "spent"}),
                     (7, {}), (2, None)]:
        put("token_response", bytes([st]) + (b"" if body is None else json.dumps(body).encode()))
    # Tokens signed with the test keys, valid at the targets' NOW, and their adversarial forms.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
    load = lambda p: serialization.load_pem_private_key(open(os.path.join(ROOT, "tests/idp/keys", p), "rb").read(), None)
    rsa_key, ec_key = load("rsa1.pem"), load("ec1.pem")

    def sign(header, claims, how):
        msg = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
        if how == "RS256":
            sig = rsa_key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        elif how == "PS256":
            sig = rsa_key.sign(msg, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        elif how == "ES256":
            r, s = utils.decode_dss_signature(ec_key.sign(msg, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = how
        return msg.decode() + "." + b64(sig)

    good = {"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW - 5}
    for alg, kid in [("RS256", "rsa1"), ("PS256", "rsa1"), ("ES256", "ec1")]:
        put("jwt", sign({"alg": alg, "kid": kid}, good, alg))
        put("jwt", sign({"alg": alg}, good, alg))
        put("jwt", sign({"alg": alg, "kid": kid, "typ": "at+jwt"}, {**good, "aud": ["x", "api"], "nbf": NOW}, alg))
        put("jwt", sign({"alg": alg, "kid": kid}, {**good, "exp": NOW - 100}, alg))
        put("jwt", sign({"alg": alg, "kid": kid, "crit": ["b64"]}, good, alg))
        put("jwt", sign({"alg": alg, "kid": kid, "jku": "https://evil/jwks"}, good, alg))
    for alg in ["none", "None", "NONE", "HS256"]:
        put("jwt", sign({"alg": alg, "kid": "rsa1"}, good, b""))
        put("jwt", sign({"alg": alg, "kid": "rsa1"}, good, b"sig"))
    put("jwt", sign({"alg": "RS256", "kid": "rsa1"}, {**good, "exp": float(NOW + 600) + 0.5}, "RS256"))
    put("jwt", sign({"alg": "ES256", "kid": "ec1"}, {**good, "iss": [ISS]}, "ES256"))
    put("jwt", "a.b.c.d.e")
    put("jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl")
    for op, pos, xor, extra, claims in [(0, 10, 1, b"", b""), (2, 400, 4, b"", b""), (0x1a, 3, 0, b'{"alg":"RS384"}', b""),
                                        (0x22, 7, 9, b"{}", json.dumps(good).encode()), (0x32, 70, 1, b'{"kid":"rsa1"}', b"{}"), (8, 5, 5, b"", b"")]:
        put("jwt_signed", bytes([op]) + struct.pack("<H", pos) + bytes([xor]) + (extra + b"\0" + claims if extra or claims else b""))

    # DPoP proofs (op bit 0 clear: built and signed by the target; set: the raw header).
    for op, pos, xor, extra, claims in [(0, 10, 1, b"", b""), (2, 300, 7, b"", b""), (0x80, 5, 0, b"", b""), (0xa0, 1, 1, b"", b""),
                                        (0xc4, 9, 9, b"", b""), (0xe8, 2, 3, b"", b""), (0x10, 40, 2, b'{"typ":"JWT"}', b""),
                                        (0x06, 7, 5, b"{}", b'{"htm":"GET"}'), (0x0c, 70, 1, b'{"kid":"k"}', b'{"iat":1799999900}')]:
        put("dpop_proof", bytes([op]) + struct.pack("<H", pos) + bytes([xor]) + (extra + b"\0" + claims if extra or claims else b""))
    import hashlib as _h
    ec_pub = {k: v for k, v in ec1.items() if k in ("kty", "crv", "x", "y")}
    ath = b64(_h.sha256(b"dpop-bound-access-token").digest())
    dclaims = {"jti": "j1", "htm": "POST", "htu": "https://api.example.com/r/x", "iat": NOW, "ath": ath}
    for hdr, cl, how in [({"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_pub}, dclaims, "ES256"),
                         ({"typ": "dpop+jwt", "alg": "ES256", "jwk": {**ec_pub, "d": ec1["d"]}}, dclaims, "ES256"),
                         ({"typ": "dpop+jwt", "alg": "RS256", "jwk": {"kty": "RSA", "n": rsa1["n"], "e": rsa1["e"]}}, dclaims, "RS256"),
                         ({"typ": "dpop+jwt", "alg": "none", "jwk": ec_pub}, dclaims, b""),
                         ({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}, dclaims, b"sig"),
                         ({"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_pub}, {**dclaims, "htu": "HTTPS://API.example.com:443/r/%78"}, "ES256")]:
        put("dpop_proof", b"\x01\0\0\0" + sign(hdr, cl, how).encode())
    # Client certificate headers: the unit tests' header shapes, raw (op bit 0), and built ones.
    for s in literals("src/client_cert/header.rs"):
        if ("Hash" in s or "Cert" in s or "By" in s) and "\n" not in s:
            put("client_cert_header", "\x01" + s)
    pem_a = "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"certificate A DER").decode() + "\n-----END CERTIFICATE-----\n"
    enc = "".join(c if c.isalnum() or c in "-_.~" else "%%%02X" % ord(c) for c in pem_a)
    for v in [enc, enc + enc, "Cert=\"" + enc + "\"", "Hash=" + _h.sha256(b"certificate A DER").hexdigest() + ";Cert=" + enc]:
        put("client_cert_header", "\x01" + v)
    for op, pieces in [(0, [0]), (0, [2]), (2, [0, 2]), (4, [0, 1]), (8, [3, 5, 4]), (0x10, [10, 6, 7]), (0x20, [2, 2]), (0, [])]:
        put("client_cert_header", bytes([op] + pieces))
    # Trace context.
    for s in literals("src/telemetry/traceparent.rs"):
        if s.startswith(("00-", "01-", "ff-")):
            put("traceparent", "traceparent: " + s + "\ntracestate: rojo=00f067aa0ba902b7,congo=t61")
            put("traceparent", "traceparent: " + s)
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for st in ["1tenant@vendor=x, ,b=c d", "=no key", "Upper=1", "k=v=w", "a=1,b", ",".join(f"k{i}=v" for i in range(33)), " , "]:
        put("traceparent", f"traceparent: {good}\ntracestate: {st}")
    put("traceparent", f"traceparent: {good}\ntraceparent: {good}")
    # gRPC deadlines.
    for s in ["2H", "3M", "10S", "250m", "7u", "99999999n", "99999999H", "0m", "", "S", "123456789S", "10s", "-1S", "1.5S", " 1S", "1SS", "+1S", "١S"]:
        put("grpc_timeout", s)
    # Redis replies and URLs.
    for r in [b"+OK\r\n", b"-READONLY no\r\n", b"$-1\r\n", b"$3\r\nabc\r\n", b"*-1\r\n", b":42\r\n", b"*0\r\n",
              b"*3\r\n$6\r\nmaster\r\n:10\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$2\r\n10\r\n",
              b"*2\r\n-ERR a\r\n-ERR b\r\n", b"$17000000\r\n", b"$16777216\r\nab", b"*100001\r\n", b"*99999\r\n:1\r\n",
              b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "\u00e9\r\n".encode(), b"$3\r\nabcde", b"?what\r\n", b":12x\r\n", b"+no end", b""]:
        put("redis_reply", r)
    for s in literals("src/store/url.rs", "src/store/redis.rs"):
        if "://" in s and "\n" not in s and len(s) < 300:
            put("redis_url", s)
    # Token exchange answers (first byte: status index 0 = 200, 4 = 400, 5 = 401, 8 = 500; second: requested type).
    at = "urn:ietf:params:oauth:token-type:access_token"
    for st, rq, body in [(0, 0, {"access_token": "abc.def.ghi", "token_type": "Bearer", "expires_in": 60, "issued_token_type": at}),
                         (0, 2, {"access_token": "t", "token_type": "bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:jwt"}),
                         (0, 3, {"access_token": "t", "token_type": "Bearer", "issued_token_type": "urn:example:t"}),
                         (0, 0, {"access_token": "", "token_type": "Bearer", "issued_token_type": at}),
                         (0, 0, {"access_token": "t", "token_type": "DPoP", "issued_token_type": at}),
                         (0, 0, {"access_token": "t", "token_type": "Bearer"}),
                         (0, 0, {"access_token": "a\nb", "token_type": "Bearer", "issued_token_type": at}),
                         (4, 0, {"error": "invalid_target", "error_description": "audience not allowed"}),
                         (5, 0, {"error": "invalid_client"}), (8, 0, {"error": "server_error"}), (4, 0, {"error": "has \"quotes\""}),
                         (6, 0, {"error": "unauthorized_client", "error_description": "a\u0007" + "b" * 300})]:
        put("exchange_answer", bytes([st, rq]) + json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    put("exchange_answer", b"\x09\x00Service Unavailable")
    put("exchange_answer", b"\x00\x00<html>gateway error</html>")

if __name__ == "__main__":
    main()
