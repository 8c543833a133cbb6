#!/usr/bin/env python3
"""Load clients for tests/bench/ that wrk cannot be (docs/performance.md).

  benchclient.py requests --form device|region|moved|nearest [--xff A,B,...]
                          [--close] --out FILE
      Writes the raw requests of a request form, NUL-separated, as
      bootstrap-wrk.lua makes them (1000 devices in turn); --close adds
      "Connection: close". tlsload and the subcommands below read them.

  benchclient.py count --connect 127.0.0.1:PORT --requests FILE --count N
                       [--connections C] [--timeout S]
      Makes exactly N keep-alive requests over C connections (one thread
      each), the answers read by http.client; fails unless all are 200.

  benchclient.py hold --connect 127.0.0.1:PORT --requests FILE --duration S
                      [--idle N] [--slowloris N] [--slow-body N] [--interval S]
      Holds connections open for S seconds: N idle ones that each made one
      request first (a device that keeps its connection); N slowloris ones
      that send their request one byte every --interval seconds (default 2);
      N slow-body ones that send the headers at once and then the body one
      byte every --interval seconds. Slow connections that the server closes
      are opened again, as an attacker would. Prints "ready ..." once all are
      open, then "hold-result key=value ..." at the end (or on SIGTERM), and
      closes every connection with a reset so that none lingers in TIME_WAIT.

Python 3 standard library only; 127.0.0.1 only.
"""

import argparse
import errno
import heapq
import http.client
import random
import resource
import selectors
import signal
import socket
import struct
import sys
import threading
import time

DEVICES = 1000
PRODUCT = "a1BenchPK"
ACCEPT = "text/xml,text/javascript,text/html,application/json"


def make_requests(form, xff, close):
    """The raw requests of a form, as bootstrap-wrk.lua formats them."""
    conn = "Connection: close\r\n" if close else ""
    if form == "region":
        return [("GET /auth/bootstrap/regionId/eu-central-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Accept: %s\r\n%s\r\n" % (ACCEPT, conn)).encode()]
    prefix = {"device": "bench", "moved": "moved", "nearest": "near"}[form]
    reqs = []
    for i in range(DEVICES):
        name = "%s-%04d" % (prefix, i)
        body = "productKey=%s&deviceName=%s&clientId=%s.%s&resources=mqtt" % (PRODUCT, name, PRODUCT, name)
        extra = ""
        if form == "nearest":
            # A device keeps its address (see bootstrap-wrk.lua).
            extra = "X-Forwarded-For: %s\r\n" % xff[i % len(xff)]
        reqs.append(("POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded;charset=utf-8\r\n"
                     "Accept: %s\r\n%sContent-Length: %d\r\n%s\r\n%s"
                     % (ACCEPT, extra, len(body), conn, body)).encode())
    return reqs


def read_requests(path):
    with open(path, "rb") as f:
        reqs = [r for r in f.read().split(b"\0") if r]
    if not reqs:
        sys.exit("benchclient: no requests in %s" % path)
    return reqs


def address(s):
    host, _, port = s.rpartition(":")
    if host != "127.0.0.1" or not port.isdigit():
        raise argparse.ArgumentTypeError("want 127.0.0.1:PORT, got %r" % s)
    return (host, int(port))


def cmd_requests(a):
    reqs = make_requests(a.form, [x for x in a.xff.split(",") if x], a.close)
    with open(a.out, "wb") as f:
        f.write(b"\0".join(reqs))


