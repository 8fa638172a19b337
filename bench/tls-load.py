#!/usr/bin/env python3
"""New-TLS-connection-per-request HTTP/1.1 load generator (used by bench/run-tls).

Each request opens a new TCP connection, does a full TLS handshake with the given SNI,
sends `GET PATH HTTP/1.1` with `Connection: close`, reads the response to EOF and checks
its status line and body size. It prints one JSON object on stdout:

  {"requests": N, "rps": R, "p50_ms": .., "p90_ms": .., "p99_ms": .., "max_ms": ..,
   "errors": N, "bad_responses": N, "resumed": N, "protocols": {"TLSv1.3 TLS_AES_256_GCM_SHA384": N}, "first_error": ".."}

Latency is measured per request from just before connect() until the response has been read
to EOF, so it includes the TCP and TLS handshakes (wrk's latency starts after the handshake).

Why not wrk or h2load: both keep the TLS session of a connection and offer it again on the
next one (wrk calls SSL_clear() and reuses the SSL object; h2load resumes too; an nginx
logging `$ssl_session_reused` shows "r" for nearly every request from either), so a server
that allows resumption would be measured on abbreviated handshakes. wrk also takes the SNI
from the URL host only, and h2load 1.52 (Debian 12) has no --sni, reports no percentiles, and
in timed mode (-D) with `Connection: close` keeps reconnecting after the run has ended.

No resumption here: every connection gets a new ssl.SSLSocket (a new OpenSSL SSL object)
from a context that is never given a `session=`, so the ClientHello offers no cached session
ID, ticket or PSK, and every handshake is a full one; OP_NO_TICKET also keeps TLS 1.2
servers from issuing tickets. `SSLSocket.session_reused` is checked on every connection and
counted as "resumed" (it must stay 0).

Load comes from PROCS worker processes with CONNS/PROCS threads each, each thread one
connection at a time (blocking sockets; OpenSSL and socket calls release the GIL).
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import socket
import ssl
import sys
import threading
import time


def worker(args, nthreads, start_at, stop_at, queue):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the handshake signature is still checked by TLS itself
    ctx.options |= ssl.OP_NO_TICKET
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.sni}\r\nConnection: close\r\n\r\n"
    ).encode()
    expect_status = b"HTTP/1.1 200 "
    lock = threading.Lock()
    totals = {"lat": [], "errors": 0, "bad": 0, "resumed": 0, "protocols": {}, "first_error": ""}

    def run():
        lat = []
        errors = bad = resumed = 0
        protocols = {}
        first_error = ""
        now = time.time()
        if start_at > now:
            time.sleep(start_at - now)
        while True:
            t0 = time.perf_counter()
            if time.time() >= stop_at:
                break
            raw = None
            try:
                raw = socket.create_connection((args.host, args.port), timeout=args.timeout)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname=args.sni) as s:
                    s.sendall(request)
                    chunks = []
                    while True:
                        b = s.recv(65536)
                        if not b:
                            break
                        chunks.append(b)
                    if s.session_reused:
                        resumed += 1
                    v = f"{s.version()} {s.cipher()[0]}"
                    protocols[v] = protocols.get(v, 0) + 1
                t1 = time.perf_counter()
                data = b"".join(chunks)
                _, _, body = data.partition(b"\r\n\r\n")
                if not data.startswith(expect_status) or (
                    args.expect_bytes >= 0 and len(body) != args.expect_bytes
                ):
                    bad += 1
                    if not first_error:
                        first_error = "bad response: " + repr(data[:80])
                    continue
                if time.time() <= stop_at:
                    lat.append(t1 - t0)
            except (OSError, ssl.SSLError) as e:
                errors += 1
                if not first_error:
                    first_error = f"{type(e).__name__}: {e}"
                time.sleep(0.001)
            finally:
                if raw is not None:
                    raw.close()  # no-op once the TLS socket has taken it over and closed
        with lock:
            totals["lat"].extend(lat)
            totals["errors"] += errors
            totals["bad"] += bad
            totals["resumed"] += resumed
            for k, n in protocols.items():
                totals["protocols"][k] = totals["protocols"].get(k, 0) + n
            if first_error and not totals["first_error"]:
                totals["first_error"] = first_error

    threads = [threading.Thread(target=run) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(totals)


def pct(sorted_vals, p):  # nearest rank
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", required=True, help="server name sent in the ClientHello and Host header")
    ap.add_argument("--path", default="/")
    ap.add_argument("--conns", type=int, default=50, help="concurrent connections (threads in all)")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=5.0, help="socket timeout, seconds")
    ap.add_argument("--expect-bytes", type=int, default=-1, help="expected body size (-1: any)")
    args = ap.parse_args()
    procs = max(1, min(args.procs, args.conns))
    queue = mp.Queue()
    start_at = time.time() + 0.5  # let every process and thread start before the clock runs
    stop_at = start_at + args.duration
    ps = []
    for i in range(procs):
        n = args.conns // procs + (1 if i < args.conns % procs else 0)
        p = mp.Process(target=worker, args=(args, n, start_at, stop_at, queue))
        p.start()
        ps.append(p)
    results = [queue.get() for _ in ps]
    for p in ps:
        p.join()
    lat = sorted(x for r in results for x in r["lat"])
    protocols = {}
    for r in results:
        for k, n in r["protocols"].items():
            protocols[k] = protocols.get(k, 0) + n
    ms = lambda v: None if v is None else round(v * 1000.0, 3)
    out = {
        "requests": len(lat),
        "rps": round(len(lat) / args.duration, 1),
        "p50_ms": ms(pct(lat, 50)),
        "p90_ms": ms(pct(lat, 90)),
        "p99_ms": ms(pct(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "errors": sum(r["errors"] for r in results),
        "bad_responses": sum(r["bad"] for r in results),
        "resumed": sum(r["resumed"] for r in results),
        "protocols": protocols,
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
    }
    print(json.dumps(out))
    return 0 if out["requests"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
