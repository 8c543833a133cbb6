"""Integration harness for bootstrapd.

Each Harness owns a temporary directory with its own redis-server (redis.conf
written there), self-signed certificates, regions.json and config.json, and a
bootstrapd started on free loopback ports. Everything waits with deadlines,
never with a bare sleep; everything started is killed in all cases (close(),
atexit, SIGTERM from meson). Python 3 standard library only.
"""

import atexit
import copy
import csv
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import quote

TOKEN = "test-token"
REDIS_TIMEOUT_MS = 300
DRAIN_BOUND_S = 10  # SPEC §2: default drain time
START_DEADLINE_S = 10
SOCKET_TIMEOUT_S = 5

# Every secret the service hands out, and every secret it was given, is
# written to $BOOTSTRAPD_TEST_LOG_DIR/secrets.txt, and every log the daemons
# and brokers wrote is copied there: test_secrets_in_logs.py, last in the
# suite, looks for each secret in each log.
_SECRET_JSON = re.compile(rb'"(deviceSecret|productSecret|iotToken|secret|password|token|psk)"\s*:\s*"([^"\\]{12,})"')
_secrets_noted = set()


def note_secret(value):
    """Records VALUE (str or bytes) as a secret no log may contain."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    d = os.environ.get("BOOTSTRAPD_TEST_LOG_DIR")
    if not d or not value or value in _secrets_noted:
        return
    _secrets_noted.add(value)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "secrets.txt"), "a") as f:
        f.write(value + "\n")


def _note_body_secrets(body):
    for m in _SECRET_JSON.finditer(body):
        note_secret(m.group(2))
    head, _, rest = body.partition(b"\n")
    cols = head.strip().split(b",")
    if b"deviceSecret" in cols:
        i = cols.index(b"deviceSecret")
        for line in rest.splitlines():
            fields = line.strip().split(b",")
            if len(fields) > i and len(fields[i]) >= 12:
                note_secret(fields[i])


def _keep_logs(h):
    """Copies H's daemon and broker logs where test_secrets_in_logs.py reads them."""
    d = os.environ.get("BOOTSTRAPD_TEST_LOG_DIR")
    if not d:
        return
    os.makedirs(d, exist_ok=True)
    try:
        names = os.listdir(h.dir)
    except OSError:
        return
    stem = "%s-%d-%s" % (os.path.basename(sys.argv[0]).rsplit(".", 1)[0], os.getpid(), os.path.basename(h.dir))
    for name in names:
        if name.endswith(".log") and (name.startswith("bootstrapd") or name.startswith("mosquitto")):
            shutil.copy(os.path.join(h.dir, name), os.path.join(d, "%s-%s" % (stem, name)))


SDK_ACCEPT = "text/xml,text/javascript,text/html,application/json"
SDK_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=utf-8"

_processes = []  # every Popen any harness started, killed at exit
_harnesses = []  # for printing logs on failure
_cert_dir = None