def cmd_count(a):
    reqs = read_requests(a.requests)
    stats = {"ok": 0, "non200": 0, "errors": 0, "reconnects": 0}
    lock = threading.Lock()

    def worker(i, n):
        ok = non200 = errors = reconnects = 0
        sock = None
        k = i * 499
        while n > 0:
            req = reqs[k % len(reqs)]
            k += 1
            try:
                if sock is None:
                    sock = socket.create_connection(a.connect, timeout=a.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(req)
                resp = http.client.HTTPResponse(sock, method=req.split(b" ", 1)[0].decode())
                resp.begin()
                resp.read()
                if resp.status == 200:
                    ok += 1
                else:
                    non200 += 1
                if resp.will_close:
                    sock.close()
                    sock = None
                    reconnects += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                if sock is not None:
                    sock.close()
                sock = None
                if errors > 100:
                    break
            n -= 1
        if sock is not None:
            sock.close()
        with lock:
            stats["ok"] += ok
            stats["non200"] += non200
            stats["errors"] += errors
            stats["reconnects"] += reconnects

    t0 = time.monotonic()
    shares = [a.count // a.connections + (i < a.count % a.connections) for i in range(a.connections)]
    threads = [threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(shares) if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("count-result requests=%d ok=%d non200=%d errors=%d reconnects=%d duration_us=%d" % (
        a.count, stats["ok"], stats["non200"], stats["errors"], stats["reconnects"],
        (time.monotonic() - t0) * 1e6), flush=True)
    return 0 if stats["ok"] == a.count else 1


def reset_close(sock):
    """Close with RST: the connection leaves no TIME_WAIT on either side."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Slow:
    """One slow connection: trickles data[pos:] a byte at a time."""

    def __init__(self, kind, data, start):
        self.kind = kind
        self.data = data
        self.pos = start  # bytes sent at once (the headers, for slow-body)
        self.sock = None
        self.connected = False
        self.answer = b""
        self.gen = 0


def cmd_hold(a):
    reqs = read_requests(a.requests)
    need = a.idle + a.slowloris + a.slow_body + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit("benchclient: %d connections need a file-descriptor limit of %d; the hard limit is %d "
                     "(ulimit -n)" % (need - 64, need, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + a.duration
    sel = selectors.DefaultSelector()
    counts = {"idle_open": 0, "idle_errors": 0, "idle_closed": 0, "slow_opened": 0, "slow_closed": 0,
              "slow_completed": 0, "connect_errors": 0, "bytes_trickled": 0}
    statuses = {}

    # Idle: one request each, made in turn (so no accept queue overflows), then held.
    idle = []
    for i in range(a.idle):
        if stop or time.monotonic() >= deadline:
            break
        req = reqs[i % len(reqs)]
        sock = None
        try:
            sock = socket.create_connection(a.connect, timeout=5)
            sock.sendall(req)
            resp = http.client.HTTPResponse(sock, method=req.split(b" ", 1)[0].decode())
            resp.begin()
            resp.read()
            if resp.status != 200 or resp.will_close:
                raise OSError("answer %d%s" % (resp.status, ", closed" if resp.will_close else ""))
        except (OSError, http.client.HTTPException):
            counts["idle_errors"] += 1
            if sock is not None:
                reset_close(sock)
            continue
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, ("idle", sock))
        idle.append(sock)
    counts["idle_open"] = len(idle)

    # Slow ones: connected without blocking, at most 256 connects pending.
    slows = []
    for req in (reqs[i % len(reqs)] for i in range(a.slowloris)):
        slows.append(Slow("slowloris", req, 0))
    for i in range(a.slow_body):
        req = reqs[i % len(reqs)]
        head = req.find(b"\r\n\r\n") + 4
        if head < 4 or head >= len(req):
            sys.exit("benchclient: --slow-body needs requests with a body")
        slows.append(Slow("slow_body", req, head))
    waiting = list(range(len(slows)))  # not connected yet
    pending = 0
    timers = []  # (when, index, generation): the next byte of a slow connection

    def connect(i):
        nonlocal pending
        s = slows[i]
        s.gen += 1
        s.answer = b""
        s.pos = s.data.find(b"\r\n\r\n") + 4 if s.kind == "slow_body" else 0
        s.connected = False
        s.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.sock.setblocking(False)
        err = s.sock.connect_ex(a.connect)
        if err not in (0, errno.EINPROGRESS):
            counts["connect_errors"] += 1
            s.sock.close()
            s.sock = None
            waiting.append(i)
            return
        pending += 1
        sel.register(s.sock, selectors.EVENT_WRITE, ("slow", i))

    def drop(i, reconnect):
        nonlocal pending
        s = slows[i]
        if s.sock is None:
            return
        if not s.connected:
            pending -= 1
        sel.unregister(s.sock)
        reset_close(s.sock)
        s.sock = None
        s.gen += 1
        if reconnect:
            waiting.append(i)

    ready_said = False
    interval = a.interval
    while not stop:
        now = time.monotonic()
        if now >= deadline:
            break
        while waiting and pending < 256 and not stop:
            connect(waiting.pop())
        if not ready_said and not waiting and pending == 0:
            print("ready idle=%d slowloris=%d slow_body=%d idle_errors=%d" % (
                len(idle), a.slowloris, a.slow_body, counts["idle_errors"]), flush=True)
            ready_said = True
        timeout = 0.2
        if timers:
            timeout = max(0.0, min(timeout, timers[0][0] - now))
        for key, ev in sel.select(timeout):
            what, ref = key.data
            if what == "idle":
                try:
                    data = ref.recv(4096)
                except OSError:
                    data = b""
                if not data:  # the server closed an idle connection
                    counts["idle_closed"] += 1
                    sel.unregister(ref)
                    reset_close(ref)
                    idle.remove(ref)
                continue
            s = slows[ref]
            if ev & selectors.EVENT_WRITE and not s.connected:
                err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    counts["connect_errors"] += 1
                    drop(ref, True)
                    continue
                s.connected = True
                pending -= 1
                counts["slow_opened"] += 1
                try:
                    if s.pos:
                        s.sock.sendall(s.data[:s.pos])  # the headers of a slow body
                except OSError:
                    counts["slow_closed"] += 1
                    drop(ref, True)
                    continue
                sel.modify(s.sock, selectors.EVENT_READ, ("slow", ref))
                # Spread the first bytes over an interval, so they flow evenly.
                heapq.heappush(timers, (now + random.uniform(0, interval), ref, s.gen))
                continue
            try:
                data = s.sock.recv(4096)
            except OSError:
                data = b""
            if data:
                s.answer += data[:64]
                continue
            # Closed by the server: with an answer (408, 400...) or without.
            status = "none"
            if s.answer.startswith(b"HTTP/1.") and len(s.answer) >= 12:
                status = s.answer[9:12].decode(errors="replace")
            statuses[status] = statuses.get(status, 0) + 1
            counts["slow_closed"] += 1
            drop(ref, True)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, i, gen = heapq.heappop(timers)
            s = slows[i]
            if gen != s.gen or s.sock is None:
                continue
            if s.pos >= len(s.data):
                # All sent: the server answers; the close (or not) ends it.
                counts["slow_completed"] += 1
                drop(i, True)
                continue
            try:
                s.sock.send(s.data[s.pos:s.pos + 1])
                s.pos += 1
                counts["bytes_trickled"] += 1
            except BlockingIOError:
                pass
            except OSError:
                counts["slow_closed"] += 1
                statuses["reset"] = statuses.get("reset", 0) + 1
                drop(i, True)
                continue
            heapq.heappush(timers, (now + interval, i, s.gen))

    for sock in idle:
        reset_close(sock)
    for i in range(len(slows)):
        if slows[i].sock is not None:
            drop(i, False)
    print("hold-result %s statuses=%s ready=%d" % (
        " ".join("%s=%d" % kv for kv in counts.items()),
        ",".join("%s:%d" % kv for kv in sorted(statuses.items())) or "-", int(ready_said)), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("requests")
    r.add_argument("--form", choices=("device", "region", "moved", "nearest"), required=True)
    r.add_argument("--xff", default="")
    r.add_argument("--close", action="store_true")
    r.add_argument("--out", required=True)
    c = sub.add_parser("count")
    c.add_argument("--connect", type=address, required=True)
    c.add_argument("--requests", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--connections", type=int, default=1)
    c.add_argument("--timeout", type=float, default=60)
    h = sub.add_parser("hold")
    h.add_argument("--connect", type=address, required=True)
    h.add_argument("--requests", required=True)
    h.add_argument("--duration", type=float, required=True)
    h.add_argument("--idle", type=int, default=0)
    h.add_argument("--slowloris", type=int, default=0)
    h.add_argument("--slow-body", type=int, default=0)
    h.add_argument("--interval", type=float, default=2.0)
    a = p.parse_args()
    if a.cmd == "requests":
        if a.form == "nearest" and not a.xff:
            p.error("--form nearest needs --xff")
        return cmd_requests(a)
    if a.cmd == "count":
        if a.count < 1 or a.connections < 1:
            p.error("--count and --connections must be positive")
        return cmd_count(a)
    return cmd_hold(a)


if __name__ == "__main__":
    sys.exit(main())
