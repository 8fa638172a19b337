#!/usr/bin/env python3
"""Open N idle TCP connections to a loopback port, hold them, then exit.

Used by bench/run-tcp to measure a proxy's memory per idle connection.
Each socket is bound to a source address 127.0.0.(2 + i % SOURCES) (with
IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port at connect time per
4-tuple) to stay clear of ephemeral-port exhaustion.

Bounded on purpose: --count <= 50000, --hold <= 600 s, connecting gives up
after --connect-timeout seconds. Loopback (127.0.0.0/8) targets only.

Prints progress on stderr and, once every socket is connected, one line on
stdout and in --ready-file:  "ready OPEN CLOSED"  (CLOSED = sockets the peer
had already closed one second after the last connect). Exits 0 after --hold
seconds or on SIGTERM/SIGINT (the kernel closes the sockets), 1 on error.
"""
import argparse
import ipaddress
import os
import resource
import select
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


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
    args = ap.parse_args()

    if not ipaddress.ip_address(args.host) in ipaddress.ip_network("127.0.0.0/8"):
        print("hold-conns: refusing a non-loopback host", file=sys.stderr)
        return 2
    if not (1 <= args.count <= 50000) or not (0 < args.hold <= 600):
        print("hold-conns: --count must be 1..50000 and --hold 0..600", file=sys.stderr)
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
            socks.append(s)
            if (i + 1) % 2000 == 0:
                print(f"hold-conns: {i + 1} connected", file=sys.stderr)
    except OSError as e:
        print(f"hold-conns: connect #{len(socks) + 1} failed: {e}", file=sys.stderr)
        return 1

    elapsed = time.monotonic() - start
    time.sleep(1.0)
    # A socket the proxy already closed (or reset) polls readable/hung-up.
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = len(poller.poll(0))
    line = f"ready {len(socks) - closed} {closed}"
    print(f"hold-conns: {len(socks)} connected in {elapsed:.2f}s; {closed} already closed by peer",
          file=sys.stderr)
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
