#!/usr/bin/env python3
"""Open N idle TCP connections to a loopback port, hold them, then exit.

Used by bench/run-tcp and bench/run to measure a proxy's memory per idle connection.
Each socket is bound to a source address 127.0.0.(2 + i % SOURCES) (with
IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port at connect time per
4-tuple) to stay clear of ephemeral-port exhaustion.

With --tls-sni NAME each connection first sends a TLS ClientHello for NAME (one
made by Python's ssl module, the same bytes on every connection) and then idles:
the first flight of a TLS client, enough for a proxy that routes by SNI to pick
its route and connect the backend, whose answer (ServerHello .. Finished) is
left unread. Without it the connections never send a byte.

Bounded on purpose: --count <= 50000, --hold <= 600 s, connecting gives up
after --connect-timeout seconds. Loopback (127.0.0.0/8) targets only.

Prints progress on stderr and, once every socket is connected, one line on
stdout and in --ready-file:  "ready OPEN CLOSED"  (CLOSED = sockets the peer
had already closed one second after the last connect); with --tls-sni
"ready OPEN CLOSED ANSWERED" (ANSWERED = sockets with bytes from the server
waiting, i.e. the backend's TLS answer came through the proxy), once every
socket is answered or closed (at most --settle seconds later). Exits 0 after --hold
seconds or on SIGTERM/SIGINT (the kernel closes the sockets), 1 on error.
"""
import argparse
import ipaddress
import os
import resource
import select
import signal
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def client_hello(server_name: str) -> bytes:
    """The first flight of a TLS client for server_name (a ClientHello record)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=60.0, help="seconds to hold (max 600)")
    ap.add_argument("--connect-timeout", type=float, default=60.0,
                    help="give up if not all connected after this many seconds")
    ap.add_argument("--sources", type=int, default=200,
                    help="spread over source addresses 127.0.0.2 .. 127.0.0.(1+SOURCES)")
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--tls-sni", default=None,
                    help="send a TLS ClientHello for this name on every connection, then idle")
    ap.add_argument("--settle", type=float, default=60.0,
                    help="with --tls-sni: wait up to this many seconds for every answer (max 300)")
    args = ap.parse_args()

    if not ipaddress.ip_address(args.host) in ipaddress.ip_network("127.0.0.0/8"):
        print("hold-conns: refusing a non-loopback host", file=sys.stderr)
        return 2
    if not (1 <= args.count <= 50000) or not (0 < args.hold <= 600):
        print("hold-conns: --count must be 1..50000 and --hold 0..600", file=sys.stderr)
        return 2
    if not (0 <= args.settle <= 300):
        print("hold-conns: --settle must be 0..300", file=sys.stderr)
        return 2
    if not (1 <= args.sources <= 250):
        print("hold-conns: --sources must be 1..250", file=sys.stderr)
        return 2

    stop = {"flag": False}

    def on_signal(_sig, _frm):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < want:
            print(f"hold-conns: RLIMIT_NOFILE hard limit {hard} < {want}", file=sys.stderr)
            return 1

    hello = client_hello(args.tls_sni) if args.tls_sni else b""

    start = time.monotonic()
    deadline = start + args.connect_timeout
    socks = []
    try:
        for i in range(args.count):
            if stop["flag"]:
                print("hold-conns: interrupted while connecting", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"hold-conns: only {len(socks)}/{args.count} connected "
                      f"after {args.connect_timeout}s", file=sys.stderr)
                return 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((f"127.0.0.{2 + i % args.sources}", 0))
            s.settimeout(5.0)
            s.connect((args.host, args.port))
            if hello:
                s.sendall(hello)
            socks.append(s)
            if (i + 1) % 2000 == 0:
                print(f"hold-conns: {i + 1} connected", file=sys.stderr)
    except OSError as e:
        print(f"hold-conns: connect #{len(socks) + 1} failed: {e}", file=sys.stderr)
        return 1

    elapsed = time.monotonic() - start
    time.sleep(1.0)
    poller = select.poll()
    if hello:
        # The server's answer makes a socket readable; a close shows as RDHUP/HUP/ERR. Ready
        # only once every socket has its answer or is closed (or after --settle seconds), so
        # nothing is still in flight through the proxy when its memory is read.
        for s in socks:
            poller.register(s.fileno(), select.POLLIN | select.POLLRDHUP | select.POLLHUP
                            | select.POLLERR)
        gone = select.POLLRDHUP | select.POLLHUP | select.POLLERR
        settle_end = time.monotonic() + args.settle
        while True:
            events = poller.poll(0)
            closed = sum(1 for _, ev in events if ev & gone)
            answered = sum(1 for _, ev in events if ev & select.POLLIN and not ev & gone)
            if closed + answered >= len(socks) or time.monotonic() >= settle_end or stop["flag"]:
                break
            time.sleep(0.2)
        line = f"ready {len(socks) - closed} {closed} {answered}"
        detail = f"; {answered} got the server's TLS answer"
    else:
        # A socket the proxy already closed (or reset) polls readable/hung-up.
        for s in socks:
            poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        closed = len(poller.poll(0))
        line = f"ready {len(socks) - closed} {closed}"
        detail = ""
    print(f"hold-conns: {len(socks)} connected in {elapsed:.2f}s; {closed} already closed by peer"
          f"{detail}", file=sys.stderr)
    print(line, flush=True)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, args.ready_file)

    end = time.monotonic() + args.hold
    while not stop["flag"] and time.monotonic() < end:
        time.sleep(0.2)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