def daemon_path():
    path = os.environ.get("BOOTSTRAPD")
    if not path:
        root = os.environ.get("BOOTSTRAPD_SOURCE_ROOT",
                              os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        path = os.path.join(root, "build", "bootstrapd")
    return os.path.abspath(path)


def source_root():
    root = os.environ.get("BOOTSTRAPD_SOURCE_ROOT")
    if root:
        return root
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def daemon_env(extra=None):
    """The environment for the daemon: ours without BOOTSTRAPD_* (meson sets
    BOOTSTRAPD and BOOTSTRAPD_SOURCE_ROOT for us, and BOOTSTRAPD_<KEY> is the
    daemon's configuration override namespace), plus EXTRA."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTSTRAPD")}
    if extra:
        env.update(extra)
    return env


def _kill(p):
    """Kills P (a Popen, may be None) and reaps it, bounded in time."""
    if p is None or p.poll() is not None:
        return
    try:
        p.kill()
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _kill_all():
    for p in _processes:
        _kill(p)
    for h in list(_harnesses):
        h.close()
    if _cert_dir:
        shutil.rmtree(_cert_dir, ignore_errors=True)


atexit.register(_kill_all)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    """True while something accepts connections on 127.0.0.1:PORT."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.05):
    """Polls PRED until it returns a true value (returned) or TIMEOUT passes
    (TimeoutError naming WHAT)."""
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


_keys = {}


def key(kind, *args):
    """The Redis key of KIND for ARGS, as the daemon names it
    (`bootstrapd --key`, docs/key-schema.md): the tests never build one."""
    k = (kind,) + tuple(str(a) for a in args)
    if k not in _keys:
        r = subprocess.run([daemon_path(), "--key", *k], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        if r.returncode != 0:
            raise AssertionError("bootstrapd --key %s: %s" % (" ".join(k), r.stderr.decode(errors="replace")))
        _keys[k] = r.stdout.decode().strip()
    return _keys[k]


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r


def certs():
    """Generates (once per process) self-signed ECDSA P-256 and RSA-2048 pairs
    with distinct subjects, and ca.pem holding both certificates. Returns the
    folder."""
    global _cert_dir
    if _cert_dir:
        return _cert_dir
    d = tempfile.mkdtemp(prefix="bootstrapd-certs-")
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ec.key", "-out", "ec.crt", "-days", "3",
            "-subj", "/CN=bootstrapd-test-ec", "-addext", san, cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key",
            "-out", "rsa.crt", "-days", "3", "-subj", "/CN=bootstrapd-test-rsa",
            "-addext", san, cwd=d)
    with open(os.path.join(d, "ca.pem"), "w") as out:
        for name in ("ec.crt", "rsa.crt"):
            with open(os.path.join(d, name)) as f:
                out.write(f.read())
    _cert_dir = d
    return d


def default_regions():
    return {"regions": [
        {"id": "cn-shanghai", "name": "China East 2 (Shanghai)",
         "latitude": 31.2304, "longitude": 121.4737,
         "instances": [
             {"id": "iot-cn-sh-public", "default": True,
              "endpoints": {
                  "mqtt": {"host": "${productKey}.iot-as-mqtt.cn-shanghai.example.com", "port": 1883},
                  "http": {"host": "iot-as-http.cn-shanghai.example.com", "port": 443}}}]},
        {"id": "eu-central-1", "name": "Europe (Frankfurt)",
         "latitude": 50.1109, "longitude": 8.6821,
         "instances": [
             {"id": "iot-eu-1", "default": True,
              "endpoints": {
                  "mqtt": {"host": "mqtt.eu-central-1.example.com", "port": 8883, "ip": "192.0.2.10"}}}]},
        {"id": "us-east-1", "name": "US East (N. Virginia)",
         "latitude": 38.9072, "longitude": -77.0369,
         "instances": [
             {"id": "iot-us-1", "default": True,
              "endpoints": {
                  "mqtt": {"host": "mqtt.${instanceId}.${regionId}.example.com", "port": 8883}}},
             {"id": "iot-us-2",
              "endpoints": {
                  "http": {"host": "http-2.us-east-1.example.com", "port": 8443},
                  "mqtt": {"host": "${deviceName}.mqtt-2.us-east-1.example.com", "port": 8884}}}]},
    ]}


# ---------------------------------------------------------------- HTTP client

class Response:
    """An HTTP response read off the wire, kept byte for byte."""

    def __init__(self, raw, status_line, header_lines, body, chunked):
        self.raw = raw
        self.status_line = status_line
        self.header_lines = header_lines
        self.body = body
        self.chunked = chunked
        parts = status_line.split(b" ", 2)
        self.version = parts[0].decode(errors="replace")
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        self.reason = parts[2].decode(errors="replace") if len(parts) > 2 else ""
        _note_body_secrets(body or b"")
        self.headers = []
        for line in header_lines:
            name, _, value = line.partition(b":")
            self.headers.append((name.decode(errors="replace"), value.strip().decode(errors="replace")))

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def __repr__(self):
        return "<Response %r %r %r>" % (self.status_line, self.header_lines, self.body[:400])


class ConnectionClosed(Exception):
    pass


def _recv_until(sock, buf, pred, deadline):
    while not pred(buf):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("response not complete before deadline; got %r" % bytes(buf[:300]))
        sock.settimeout(min(remaining, SOCKET_TIMEOUT_S))
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf.extend(chunk)
    return True


def read_response(sock, timeout=SOCKET_TIMEOUT_S, head=False, buf=None):
    """Reads one full HTTP response from SOCK (Content-Length, chunked or up to
    EOF). Raises ConnectionClosed if the peer closes before a status line.
    BUF (a bytearray kept by the caller across calls): bytes already read off
    SOCK, where what follows this response is left for the next call
    (pipelined answers); without it such bytes are dropped."""
    deadline = time.monotonic() + timeout
    if buf is None:
        buf = bytearray()
    if not _recv_until(sock, buf, lambda b: b"\r\n\r\n" in b, deadline):
        if not buf:
            raise ConnectionClosed("connection closed without a response")
        raise ConnectionClosed("connection closed inside the header: %r" % bytes(buf))
    end = buf.index(b"\r\n\r\n")
    head_bytes = bytes(buf[:end])
    lines = head_bytes.split(b"\r\n")
    status_line, header_lines = lines[0], lines[1:]
    rest = buf[end + 4:]
    cl = None
    chunked = False
    for line in header_lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            cl = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    status = status_line.split(b" ")
    no_body = head or (len(status) > 1 and status[1] in (b"204", b"304"))
    if no_body:
        body = b""
    elif chunked:
        body = bytearray()
        while True:
            _recv_until(sock, rest, lambda b: b"\r\n" in b, deadline)
            i = rest.index(b"\r\n")
            size = int(rest[:i].split(b";")[0], 16)
            del rest[:i + 2]
            if size == 0:
                _recv_until(sock, rest, lambda b: b"\r\n" in b, deadline)
                del rest[:rest.index(b"\r\n") + 2]
                break
            _recv_until(sock, rest, lambda b, n=size: len(b) >= n + 2, deadline)
            body.extend(rest[:size])
            del rest[:size + 2]
        body = bytes(body)
    elif cl is not None:
        _recv_until(sock, rest, lambda b: len(b) >= cl, deadline)
        body = bytes(rest[:cl])
        rest = rest[cl:]
    else:
        _recv_until(sock, rest, lambda b: False, deadline)
        body = bytes(rest)
        rest = bytearray()
    buf[:] = rest
    raw = head_bytes + b"\r\n\r\n" + body
    return Response(raw, status_line, header_lines, body, chunked)


def client_context(verify=False, min_version=None, max_version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(os.path.join(certs(), "ca.pem"))
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def connect(port, tls=None, timeout=SOCKET_TIMEOUT_S, server_hostname="localhost"):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        try:
            s = tls.wrap_socket(s, server_hostname=server_hostname)
        except BaseException:
            s.close()
            raise
    s.settimeout(timeout)
    return s


def raw_request(port, data, tls=None, timeout=SOCKET_TIMEOUT_S, head=False):
    """Sends DATA exactly as given and returns the full Response."""
    with connect(port, tls, timeout) as s:
        s.sendall(data)
        return read_response(s, timeout, head=head)


def build_request(method, path, body=None, headers=None, host="127.0.0.1"):
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    hdrs = dict(headers or {})
    for k, v in hdrs.items():
        lines.append("%s: %s" % (k, v))
    if body is not None and not any(k.lower() == "content-length" for k in hdrs):
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def sdk_request(body, path="/auth/bootstrap", host="127.0.0.1"):
    """The request exactly as the vendor's device SDK sends it."""
    if isinstance(body, str):
        body = body.encode()
    return (("POST %s HTTP/1.1\r\n"
             "Host: %s\r\n"
             "Accept: %s\r\n"
             "Content-Type: %s\r\n"
             "Content-Length: %d\r\n"
             "\r\n") % (path, host, SDK_ACCEPT, SDK_CONTENT_TYPE, len(body))).encode() + body


def success_body(resources):
    """The exact success body for RESOURCES, a list of (protocol, host, port, ip|None)."""
    parts = []
    for proto, host, port, ip in resources:
        s = '"%s":{"host":"%s","port":%d' % (proto, host, port)
        if ip:
            s += ',"ip":"%s"' % ip
        parts.append(s + "}")
    return ('{"code":200,"data":{"resources":{%s}},"message":"success"}' % ",".join(parts)).encode()


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def is_compact_json(body):
    """True when BODY has no whitespace outside JSON strings."""
    outside = _JSON_STRING.sub(b"", body)
    return not re.search(rb"\s", outside)


# ------------------------------------------------------------------ harness

class Harness:
    """One redis-server and one bootstrapd with their files in a temporary
    directory.

    tls: None (plain HTTP public listener), True (ECDSA + RSA pairs) or a dict
    merged into public.tls. config: dict deep-merged into config.json.
    regions: the catalog (default_regions()). persistence: keep dump.rdb in the
    directory across redis restarts (tests call SAVE themselves). env: extra
    environment of the daemon and of its workers (e.g. a notify password_env).
    nofile: the daemon's file-descriptor limit (RLIMIT_NOFILE, soft and hard),
    None for ours. Brokers started with start_broker() (before start(), so that their ports
    can go into the catalog) live in the same directory and are killed and
    their logs printed with the rest."""

    def __init__(self, tls=None, config=None, regions=None, persistence=False, name="bootstrapd", args=(),
                 env=None, nofile=None):
        self.name = name
        self.nofile = nofile
        self.daemon_args = tuple(args)  # e.g. ("--role", "api")
        self.env = dict(env or {})
        self.workers = []  # Worker processes started with start_worker()
        self.brokers = []  # Mosquitto brokers started with start_broker()
        self.dir = tempfile.mkdtemp(prefix="bootstrapd-it-")
        self.tls = tls
        self.config_over = config or {}
        self.regions = regions if regions is not None else default_regions()
        self.persistence = persistence
        self.redis_proc = None
        self.proc = None
        self.redis_port = None
        self.public_port = None
        self.admin_port = None
        self.closed = False
        self.closed_at = None
        self.saved_logs = None
        self.log_path = os.path.join(self.dir, "bootstrapd.log")
        self.redis_log_path = os.path.join(self.dir, "redis.log")
        self.config_path = os.path.join(self.dir, "config.json")
        self.regions_path = os.path.join(self.dir, "regions.json")
        _harnesses.append(self)

    # -- lifecycle

    def start(self):
        try:
            self.start_redis()
            self.start_daemon(args=self.daemon_args, env=self.env)
        except BaseException:
            self.print_logs()
            self.close()
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Kills everything this harness started and removes its directory.
        Idempotent; logs are kept in memory for print_logs()."""
        if self.closed:
            return
        self.closed = True
        self.closed_at = time.monotonic()
        for w in self.workers:
            _kill(w.proc)
        for p in (self.proc, self.redis_proc):
            _kill(p)
        for b in self.brokers:
            b.kill()
        self.saved_logs = self._read_logs()
        _keep_logs(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _read_logs(self):
        out = []
        files = [("bootstrapd", self.log_path)]
        files += [("bootstrapd worker %s" % w.name, w.log_path) for w in self.workers]
        files.append(("redis-server", self.redis_log_path))
        files += [("mosquitto %s" % b.name, b.log_path) for b in self.brokers]
        for label, path in files:
            try:
                with open(path, "rb") as f:
                    data = f.read().decode(errors="replace")
            except OSError:
                data = "(no log)"
            out.append((label, data))
        return out

    def print_logs(self, tail=200):
        logs = self.saved_logs if self.saved_logs is not None else self._read_logs()
        for label, data in logs:
            lines = data.splitlines()
            sys.stderr.write("----- %s log (%s, last %d of %d lines) -----\n"
                             % (label, self.name, min(tail, len(lines)), len(lines)))
            sys.stderr.write("\n".join(lines[-tail:]) + "\n")
        sys.stderr.write("----- end of logs -----\n")
        sys.stderr.flush()

    def daemon_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- redis

    def write_redis_conf(self):
        conf = [
            "port %d" % self.redis_port,
            "bind 127.0.0.1",
            "dir %s" % self.dir,
            'save ""',
            # persistence: every write survives a SIGKILL (tests also SAVE).
            "appendonly %s" % ("yes" if self.persistence else "no"),
            "appendfsync always",
            "daemonize no",
            "dbfilename dump.rdb",
            'logfile ""',
            "protected-mode yes",
        ]
        path = os.path.join(self.dir, "redis.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        return path

    def start_redis(self, same_port=False):
        """Starts redis-server (a new free port unless SAME_PORT) and waits for
        PING. Retries on another port if the chosen one was taken."""
        attempts = 1 if same_port else 3
        last = None
        for _ in range(attempts):
            if not same_port or self.redis_port is None:
                self.redis_port = free_port()
            conf = self.write_redis_conf()
            log = open(self.redis_log_path, "ab")
            self.redis_proc = subprocess.Popen(["redis-server", conf], stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            _processes.append(self.redis_proc)
            try:
                wait_until(lambda: self.redis_proc.poll() is not None or self.redis_ping(),
                           START_DEADLINE_S, "redis-server PING on port %d" % self.redis_port)
            except TimeoutError as e:
                last = e
                self.redis_proc.kill()
                self.redis_proc.wait(5)
                continue
            if self.redis_proc.poll() is None:
                return
            last = RuntimeError("redis-server exited with %s" % self.redis_proc.returncode)
        raise RuntimeError("could not start redis-server: %s" % last)

    def redis_ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def redis(self, *args, check=True):
        """redis-cli -p PORT ARGS...; returns stdout without the final newline.
        Then a PING: Redis writes a command's answer before the tracking
        invalidations it caused, in the same pass, so a request sent the
        moment the answer came could, on a loaded machine, reach bootstrapd
        first. An answer to a command sent after it proves that pass over
        (the admin API fences its writes the same way)."""
        r = subprocess.run(["redis-cli", "-p", str(self.redis_port), *[str(a) for a in args]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        self.redis_ping()
        out = r.stdout.decode(errors="replace")
        if check and (r.returncode != 0 or out.startswith("ERR") or out.startswith("(error)")):
            raise RuntimeError("redis-cli %s: rc=%d %s %s" % (args, r.returncode, out, r.stderr.decode()))
        return out[:-1] if out.endswith("\n") else out

    def kill_redis(self, sig=signal.SIGKILL):
        self.redis_proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.redis_proc.wait(timeout=10)

    def restart_redis(self):
        """Starts redis again on the same port and directory (dump.rdb loads)."""
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait(timeout=10)
        self.start_redis(same_port=True)

    # -- configuration

    def tls_config(self):
        if self.tls is None:
            return None
        d = self.dir
        for name in ("ec.crt", "ec.key", "rsa.crt", "rsa.key", "ca.pem"):
            shutil.copy(os.path.join(certs(), name), os.path.join(d, name))
        base = {"certs": [{"cert": "ec.crt", "key": "ec.key"}, {"cert": "rsa.crt", "key": "rsa.key"}]}
        if isinstance(self.tls, dict):
            base = deep_merge(base, self.tls)
        return base

    def config(self):
        cfg = {
            "public": {"listen": "127.0.0.1:%d" % self.public_port},
            "admin": {"listen": "127.0.0.1:%d" % self.admin_port,
                      "tokens": ["sha256:" + sha256_hex(TOKEN)]},
            "redis": {"url": "redis://127.0.0.1:%d/0" % self.redis_port, "timeout_ms": REDIS_TIMEOUT_MS},
            "regions": "regions.json",
            "limits": {"bootstrap_rps_per_ip": 0},
            # Every line the daemon can write, for test_secrets_in_logs.py.
            "log": {"level": "debug", "access": True},
        }
        tls = self.tls_config()
        if tls is not None:
            cfg["public"]["tls"] = tls
        return deep_merge(cfg, self.config_over)

    def write_regions(self, regions=None, text=None):
        with open(self.regions_path, "w") as f:
            if text is not None:
                f.write(text)
            else:
                json.dump(regions if regions is not None else self.regions, f, indent=2)

    def write_config(self):
        self.write_regions()
        # secret_key_file defaults to "secret.key" beside the config file.
        key = os.path.join(self.dir, "secret.key")
        if not os.path.exists(key):
            with open(key, "w") as f:
                secret = os.urandom(32).hex()
                f.write(secret + "\n")
            os.chmod(key, 0o600)
            note_secret(secret)
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=2)

    # -- daemon

    def start_daemon(self, args=(), env=None):
        """Starts bootstrapd on new free ports and waits until GET /healthz on
        the admin port answers 200 (retries on other ports if a bind failed).
        ENV: extra environment (None: the harness' env)."""
        if env is None:
            env = self.env
        last_log = ""
        for _ in range(3):
            self.public_port = free_port()
            self.admin_port = free_port()
            while self.admin_port == self.public_port:
                self.admin_port = free_port()
            self.write_config()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([daemon_path(), "--config", self.config_path, *args],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=daemon_env(env), start_new_session=True,
                                             preexec_fn=self._limits if self.nofile else None)
            _processes.append(self.proc)
            try:
                wait_until(lambda: self.proc.poll() is not None or self.healthy(), START_DEADLINE_S,
                           "bootstrapd GET /healthz == 200 on port %d" % self.admin_port)
            except TimeoutError:
                self.proc.kill()
                self.proc.wait(5)
                raise RuntimeError("bootstrapd did not become healthy within %ds" % START_DEADLINE_S)
            if self.proc.poll() is None:
                return
            last_log = self.daemon_log()
            if "in use" not in last_log.lower():
                break
        raise RuntimeError("bootstrapd exited with %s at start-up:\n%s" % (self.proc.returncode, last_log[-3000:]))

    def _limits(self):
        """Runs in the child between fork and exec."""
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def cpu_seconds(self):
        """The daemon's user + system CPU time so far (/proc/PID/stat)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15; the split starts at field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def healthy(self):
        try:
            r = raw_request(self.admin_port, build_request("GET", "/healthz"), timeout=1)
            return r.status == 200
        except (OSError, ConnectionClosed, ValueError):
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop_daemon(self):
        """Checks the daemon is still alive, SIGTERMs it and checks it exits 0
        within the drain bound. Raises AssertionError otherwise."""
        if self.proc is None:
            return
        p = self.proc
        rc = p.poll()
        if rc is not None:
            raise AssertionError("bootstrapd died during the test (exit status %s)" % rc)
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=DRAIN_BOUND_S + 2)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            raise AssertionError("bootstrapd did not exit within %ds of SIGTERM" % (DRAIN_BOUND_S + 2))
        if rc != 0:
            raise AssertionError("bootstrapd exited with %s after SIGTERM, expected 0" % rc)

    # -- requests

    def public_tls_context(self, **kw):
        return client_context(**kw) if self.tls is not None else None

    def public(self, data, tls=None, timeout=SOCKET_TIMEOUT_S):
        """Sends raw bytes to the public listener (TLS when configured, unless
        TLS is given explicitly)."""
        if tls is None and self.tls is not None:
            tls = client_context()
        return raw_request(self.public_port, data, tls=tls, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=SOCKET_TIMEOUT_S):
        return self.public(build_request(method, path, body, headers), timeout=timeout)

    def bootstrap(self, pk=None, dn=None, resources=None, client_id=None, method="POST", extra=None,
                  timeout=SOCKET_TIMEOUT_S):
        """A device bootstrap request the way the SDK sends it (POST) or with a
        query string (GET)."""
        params = []
        if pk is not None:
            params.append(("productKey", pk))
        if dn is not None:
            params.append(("deviceName", dn))
        if client_id is not None:
            params.append(("clientId", client_id))
        if resources is not None:
            params.append(("resources", resources))
        params.extend(extra or [])
        from urllib.parse import quote
        form = "&".join("%s=%s" % (k, quote(v, safe="")) for k, v in params)
        if method == "GET":
            return self.public(build_request("GET", "/auth/bootstrap?" + form), timeout=timeout)
        return self.public(sdk_request(form), timeout=timeout)

    def admin(self, method, path, body=None, token=TOKEN, content_type=None, headers=None,
              timeout=SOCKET_TIMEOUT_S):
        hdrs = {}
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
            if token == TOKEN:
                note_secret(token)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        if content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        return raw_request(self.admin_port, build_request(method, path, body, hdrs), timeout=timeout)

    # -- fixtures

    def admin_setup(self, method, path, body=None, content_type=None, seconds=5.0):
        """An admin call that sets up a test's data: a 503 (Redis not
        answering in time on a loaded machine) is tried again, as an operator
        would, within SECONDS. Tests of 503 itself use admin()."""
        deadline = time.monotonic() + seconds
        while True:
            r = self.admin(method, path, body, content_type=content_type)
            if r.status != 503 or time.monotonic() >= deadline:
                return r
            time.sleep(0.1)

    def put_product(self, pk, region="cn-shanghai", instance="iot-cn-sh-public", account="acct-a", **extra):
        body = {"homeRegion": region, "account": account, "locked": False}
        if instance is not None:
            body["homeInstance"] = instance
        body.update(extra)
        r = self.admin_setup("PUT", "/v1/products/" + pk, body)
        if r.status not in (200, 201):
            raise AssertionError("PUT /v1/products/%s: %r" % (pk, r))
        return r

    def register(self, pk, names, secrets=None):
        """Registers NAMES under PK; returns {deviceName: deviceSecret}."""
        if secrets:
            body = "deviceName,deviceSecret\r\n" + "".join(
                "%s,%s\r\n" % (n, secrets[n]) for n in names)
        else:
            body = "deviceName\r\n" + "".join(n + "\r\n" for n in names)
        r = self.admin_setup("POST", "/v1/products/%s/devices" % pk, body, content_type="text/csv")
        if r.status != 200:
            raise AssertionError("POST /v1/products/%s/devices: %r" % (pk, r))
        out = {}
        for line in r.text().splitlines()[1:]:
            if line:
                p, d, s = line.split(",")
                out[d] = s
        return out

    def seed_batch(self, seq, region, instance, account="acct-a", strategy="region", created=None):
        self.redis("HSET", key("batch", seq), "st", strategy, "tg", "%s/%s" % (region, instance),
                   "ac", account, "ct", str(int(created if created is not None else time.time())))

    def device_record(self, pk, dn):
        return self.redis("HGET", key("device", pk, dn), "%s/%s" % (pk, dn))

    def break_bucket(self, pk, dn):
        """Makes the bucket (docs/key-schema.md) of PK/DN, a device that is
        not registered and shares its bucket with none that is, a string, so
        that Redis refuses every command on it (WRONGTYPE): a batch step
        holding the row fails. Returns the key, for a DEL that mends it."""
        bucket = key("device", pk, dn)
        if self.redis("TYPE", bucket) != "none":
            raise AssertionError("test set-up: the bucket of %s/%s is shared with another device" % (pk, dn))
        self.redis("SET", bucket, "not-a-hash")
        return bucket

    def set_device_batch(self, pk, dn, seq):
        """Points the device's record at batch SEQ, keeping its other fields."""
        rec = self.device_record(pk, dn)
        fields = rec.split(";")
        if len(fields) != 7:
            raise AssertionError("device record of %s/%s is %r, expected 7 ';' fields" % (pk, dn, rec))
        fields[0] = str(seq)
        self.redis("HSET", key("device", pk, dn), "%s/%s" % (pk, dn), ";".join(fields))

    def set_product_batch(self, pk, seq):
        self.redis("HSET", key("product", pk), "pb", str(seq))

    # -- distribution batches (docs/batches.md)

    def upload_batch(self, body, query="", content_type="text/csv", timeout=SOCKET_TIMEOUT_S):
        """POST /v1/batches[?QUERY] with BODY (str/bytes as is, or an object
        sent as JSON). Returns the raw Response."""
        path = "/v1/batches" + ("?" + query if query else "")
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            content_type = "application/json"
        return self.admin("POST", path, body, content_type=content_type, timeout=timeout)

    def create_batch(self, body, query="", content_type="text/csv"):
        """Uploads and checks the 202 answer; returns its JSON."""
        r = self.upload_batch(body, query, content_type)
        if r.status != 202:
            raise AssertionError("POST /v1/batches?%s: expected 202, got %r" % (query, r))
        return r.json()

    def get_batch(self, batch_id):
        r = self.admin("GET", "/v1/batches/%s" % batch_id)
        if r.status != 200:
            raise AssertionError("GET /v1/batches/%s: %r" % (batch_id, r))
        return r.json()

    def wait_batch(self, batch_id, timeout=30, statuses=("completed", "failed")):
        """Polls GET /v1/batches/ID until its status is one of STATUSES;
        returns the batch JSON."""
        last = {}

        def done():
            last["b"] = self.get_batch(batch_id)
            return last["b"].get("status") in statuses

        try:
            wait_until(done, timeout, "batch %s to reach %s" % (batch_id, "/".join(statuses)), interval=0.05)
        except TimeoutError as e:
            raise TimeoutError("%s; last seen %r" % (e, last.get("b")))
        return last["b"]

    def distribute(self, body, query="", content_type="text/csv", timeout=30):
        """Uploads a batch and waits until it is completed; returns the batch."""
        bid = self.create_batch(body, query, content_type)["batchId"]
        b = self.wait_batch(bid, timeout)
        if b["status"] != "completed":
            raise AssertionError("batch %s ended %r" % (bid, b))
        return b

    def batch_results(self, batch_id):
        """GET /v1/batches/ID/results: (Response, rows without the header),
        rows parsed with the csv module."""
        r = self.admin("GET", "/v1/batches/%s/results" % batch_id, timeout=30)
        if r.status != 200:
            raise AssertionError("GET /v1/batches/%s/results: %r" % (batch_id, r))
        return r, list(csv.reader(io.StringIO(r.body.decode("utf-8"), newline="")))[1:]

    def list_batches(self, query=""):
        return self.admin("GET", "/v1/batches" + ("?" + query if query else ""))

    def all_batch_ids(self):
        """Every batch id in GET /v1/batches, newest first (follows the cursors)."""
        ids, cursor = [], None
        for _ in range(1000):
            q = "limit=100" + ("&cursor=" + quote(cursor, safe="") if cursor else "")
            r = self.list_batches(q)
            if r.status != 200:
                raise AssertionError("GET /v1/batches?%s: %r" % (q, r))
            j = r.json()
            ids.extend(b["batchId"] for b in j["batches"])
            cursor = j.get("nextCursor")
            if not cursor:
                return ids
        raise AssertionError("GET /v1/batches: more than 1000 pages")

    def auth_code(self, account):
        """POST /v1/accounts/ACCOUNT/auth-codes; returns the answer's JSON."""
        r = self.admin("POST", "/v1/accounts/%s/auth-codes" % account)
        if r.status not in (200, 201):
            raise AssertionError("POST /v1/accounts/%s/auth-codes: %r" % (account, r))
        return r.json()

    def device(self, pk, dn):
        r = self.admin("GET", "/v1/devices/%s/%s" % (pk, dn))
        if r.status != 200:
            raise AssertionError("GET /v1/devices/%s/%s: %r" % (pk, dn, r))
        return r.json()

    def stats(self):
        r = self.admin("GET", "/v1/stats")
        if r.status != 200:
            raise AssertionError("GET /v1/stats: %r" % r)
        return r.json()

    def metrics(self):
        r = self.admin("GET", "/metrics", token=None)
        if r.status != 200:
            raise AssertionError("GET /metrics: %r" % r)
        return r.text()

    def readyz(self):
        """GET /readyz on the admin listener: the Response (200 or 503)."""
        return self.admin("GET", "/readyz", token=None)

    def logs_text(self):
        """Everything the daemon and its workers have logged so far."""
        return "\n".join(data for label, data in self._read_logs() if label.startswith("bootstrapd"))

    # -- MQTT brokers (mosquitto) in this harness' directory

    def start_broker(self, name=None, users=None, persistence=False, extra=None):
        """Starts a mosquitto on a free loopback port (see Mosquitto) and waits
        until it answers CONNECT. Returns it; close() kills it."""
        b = Mosquitto(self.dir, name or "mqtt%d" % (len(self.brokers) + 1), users=users, persistence=persistence,
                      extra=extra)
        self.brokers.append(b)
        b.start()
        return b

    # -- separate worker processes (--role worker) on this harness' redis

    def start_worker(self, name=None, config=None, env=None):
        """Starts `bootstrapd --role worker` with this harness' configuration
        (same redis, catalog and secret key) deep-merged with CONFIG, its own
        worker.listen port, and waits until its GET /healthz answers 200.
        Returns the Worker; close() kills it."""
        w = Worker(self, name or "w%d" % (len(self.workers) + 1), config, dict(self.env, **(env or {})))
        self.workers.append(w)
        w.start()
        return w


def csv_body(rows, header="productKey,deviceName", eol="\r\n", bom=False):
    """A CSV upload: HEADER then ROWS (lists of fields, quoted as RFC 4180
    needs), each line ending in EOL."""
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator=eol)
    for row in rows:
        w.writerow(row)
    return ("\ufeff" if bom else "") + header + eol + out.getvalue()


def metric_sum(text, name):
    """The sum of every sample of metric NAME (any labels) in a Prometheus
    text exposition, or None when there is none."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^%s(\{[^}]*\})?\s+(\S+)" % re.escape(name), line)
        if m:
            total += float(m.group(2))
            seen = True
    return total if seen else None


def metric_value(text, name, **labels):
    """The sum of the samples of metric NAME whose labels include LABELS
    (exact values), or None when there is none."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^%s(?:\{([^}]*)\})?\s+(\S+)" % re.escape(name), line)
        if not m:
            continue
        have = {k: re.sub(r"\\(.)", r"\1", v)
                for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or "")}
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
            seen = True
    return total if seen else None


