#!/usr/bin/env python3
"""The soak test's load driver (stdlib only), started by benches/soak.sh.

    driver.py run  --gw PORT --idp URL --pid PID --duration SECONDS --out DIR [--rate 300]
    driver.py slow --gw PORT --count 200 --limit SECONDS --out FILE

`run` drives a steady mixed load at tollgate on 127.0.0.1 and checks every answer against what
it should be:

- bearer tokens from a pool (client credentials from the provider, each replaced before it is
  POOL_MAX_AGE old) on /api/: 200 from the upstream. A token whose signing key the provider no
  longer publishes (the script writes the published `kid`s to DIR/keys before each restart)
  may get either answer: counted apart (`retired`), never a misclassification.
- the same tokens on /svc/, a route sending the gateway's own client-credentials token
  upstream: 200, and the upstream saw a bearer token other than the caller's.
- browser sessions from real sign-ins (the provider's login form, cookies kept per origin)
  into the Redis session store, on /app/: 200 with the session's user. Anything else is a lost
  session. Each session is used for SESSION_MAX_AGE, then replaced by a new sign-in.
- invalid tokens (bad signature, expired, wrong audience) on /api/: 401.
- bad requests (bad Host, oversize header, bad path), raw: a 4xx.
- WS_TUNNELS WebSocket tunnels on /ws/ (bearer), each echoing a message a second.

Answers that are not what they should be go to DIR/anomalies.csv (time, kind, class, status,
detail); report.py excuses those inside a fault window that explains them. Every second a row
goes to DIR/samples.csv: requests, p50/p99 latency, anomalies, WebSocket echoes, and tollgate's
RSS (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd). DIR/summary.json has the
totals at the end. DIR/ready is written once the token pool and the first sessions exist.

`slow` opens COUNT connections that send a request head one byte a second (slowloris) and
checks that tollgate cuts every one within LIMIT seconds; one JSON line to FILE.
"""

import argparse
import base64
import csv
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

API_RESOURCE = "https://api.tollgate.test"
OTHER_RESOURCE = "https://other.tollgate.test"
POOL_SIZE = 2000
POOL_MAX_AGE = 60.0  # seconds (--token-age); the provider's tokens live IDP_AT_TTL
SESSIONS = 24
SESSION_MAX_AGE = 120.0
WS_TUNNELS = 12
LOAD_THREADS = 6  # connections: SESSION_THREADS of them for browser sessions
SESSION_THREADS = 2
TIMEOUT = 10.0
IDP_KEYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "idp", "keys")

# What a request was and what it should get.
MIX = [  # (kind, weight)
    ("bearer", 52),
    ("session", 16),
    ("cc", 12),
    ("bad_sig", 4),
    ("expired", 4),
    ("wrong_aud", 4),
    ("bad_host", 3),
    ("big_header", 2),
    ("bad_path", 3),
]
INVALID = {"bad_sig", "expired", "wrong_aud"}
RAW = {"bad_host", "big_header", "bad_path"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_header(token):
    try:
        return json.loads(b64url_decode(token.split(".")[0]))
    except (ValueError, IndexError):
        return {}


class State:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.pool = []  # [token, kid, minted_at]
        self.wrong_aud = []
        self.expired = []
        self.sessions = []  # dicts: cookie (header value), user, created
        self.published = None  # set of kids, from DIR/keys
        self.stop = threading.Event()
        self.buckets = {}  # second -> [count, latencies, anomalies, echoes, kinds...]
        self.latencies = []
        self.anomalies = []
        self.totals = {"answers": 0, "ws_echoes": 0, "retired": 0, "signins": 0, "signin_attempts": 0,
                       "ws_connects": 0, "sessions_used": 0}
        self.per_kind = {}
        self.user_seq = 0

    def now(self):
        return time.time()

    def bucket(self, t):
        sec = int(t - self.t0)
        b = self.buckets.get(sec)
        if b is None:
            b = self.buckets[sec] = {"n": 0, "lat": [], "anom": 0, "echo": 0}
        return b

    def record(self, kind, t, latency, cls, status, detail=""):
        with self.lock:
            b = self.bucket(t)
            if latency is not None:
                b["n"] += 1
                b["lat"].append(latency)
                self.latencies.append(latency)
                self.totals["answers"] += 1
            k = self.per_kind.setdefault(kind, {})
            k[cls] = k.get(cls, 0) + 1
            if cls == "retired":
                self.totals["retired"] += 1
            elif cls != "ok":
                b["anom"] += 1
                self.anomalies.append((round(t, 3), kind, cls, status, detail[:200]))

    def echo(self, t):
        with self.lock:
            self.bucket(t)["echo"] += 1
            self.totals["ws_echoes"] += 1

    def read_published(self):
        try:
            with open(os.path.join(self.args.out, "keys")) as f:
                kids = {k.strip() for k in f.read().split(",") if k.strip()}
            self.published = kids
        except OSError:
            pass

    def token(self):
        with self.lock:
            return random.choice(self.pool) if self.pool else None


# ---------------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------------
class Conn:
    """A keep-alive connection that reconnects after any failure."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.c = None

    def request(self, method, path, headers=None, body=None):
        if self.c is None:
            self.c = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            self.c.request(method, path, body=body, headers=headers or {})
            r = self.c.getresponse()
            data = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            return r.status, r.getheaders(), data
        except Exception:
            self.close()
            raise

    def close(self):
        if self.c is not None:
            try:
                self.c.close()
            except Exception:
                pass
            self.c = None


def header(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def headers_named(headers, name):
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------
def mint(conn, resource):
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "api:read", "resource": resource})
    auth = "Basic " + base64.b64encode(b"m2m:m2m-secret").decode()
    status, _, data = conn.request(
        "POST", "/token", {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}, body)
    if status != 200:
        raise RuntimeError(f"token endpoint answered {status}: {data[:200]!r}")
    token = json.loads(data)["access_token"]
    return [token, jwt_header(token).get("kid", ""), time.time()]


def expired_tokens(issuer, n):
    """Tokens the provider could have signed (its key file rsa1), expired an hour ago."""
    key = os.path.join(IDP_KEYS, "rsa1.pem")
    out = []
    for i in range(n):
        now = int(time.time())
        head = b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "test-rsa-1"}).encode())
        claims = {"iss": issuer, "aud": API_RESOURCE, "sub": "m2m", "client_id": "m2m", "scope": "api:read",
                  "iat": now - 4000, "exp": now - 3600, "jti": f"soak-expired-{i}"}
        signing_input = head + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        out.append(signing_input + "." + b64url(sig))
    return out


def bad_signature(token):
    head, claims, sig = token.split(".")
    i = len(sig) // 2
    c = "A" if sig[i] != "A" else "B"
    return f"{head}.{claims}.{sig[:i]}{c}{sig[i + 1:]}"


def minter(st, idp_host, idp_port):
    """Keeps the pool full and young: the oldest token (or one of a retired key) is replaced."""
    conn = Conn(idp_host, idp_port)
    while not st.stop.is_set():
        try:
            with st.lock:
                pool_full = len(st.pool) >= POOL_SIZE
                aud_full = len(st.wrong_aud) >= 20
            if not aud_full:
                tok = mint(conn, OTHER_RESOURCE)
                with st.lock:
                    st.wrong_aud.append(tok)
                continue
            if not pool_full:
                tok = mint(conn, API_RESOURCE)
                with st.lock:
                    st.pool.append(tok)
                continue
            # Replace the oldest (a retired key's first), at a pace that turns the pool over
            # within POOL_MAX_AGE. The token being replaced leaves the pool while its successor
            # is minted (the minters never pick the same one), and goes back if minting fails.
            with st.lock:
                published = st.published
                oldest = min(range(len(st.pool)), key=lambda i: (
                    0 if published and st.pool[i][1] not in published else 1, st.pool[i][2]))
                old = st.pool[oldest]
                stale = time.time() - old[2] > POOL_MAX_AGE or (published and old[1] not in published)
                if stale:
                    st.pool[oldest] = st.pool[-1]
                    st.pool.pop()
            if not stale:
                st.stop.wait(POOL_MAX_AGE / POOL_SIZE)
                continue
            try:
                tok = mint(conn, API_RESOURCE)
            except Exception:
                with st.lock:
                    st.pool.append(old)
                raise
            with st.lock:
                st.pool.append(tok)
            # A wrong-audience token now and then too.
            if random.random() < 0.02:
                aud = mint(conn, OTHER_RESOURCE)
                with st.lock:
                    st.wrong_aud[random.randrange(len(st.wrong_aud))] = aud
        except Exception:
            conn.close()
            st.stop.wait(0.5)  # the provider is down or restarting: try again soon


# ---------------------------------------------------------------------------------------------
# Browser sign-in
# ---------------------------------------------------------------------------------------------
class Browser:
    """Cookies per origin (host:port), enough for tollgate and the provider's login form."""

    def __init__(self):
        self.jars = {}

    def cookie_header(self, origin):
        jar = self.jars.get(origin, {})
        return "; ".join(f"{k}={v}" for k, v in jar.items())

    def store(self, origin, headers):
        jar = self.jars.setdefault(origin, {})
        for line in headers_named(headers, "set-cookie"):
            nv, _, attrs = line.partition(";")
            name, _, value = nv.strip().partition("=")
            attrs = attrs.lower()
            if value == "" or "max-age=0" in attrs or "expires=thu, 01 jan 1970" in attrs:
                jar.pop(name, None)
            else:
                jar[name] = value

    def request(self, method, url, body=None, accept="text/html"):
        u = urllib.parse.urlsplit(url)
        origin = u.netloc
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        try:
            headers = {"Accept": accept, "Connection": "close"}
            cookies = self.cookie_header(origin)
            if cookies:
                headers["Cookie"] = cookies
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            path = u.path + ("?" + u.query if u.query else "")
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            hs = r.getheaders()
        finally:
            c.close()
        self.store(origin, hs)
        return r.status, hs, data


def sign_in(st, gw, user):
    """A whole sign-in as `user`, like a browser: returns the session's Cookie header value."""
    b = Browser()
    base = f"http://127.0.0.1:{gw}"
    url = f"{base}/app/landing"
    method, body = "GET", None
    for step in range(16):
        try:
            status, hs, data = b.request(method, url, body)
        except OSError as e:
            raise SignInError(f"step {step} {method} {url.split('?')[0]}: {e}", None)
        loc = header(hs, "location")
        u = urllib.parse.urlsplit(url)
        if status in (301, 302, 303, 307) and loc:
            if u.path.endswith("/oauth2/callback"):
                if not loc.endswith("/app/landing"):
                    raise SignInError(f"callback redirected to {loc}", status)
                cookie = b.cookie_header(f"127.0.0.1:{gw}")
                if "tollgate_app=" not in cookie:
                    raise SignInError(f"callback set no session cookie: {headers_named(hs, 'set-cookie')}", status)
                session = "; ".join(p for p in cookie.split("; ") if p.startswith("tollgate_app=") or
                                    p.startswith("tollgate_app_") and "_flow_" not in p)
                return session
            url = urllib.parse.urljoin(url, loc)
            method, body = "GET", None
            continue
        if status == 200 and "/interaction/" in u.path:
            text = data.decode("utf-8", "replace")
            prompt = "consent" if 'value="consent"' in text else "login"
            fields = {"prompt": prompt}
            if prompt == "login":
                fields.update(login=user, password="x")
            method, body = "POST", urllib.parse.urlencode(fields)
            continue
        where = "gateway" if u.port == gw else "provider"
        raise SignInError(f"step {step}: the {where} answered {status} at {u.path}: {data[:160]!r}", status)
    raise SignInError("too many steps", None)


class SignInError(Exception):
    def __init__(self, msg, status):
        super().__init__(msg)
        self.status = status


def signer(st, gw):
    """Keeps SESSIONS sessions, each used for SESSION_MAX_AGE, then replaced."""
    while not st.stop.is_set():
        with st.lock:
            now = time.time()
            st.sessions = [s for s in st.sessions if now - s["created"] < SESSION_MAX_AGE]
            short = SESSIONS - len(st.sessions)
            st.user_seq += 1
            user = f"soak{st.user_seq}"
        if short <= 0:
            st.stop.wait(SESSION_MAX_AGE / SESSIONS / 2)
            continue
        t = time.time()
        st.totals["signin_attempts"] += 1
        try:
            cookie = sign_in(st, gw, user)
            with st.lock:
                st.sessions.append({"cookie": cookie, "user": user, "created": time.time()})
                st.totals["signins"] += 1
        except SignInError as e:
            st.record("signin", t, None, "signin_failed", e.status or 0, str(e))
            st.stop.wait(1.0)


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------
def raw_request(gw, data):
    """Sends raw bytes, returns the status code of the answer (0: none)."""
    s = socket.create_connection(("127.0.0.1", gw), timeout=TIMEOUT)
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        parts = buf.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    finally:
        s.close()


def classify_status(kind, status):
    """For proxied kinds: the class of a non-200 answer."""
    if status >= 500:
        return "5xx"
    if kind == "session":
        return "lost_session"
    if status in (401, 403):
        return "valid_refused"
    return "wrong"


def one_request(st, conn, gw, kind):
    t = time.time()
    start = time.monotonic()
    detail = ""
    try:
        if kind in RAW:
            if kind == "bad_host":
                data = b"GET /api/x HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n"
            elif kind == "big_header":
                data = (b"GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 +
                        b"\r\nConnection: close\r\n\r\n")
            else:
                data = b"GET /api/../../etc/passwd%00 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            status = raw_request(gw, data)
            lat = time.monotonic() - start
            if 400 <= status < 500:
                cls = "ok"
            elif status >= 500:
                cls = "5xx"
            else:
                cls = "bad_not_4xx"
            st.record(kind, t, lat, cls, status)
            return
        headers = {"Accept": "application/json"}
        tok = None
        retired = False
        if kind == "session":
            with st.lock:
                sess = random.choice(st.sessions) if st.sessions else None
            if sess is None:
                return
            headers["Cookie"] = sess["cookie"]
            path = f"/app/s{random.randrange(1000)}"
        else:
            base = st.token()
            if base is None:
                return
            published = st.published
            retired = bool(published) and base[1] not in published
            if kind == "bearer" or kind == "cc":
                tok = base[0]
            elif kind == "bad_sig":
                tok = bad_signature(base[0])
            elif kind == "expired":
                tok = random.choice(st.expired)
            else:
                with st.lock:
                    tok = random.choice(st.wrong_aud)[0] if st.wrong_aud else None
                if tok is None:
                    return
            headers["Authorization"] = f"Bearer {tok}"
            path = f"/{'svc' if kind == 'cc' else 'api'}/k{random.randrange(1000)}"
        status, hs, body = conn.request("GET", path, headers)
        lat = time.monotonic() - start
        if kind in INVALID:
            cls = "ok" if status == 401 else ("invalid_accepted" if status < 300 else
                                              "5xx" if status >= 500 else "wrong")
        elif status == 200:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {}
            if doc.get("path") != path:
                cls, detail = "wrong", f"upstream saw {doc.get('path')!r}"
            elif kind == "session" and doc.get("user") != sess["user"]:
                cls, detail = "wrong", f"user {doc.get('user')!r} for {sess['user']!r}"
            elif kind == "cc" and (not (doc.get("authorization") or "").startswith("Bearer ")
                                   or doc.get("authorization") == f"Bearer {tok}"):
                cls, detail = "wrong", "the upstream did not get the gateway's own token"
            else:
                cls = "ok"
        elif retired and status == 401:
            cls = "retired"
        else:
            cls = classify_status(kind, status)
            detail = body[:160].decode("utf-8", "replace")
            if kind == "session":
                detail = f"{sess['user']} (age {time.time() - sess['created']:.0f}s) {header(hs, 'location') or ''} {detail}"
            elif tok is not None:
                detail = f"kid {base[1]} age {time.time() - base[2]:.0f}s published {sorted(published or [])} {detail}"
        if kind == "session":
            st.totals["sessions_used"] += 1
            if cls == "lost_session":
                # Counted once: a browser would sign in again, and so does the signer.
                with st.lock:
                    if sess not in st.sessions:
                        return
                    st.sessions.remove(sess)
        st.record(kind, t, lat, cls, status, detail)
    except Exception as e:  # transport: reset, refused, timeout
        conn.close()
        st.record(kind, t, time.monotonic() - start, "error", 0, f"{type(e).__name__}: {e}")


def loader(st, gw, rate, seed, sessions):
    """Requests at `rate` per second: browser-session ones (`sessions`) or all the others, so
    that one kind's slow answers (a session while Redis is down) do not hold back the rest."""
    rnd = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w) if (k == "session") == sessions]
    conn = Conn("127.0.0.1", gw)
    interval = 1.0 / rate
    next_at = time.monotonic() + rnd.random() * interval
    while not st.stop.is_set():
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        if time.monotonic() - next_at > 1.0:  # far behind (the machine stalled): do not burst
            next_at = time.monotonic()
        one_request(st, conn, gw, rnd.choice(kinds))
    conn.close()