def find_program(name):
    """NAME's path: PATH first, then the sbin folders a package may use
    (mosquitto lives in /usr/sbin), or None."""
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


# ------------------------------------------------------------------ MQTT

class MqttError(Exception):
    pass


def _mqtt_str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def _mqtt_packet(first, body):
    """A control packet: first byte FIRST, the remaining length, BODY."""
    n = len(body)
    out = bytearray([first])
    while True:
        d, n = n % 128, n // 128
        out.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


class MqttMessage:
    def __init__(self, topic, payload, qos, dup, retain):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.dup = dup
        self.retain = retain
        self.at = time.monotonic()

    def __repr__(self):
        return "<MQTT %s q%d%s %r>" % (self.topic, self.qos, " dup" if self.dup else "", self.payload[:200])


class MqttClient:
    """A small MQTT 3.1.1 client over a plain socket, for simulated devices:
    CONNECT (optionally with a username/password and a persistent session),
    SUBSCRIBE, PUBLISH at QoS 0/1, PUBACK of what it receives at QoS 1, and
    PINGREQ every keepalive/2. A daemon thread reads; every call is bounded
    by a deadline. Received PUBLISH packets are kept in order (messages())."""

    _ids = 0

    def __init__(self, port, client_id=None, username=None, password=None, clean=True, keepalive=30,
                 host="127.0.0.1"):
        MqttClient._ids += 1
        self.host = host
        self.port = port
        self.client_id = client_id or "it-%d-%d" % (os.getpid(), MqttClient._ids)
        self.username = username
        self.password = password
        self.clean = clean
        self.keepalive = keepalive
        self.sock = None
        self.session_present = None
        self.connected = False
        self.error = None
        self._buf = bytearray()
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._messages = []
        self._acked = set()
        self._subacks = {}
        self._next_pid = 0
        self._last_send = time.monotonic()
        self._closing = False
        self._thread = None

    # -- wire

    def _send(self, data):
        with self._send_lock:
            self.sock.sendall(data)
            self._last_send = time.monotonic()

    def _parse(self):
        buf = self._buf
        n, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            d = buf[i]
            n += (d & 0x7F) * mult
            mult *= 128
            i += 1
            if not d & 0x80:
                break
            if i > 4:
                raise MqttError("bad remaining length from the broker")
        if len(buf) < i + n:
            return None
        first, body = buf[0], bytes(buf[i:i + n])
        del buf[:i + n]
        return first, body

    def _pid(self):
        self._next_pid = self._next_pid % 65535 + 1
        return self._next_pid

    def connect(self, timeout=SOCKET_TIMEOUT_S):
        """Connects and returns the CONNACK return code (0: accepted, then the
        reader runs; otherwise the socket is closed). OSError when the broker
        cannot be reached."""
        deadline = time.monotonic() + timeout
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        flags = 0x02 if self.clean else 0
        payload = _mqtt_str(self.client_id)
        if self.username is not None:
            flags |= 0x80
            payload += _mqtt_str(self.username)
        if self.password is not None:
            flags |= 0x40
            payload += _mqtt_str(self.password)
        body = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        try:
            self._send(_mqtt_packet(0x10, body))
            while True:
                pkt = self._parse()
                if pkt is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("no CONNACK within %.1fs" % timeout)
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionClosed("the broker closed the connection before CONNACK")
                self._buf.extend(chunk)
        except BaseException:
            self.sock.close()
            raise
        first, data = pkt
        if first >> 4 != 2 or len(data) != 2:
            self.sock.close()
            raise MqttError("expected CONNACK, got packet type %d" % (first >> 4))
        self.session_present = bool(data[0] & 1)
        if data[1] != 0:
            self.sock.close()
            return data[1]
        self.connected = True
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="mqtt-" + self.client_id, daemon=True)
        self._thread.start()
        return 0

    def connect_ok(self, timeout=SOCKET_TIMEOUT_S):
        rc = self.connect(timeout)
        if rc != 0:
            raise MqttError("CONNACK return code %d for client %s" % (rc, self.client_id))
        return self

    def _run(self):
        try:
            while not self._closing:
                pkt = self._parse()
                if pkt is None:
                    self.sock.settimeout(0.2)
                    try:
                        chunk = self.sock.recv(65536)
                    except socket.timeout:
                        if self.keepalive and time.monotonic() - self._last_send >= self.keepalive / 2:
                            self._send(b"\xc0\x00")  # PINGREQ
                        continue
                    if not chunk:
                        break
                    self._buf.extend(chunk)
                    continue
                self._handle(*pkt)
        except (OSError, MqttError, ValueError) as e:
            if not self._closing:
                self.error = e
        finally:
            self.connected = False

    def _handle(self, first, body):
        kind = first >> 4
        if kind == 3:  # PUBLISH
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + tlen].decode("utf-8", errors="replace")
            rest = body[2 + tlen:]
            pid = None
            if qos:
                pid, rest = struct.unpack("!H", rest[:2])[0], rest[2:]
            with self._lock:
                self._messages.append(MqttMessage(topic, bytes(rest), qos, bool(first & 8), bool(first & 1)))
            if qos == 1:
                self._send(b"\x40\x02" + struct.pack("!H", pid))
            elif qos == 2:
                self._send(b"\x50\x02" + struct.pack("!H", pid))  # PUBREC
        elif kind == 6:  # PUBREL (QoS 2 from the broker): PUBCOMP
            self._send(b"\x70\x02" + body[:2])
        elif kind == 4:  # PUBACK
            with self._lock:
                self._acked.add(struct.unpack("!H", body[:2])[0])
        elif kind == 9:  # SUBACK
            with self._lock:
                self._subacks[struct.unpack("!H", body[:2])[0]] = bytes(body[2:])

    # -- operations

    def subscribe(self, topic, qos=1, timeout=SOCKET_TIMEOUT_S):
        """SUBSCRIBE and wait for the SUBACK; MqttError if refused."""
        pid = self._pid()
        self._send(_mqtt_packet(0x82, struct.pack("!H", pid) + _mqtt_str(topic) + bytes([qos])))
        codes = wait_until(lambda: self._subacks.get(pid) or (not self.connected and b"\x80"), timeout,
                           "SUBACK for %s" % topic, interval=0.01)
        if codes[0] == 0x80:
            raise MqttError("subscription to %s refused (or connection lost: %s)" % (topic, self.error))
        return self

    def publish(self, topic, payload, qos=1, timeout=SOCKET_TIMEOUT_S):
        """PUBLISH (str or bytes); at QoS 1 waits for the broker's PUBACK."""
        if isinstance(payload, str):
            payload = payload.encode()
        if qos == 0:
            self._send(_mqtt_packet(0x30, _mqtt_str(topic) + payload))
            return
        pid = self._pid()
        self._send(_mqtt_packet(0x32, _mqtt_str(topic) + struct.pack("!H", pid) + payload))
        wait_until(lambda: pid in self._acked or not self.connected, timeout, "PUBACK for %s" % topic,
                   interval=0.01)
        if pid not in self._acked:
            raise MqttError("connection lost before the PUBACK for %s: %s" % (topic, self.error))

    def messages(self, topic=None):
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_messages(self, pred, timeout, what):
        """Waits until PRED(messages()) is true; returns the messages."""
        try:
            wait_until(lambda: pred(self.messages()), timeout, what, interval=0.02)
        except TimeoutError as e:
            raise TimeoutError("%s; client %s received %r (connected %s, error %s)"
                               % (e, self.client_id, self.messages()[-20:], self.connected, self.error))
        return self.messages()

    def close(self, clean=True):
        """DISCONNECT (CLEAN) and close; joins the reader. Idempotent."""
        if self.sock is None:
            return
        self._closing = True
        if clean and self.connected:
            try:
                self._send(b"\xe0\x00")
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._thread is not None:
            self._thread.join(2)
        self.connected = False
        self.sock = None

    def __enter__(self):
        return self.connect_ok()

    def __exit__(self, *exc):
        self.close()