# ---------------------------------------------------------------------------------------------
# WebSocket tunnels
# ---------------------------------------------------------------------------------------------
def ws_send(s, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    s.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf


def ws_recv(s):
    b1, b2 = recv_exact(s, 2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(s, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(s, 8))
    return b1 & 0x0F, recv_exact(s, n)


def tunnel(st, gw, i):
    seq = 0
    while not st.stop.is_set():
        base = st.token()
        if base is None:
            st.stop.wait(0.2)
            continue
        t = time.time()
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", gw), timeout=5)
            key = b64url(os.urandom(16)) + "=="
            s.sendall((f"GET /ws/t{i} HTTP/1.1\r\nHost: 127.0.0.1:{gw}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Authorization: Bearer {base[0]}\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise EOFError("closed during the upgrade")
                head += chunk
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                published = st.published
                if published and base[1] not in published and status == 401:
                    st.record("ws_upgrade", t, None, "retired", status)
                else:
                    st.record("ws_upgrade", t, None, classify_status("ws", status), status,
                              head.split(b"\r\n\r\n", 1)[1][:120].decode("utf-8", "replace"))
                s.close()
                st.stop.wait(0.5)
                continue
            st.totals["ws_connects"] += 1
            while not st.stop.is_set():
                seq += 1
                msg = f"tunnel {i} message {seq}".encode()
                ws_send(s, msg)
                op, data = ws_recv(s)
                if op != 1 or data != msg:
                    raise ValueError(f"echo {data[:60]!r} for {msg!r}")
                st.echo(time.time())
                st.stop.wait(1.0)
            try:
                s.sendall(b"\x88\x82" + os.urandom(4)[:4] + b"\x03\xe8")
            except OSError:
                pass
        except Exception as e:
            st.record("ws", time.time(), None, "tunnel_lost", 0, f"tunnel {i}: {type(e).__name__}: {e}")
            st.stop.wait(0.5)
        finally:
            if s is not None:
                s.close()


# ---------------------------------------------------------------------------------------------
# Sampling and output
# ---------------------------------------------------------------------------------------------
def quantile(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def proc_sample(pid):
    rss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0, 0
    return rss, fds


def sampler(st, pid, out):
    f = open(os.path.join(out, "samples.csv"), "w", newline="")
    w = csv.writer(f)
    w.writerow(["t", "epoch", "requests", "p50_ms", "p99_ms", "anomalies", "ws_echoes", "rss_kib", "fds",
                "sessions", "pool"])
    sec = 0
    while True:
        target = st.t0 + sec + 1
        delay = target - time.time()
        if delay > 0 and st.stop.wait(delay):
            break
        rss, fds = proc_sample(pid)
        with st.lock:
            b = st.buckets.get(sec, {"n": 0, "lat": [], "anom": 0, "echo": 0})
            sessions, pool = len(st.sessions), len(st.pool)
        w.writerow([sec + 1, f"{target:.3f}", b["n"], f"{quantile(b['lat'], 0.5) * 1000:.2f}",
                    f"{quantile(b['lat'], 0.99) * 1000:.2f}", b["anom"], b["echo"], rss, fds, sessions, pool])
        f.flush()
        sec += 1
    f.close()


def write_anomalies(st, out):
    with st.lock:
        rows = list(st.anomalies)
    with open(os.path.join(out, "anomalies.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "kind", "class", "status", "detail"])
        w.writerows(rows)


def run(args):
    global POOL_MAX_AGE
    POOL_MAX_AGE = args.token_age
    st = State(args)
    st.read_published()
    idp = urllib.parse.urlsplit(args.idp)
    st.expired = expired_tokens(args.idp, 20)
    threads = []

    def start(fn, *a):
        th = threading.Thread(target=fn, args=(st, *a), daemon=True)
        th.start()
        threads.append(th)

    for _ in range(4):
        start(minter, idp.hostname, idp.port)
    start(signer, args.gw)
    # Ready: the pool full and a few sessions (bounded).
    deadline = time.time() + 180
    while time.time() < deadline:
        with st.lock:
            if len(st.pool) >= POOL_SIZE and len(st.sessions) >= 4:
                break
        time.sleep(0.1)
    else:
        print(f"driver: not ready after 180 s (pool {len(st.pool)}, sessions {len(st.sessions)})", file=sys.stderr)
        st.stop.set()
        sys.exit(1)
    st.t0 = time.time()
    with st.lock:
        st.buckets.clear()
        st.anomalies.clear()
        st.per_kind.clear()
    with open(os.path.join(args.out, "ready"), "w") as f:
        f.write(f"{st.t0:.3f}\n")
    print(f"driver: ready: {len(st.pool)} tokens, {len(st.sessions)} sessions; load for {args.duration} s",
          file=sys.stderr)
    start(sampler, args.pid, args.out)
    for i in range(WS_TUNNELS):
        start(tunnel, args.gw, i)
    session_share = sum(w for k, w in MIX if k == "session") / sum(w for _, w in MIX)
    for i in range(LOAD_THREADS):
        sessions = i < SESSION_THREADS
        share = session_share / SESSION_THREADS if sessions else (1 - session_share) / (LOAD_THREADS - SESSION_THREADS)
        start(loader, args.gw, args.rate * share, i, sessions)
    end = st.t0 + args.duration
    last_keys = 0
    while time.time() < end:
        time.sleep(0.25)
        st.read_published()
        if time.time() - last_keys > 10:
            write_anomalies(st, args.out)
            last_keys = time.time()
    st.stop.set()
    for th in threads:
        th.join(timeout=TIMEOUT + 2)
    write_anomalies(st, args.out)
    with st.lock:
        lat = st.latencies
        summary = dict(st.totals)
        summary.update(t0=st.t0, duration=args.duration, rate=args.rate,
                       p50_ms=quantile(lat, 0.5) * 1000, p99_ms=quantile(lat, 0.99) * 1000,
                       p999_ms=quantile(lat, 0.999) * 1000, max_ms=max(lat) * 1000 if lat else 0,
                       per_kind=st.per_kind, pool=len(st.pool))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"driver: done: {summary['answers']} answers, {summary['ws_echoes']} echoes", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Slow clients
# ---------------------------------------------------------------------------------------------
def slow(args):
    socks = []
    t0 = time.monotonic()
    for _ in range(args.count):
        try:
            s = socket.create_connection(("127.0.0.1", args.gw), timeout=5)
            s.setblocking(False)
            s.send(b"GET /api/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        except OSError:
            pass
    opened = len(socks)
    cut = {}
    deadline = t0 + args.limit + 5
    import select
    while len(cut) < opened and time.monotonic() < deadline:
        live = [s for s in socks if s not in cut]
        r, _, _ = select.select(live, [], [], 1.0)
        now = time.monotonic() - t0
        for s in r:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 408"):
                cut[s] = now
        # One more header byte from every live connection, a second apart.
        for s in live:
            if s in cut:
                continue
            try:
                s.send(b"X")
            except OSError:
                cut[s] = time.monotonic() - t0
    for s in socks:
        s.close()
    times = sorted(cut.values())
    doc = {"count": args.count, "opened": opened, "cut": len(cut), "not_cut": opened - len(cut),
           "first_cut_s": round(times[0], 2) if times else None, "last_cut_s": round(times[-1], 2) if times else None,
           "limit_s": args.limit, "late": sum(1 for t in times if t > args.limit + 2)}
    with open(args.out, "a") as f:
        f.write(json.dumps(doc) + "\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--gw", type=int, required=True)
    r.add_argument("--idp", required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rate", type=float, default=300)
    r.add_argument("--token-age", type=float, default=POOL_MAX_AGE, help="replace pool tokens this old (s)")
    s = sub.add_parser("slow")
    s.add_argument("--gw", type=int, required=True)
    s.add_argument("--count", type=int, default=200)
    s.add_argument("--limit", type=float, required=True)
    s.add_argument("--out", required=True)
    args = p.parse_args()
    run(args) if args.cmd == "run" else slow(args)


if __name__ == "__main__":
    main()