def mqtt_answers(port, timeout=1.0):
    """True when something on PORT answers an MQTT CONNECT with a CONNACK
    (accepted or not)."""
    c = MqttClient(port, client_id="it-probe-%d" % os.getpid(), keepalive=0)
    try:
        rc = c.connect(timeout)
    except (OSError, MqttError, ConnectionClosed):
        return False
    if rc == 0:
        c.close()
    return True


class Mosquitto:
    """One mosquitto broker on a free loopback port, its configuration,
    password file and log in DIR. USERS ({username: password}): a password
    file made with mosquitto_passwd -b -c and allow_anonymous false; none:
    anonymous. PERSISTENCE: keep sessions (and their queued QoS 1 messages)
    across a restart (stop() with SIGTERM saves them)."""

    def __init__(self, dir, name="mqtt", users=None, persistence=False, extra=None):
        self.dir = dir
        self.name = name
        self.users = dict(users or {})
        for pw in self.users.values():
            note_secret(pw)
        self.persistence = persistence
        self.extra = list(extra or [])  # more configuration lines (a plugin)
        self.port = None
        self.proc = None
        self.paused = False
        self.conf_path = os.path.join(dir, "mosquitto-%s.conf" % name)
        self.passwd_path = os.path.join(dir, "mosquitto-%s.passwd" % name)
        self.log_path = os.path.join(dir, "mosquitto-%s.log" % name)

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def key(self, username=None):
        """The broker's name in /readyz and /metrics: its URL, plus "#" and
        the username when there is one."""
        return self.url + ("#" + username if username else "")

    def write_passwd(self):
        first = True
        for user, password in self.users.items():
            r = subprocess.run([find_program("mosquitto_passwd"), "-b"] + (["-c"] if first else [])
                               + [self.passwd_path, user, password],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=30)
            if r.returncode != 0:
                raise RuntimeError("mosquitto_passwd failed: %s" % r.stdout.decode(errors="replace"))
            first = False
        os.chmod(self.passwd_path, 0o600)

    def write_conf(self):
        conf = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous %s" % ("false" if self.users else "true"),
            "persistence %s" % ("true" if self.persistence else "false"),
            "log_dest stderr",
            "log_type all",
            "log_timestamp true",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            conf.append("user root")  # else it switches to user mosquitto, who cannot read DIR
        if self.users:
            self.write_passwd()
            conf.append("password_file %s" % self.passwd_path)
        if self.persistence:
            conf += ["persistence_location %s/" % self.dir, "persistence_file mosquitto-%s.db" % self.name,
                     "autosave_interval 0"]
        conf += self.extra
        with open(self.conf_path, "w") as f:
            f.write("\n".join(conf) + "\n")

    def start(self, same_port=False):
        """Starts it (a new free port unless SAME_PORT) and waits until it
        answers CONNECT; retries on another port if the one chosen was taken."""
        exe = find_program("mosquitto")
        if exe is None:
            raise RuntimeError("mosquitto not found")
        last = ""
        for _ in range(1 if same_port else 3):
            if not same_port or self.port is None:
                self.port = free_port()
            self.write_conf()
            with open(self.log_path, "ab") as log:
                log.write(("----- starting mosquitto on port %d -----\n" % self.port).encode())
                log.flush()
                self.proc = subprocess.Popen([exe, "-c", self.conf_path], stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            _processes.append(self.proc)
            self.paused = False
            try:
                wait_until(lambda: self.proc.poll() is not None or mqtt_answers(self.port), START_DEADLINE_S,
                           "mosquitto %s to answer CONNECT on port %d" % (self.name, self.port))
            except TimeoutError as e:
                last = str(e)
                _kill(self.proc)
                continue
            if self.proc.poll() is None:
                return self
            last = "mosquitto exited with %s:\n%s" % (self.proc.returncode, self.log()[-2000:])
        raise RuntimeError("could not start mosquitto %s: %s" % (self.name, last))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Stops it with SIG (SIGTERM: a clean exit that saves persistence)
        and reaps it."""
        if not self.alive():
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self):
        _kill(self.proc)
        self.paused = False

    def pause(self):
        """SIGSTOP: connections stay open, nothing is read or acknowledged."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def set_users(self, users):
        """Rewrites the password file (and configuration); reload() applies it."""
        for pw in users.values():
            note_secret(pw)
        self.users = dict(users)
        self.write_conf()

    def reload(self):
        """SIGHUP: mosquitto re-reads its configuration and password file."""
        self.proc.send_signal(signal.SIGHUP)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Worker:
    """One `bootstrapd --role worker` process sharing a Harness' redis-server
    and directory, with its own configuration file and log."""

    def __init__(self, h, name, config=None, env=None):
        self.h = h
        self.name = name
        self.config_over = config or {}
        self.env = env
        self.proc = None
        self.port = None
        self.config_path = os.path.join(h.dir, "config-%s.json" % name)
        self.log_path = os.path.join(h.dir, "bootstrapd-%s.log" % name)

    def config(self):
        cfg = self.h.config()
        # Listeners the worker role does not open get ports of their own all
        # the same, so that it can never collide with the API daemon.
        cfg["public"]["listen"] = "127.0.0.1:%d" % free_port()
        cfg["admin"]["listen"] = "127.0.0.1:%d" % free_port()
        cfg = deep_merge(cfg, {"worker": {"listen": "127.0.0.1:%d" % self.port}})
        return deep_merge(cfg, self.config_over)

    def start(self):
        last_log = ""
        for _ in range(3):
            self.port = free_port()
            if not os.path.exists(self.h.config_path):
                self.h.write_config()
            with open(self.config_path, "w") as f:
                json.dump(self.config(), f, indent=2)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([daemon_path(), "--config", self.config_path, "--role", "worker"],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=daemon_env(self.env), start_new_session=True)
            _processes.append(self.proc)
            try:
                wait_until(lambda: self.proc.poll() is not None or self.healthy(), START_DEADLINE_S,
                           "worker %s GET /healthz == 200 on port %d" % (self.name, self.port))
            except TimeoutError:
                self.proc.kill()
                self.proc.wait(5)
                raise RuntimeError("worker %s did not become healthy within %ds" % (self.name, START_DEADLINE_S))
            if self.proc.poll() is None:
                return self
            last_log = self.log()
            if "in use" not in last_log.lower():
                break
        raise RuntimeError("worker %s exited with %s at start-up:\n%s"
                           % (self.name, self.proc.returncode, last_log[-3000:]))

    def request(self, path, timeout=SOCKET_TIMEOUT_S):
        return raw_request(self.port, build_request("GET", path), timeout=timeout)

    def healthy(self):
        try:
            return self.request("/healthz", timeout=1).status == 200
        except (OSError, ConnectionClosed, ValueError):
            return False

    def metrics(self):
        r = self.request("/metrics")
        if r.status != 200:
            raise AssertionError("worker %s GET /metrics: %r" % (self.name, r))
        return r.text()

    def readyz(self):
        """GET /readyz on worker.listen: the Response (200 or 503)."""
        return self.request("/readyz")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL and reap."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, bound=DRAIN_BOUND_S + 2):
        """SIGTERM; returns (exit status, seconds to exit). Raises
        AssertionError if it is still running after BOUND seconds."""
        if self.proc.poll() is not None:
            raise AssertionError("worker %s died before SIGTERM (exit status %s)" % (self.name, self.proc.poll()))
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("worker %s did not exit within %.0fs of SIGTERM" % (self.name, bound))
        return rc, time.monotonic() - t0

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


# ------------------------------------------------------------------ runner

class _Result(unittest.TextTestResult):
    """Prints the daemon's and redis's logs of the harnesses involved when a
    test fails."""

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _dump(self):
        since = getattr(self, "_started", 0)
        for h in _harnesses:
            if not h.closed or (h.closed_at or 0) >= since:
                h.print_logs()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump()

    def addError(self, test, err):
        super().addError(test, err)
        self._dump()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(need_redis=True, need=()):
    """Runs the calling module's tests; exit 0 all passed, 1 failures, 77 skip.
    NEED: further programs the tests cannot do without (e.g. "mosquitto"),
    looked up with find_program(): missing ones make it a skip."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    missing = [b for b in need if find_program(b) is None]
    if missing:
        print("SKIP: %s not found (PATH, /usr/sbin, /usr/local/sbin); these tests need them "
              "(apt-get install mosquitto mosquitto-clients)" % " and ".join(missing))
        sys.exit(77)
    if need_redis:
        missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
        if missing:
            print("SKIP: %s not found in PATH; these integration tests need a real Redis 7 "
                  "(apt-get install redis-server)" % " and ".join(missing))
            sys.exit(77)
    if shutil.which("openssl") is None:
        print("SKIP: the openssl command-line tool is not in PATH (needed to make test certificates)")
        sys.exit(77)
    exe = daemon_path()
    if not os.access(exe, os.X_OK):
        print("ERROR: bootstrapd binary %s not found or not executable (set BOOTSTRAPD)" % exe)
        print("0 passed, 1 failed")
        sys.exit(1)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])
    if len(sys.argv) > 1:
        suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:], sys.modules["__main__"])
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_Result)
    result = runner.run(suite)
    bad = result.failures + result.errors + [(t, "") for t in result.unexpectedSuccesses]
    # A failed subTest counts once, as the test it belongs to.
    failed_tests = {id(getattr(t, "test_case", t)) for t, _ in bad if isinstance(t, unittest.TestCase)}
    class_level = [t for t, _ in bad if not isinstance(t, unittest.TestCase)]
    failed = len(failed_tests) + len(class_level)
    passed = result.testsRun - len(failed_tests) - len(result.skipped)
    if result.skipped:
        print("%d skipped" % len(result.skipped))
    print("%d passed, %d failed" % (max(passed, 0), failed))
    sys.stdout.flush()
    sys.exit(0 if failed == 0 else 1)


class RedisNode:
    """One more redis-server (a replica, a sentinel, a cluster node) of
    harness H, in its directory, on PORT (default a free one); start() adds
    LINES to its configuration and waits for its PING."""

    def __init__(self, h, name, sentinel=False, port=None):
        self.h, self.name, self.sentinel = h, name, sentinel
        self.port = port or free_port()
        self.proc = None
        self.conf = os.path.join(h.dir, "%s.conf" % name)
        self.log_path = os.path.join(h.dir, "%s.log" % name)

    def start(self, lines=()):
        with open(self.conf, "w") as f:
            f.write("\n".join(["port %d" % self.port, "bind 127.0.0.1", "dir %s" % self.h.dir, 'save ""',
                               "appendonly no", "daemonize no", 'logfile ""', "protected-mode yes",
                               "dbfilename %s.rdb" % self.name] + list(lines)) + "\n")
        args = ["redis-server", self.conf] + (["--sentinel"] if self.sentinel else [])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        _processes.append(self.proc)
        wait_until(lambda: self.cli("PING", check=False) == "PONG", 10, "%s PING" % self.name)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args, check=True):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *[str(a) for a in args]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out = r.stdout.decode(errors="replace").rstrip("\n")
        if check and (r.returncode != 0 or out.startswith("ERR")):
            raise RuntimeError("redis-cli -p %d %s: %s" % (self.port, args, out))
        return out

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)


class HarnessCase(unittest.TestCase):
    """One harness per test class: started in setUpClass, checked alive after
    every test, SIGTERMed (exit 0 expected) and cleaned up in tearDownClass."""

    harness_args = {}

    @classmethod
    def make_harness(cls):
        """The class's harness, started (a subclass may start another kind)."""
        return Harness(name=cls.__name__, **cls.harness_args).start()

    @classmethod
    def setUpClass(cls):
        cls.h = cls.make_harness()
        try:
            cls.prepare()
        except BaseException:
            cls.h.print_logs()
            cls.h.close()
            raise

    @classmethod
    def prepare(cls):
        """Fixtures shared by the class's tests (products, devices)."""

    def assertAnswers(self, pk, dn, body, n=3):
        """N bootstraps of PK/DN all answer 200 with BODY."""
        for i in range(n):
            r = self.h.bootstrap(pk, dn)
            self.assertEqual((r.status, r.body), (200, body), "%s answer %d: %r" % (dn, i, r))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.h.stop_daemon()
        finally:
            cls.h.close()

    def tearDown(self):
        if not self.h.alive():
            self.fail("bootstrapd is no longer running after this test (exit status %s)"
                      % self.h.proc.poll())
