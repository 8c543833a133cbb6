"""Lifecycle (SPEC §2 signals): SIGTERM with a grace period (/readyz 503 at
once, listeners open for drain_grace_s, every request in flight across the
signal answered, exit 0), and SIGHUP rotating TLS certificates without a
restart (a bad new file keeps the old one in service and says why)."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import sdk_request  # noqa: E402

BODY = b"productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&resources=mqtt"


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


class Load:
    """Threads sending bootstraps, one new connection each, until stopped,
    as a load balancer does until it sees /readyz fail. Every request must
    get a whole 200."""

    def __init__(self, port, threads=6):
        self.port = port
        self.ok = 0
        self.errors = []
        self.refused = 0
        self.closes = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self):
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                return
            try:
                s.sendall(sdk_request(BODY))
                r = harness.read_response(s, timeout=10)
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        if (r.header("Connection") or "").lower() == "close":
                            self.closes += 1
                    else:
                        self.errors.append("status %d" % r.status)
            except (OSError, harness.ConnectionClosed) as e:
                with self.lock:
                    self.errors.append("%s: %s" % (type(e).__name__, e))
            finally:
                s.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


class Drain(unittest.TestCase):
    GRACE_S = 2

    def setUp(self):
        self.h = harness.Harness(name=self.id(), config={"drain_grace_s": self.GRACE_S}).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1"])

    def tearDown(self):
        self.h.close()

    def test_sigterm_readyz_then_grace_then_exit_without_a_dropped_request(self):
        self.assertEqual(self.h.admin("GET", "/readyz").status, 200)
        load = Load(self.h.public_port).start()
        try:
            harness.wait_until(lambda: load.ok >= 50, 10, "requests flowing before SIGTERM")
            t0 = time.monotonic()
            self.h.signal(signal.SIGTERM)
            # /readyz says 503 at once, naming why; the process still serves.
            r = self.h.admin("GET", "/readyz")
            self.assertEqual(r.status, 503, r)
            self.assertIn("draining", r.json()["failing"])
            self.assertEqual(metric(self.h.metrics(), "bootstrapd_draining"), 1)
            before = load.ok
            # Within the grace period the public listener still accepts and answers.
            harness.wait_until(lambda: load.ok >= before + 50, self.GRACE_S, "answers during the grace period")
            self.assertLess(time.monotonic() - t0, self.GRACE_S)
            # The load balancer has seen /readyz fail and stops sending
            # before the grace period ends; what is in flight then finishes.
            time.sleep(max(0.0, t0 + self.GRACE_S - 0.5 - time.monotonic()))
        finally:
            load.finish()
        self.assertEqual(load.refused, 0, "a connection refused inside the grace period")
        self.assertEqual(load.errors, [], "requests dropped across SIGTERM")
        # Every answer in the grace period closed its connection.
        self.assertGreater(load.closes, 0)
        rc = self.h.proc.wait(timeout=self.GRACE_S + harness.DRAIN_BOUND_S + 2)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(elapsed, self.GRACE_S - 0.2)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.h.public_port), timeout=1).close()
        log = self.h.daemon_log()
        self.assertIn("accepting for %d s more" % self.GRACE_S, log)

    def test_request_in_flight_at_the_end_of_the_grace_is_answered(self):
        # Redis stalls for longer than the grace: the request is in its
        # handler when the listeners close, and still gets its answer.
        self.h.close()
        self.h = harness.Harness(name=self.id(), config={"drain_grace_s": 1, "redis": {"timeout_ms": 3000}}).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1"])
        s = harness.connect(self.h.public_port, timeout=10)
        try:
            self.h.kill_redis(signal.SIGSTOP)
            s.sendall(sdk_request(BODY))
            time.sleep(0.3)
            self.h.signal(signal.SIGTERM)
            # Past the grace period: the listener closes with the request still in flight.
            harness.wait_until(lambda: not harness.port_open(self.h.public_port), 5, "the listener closed after the grace")
            self.h.kill_redis(signal.SIGCONT)
            r = harness.read_response(s, timeout=10)
            self.assertEqual(r.status, 200, r)
            self.assertEqual((r.header("Connection") or "").lower(), "close")
        finally:
            s.close()
            self.h.kill_redis(signal.SIGCONT)
        self.assertEqual(self.h.proc.wait(timeout=harness.DRAIN_BOUND_S + 3), 0)


def served_cert(port):
    """SHA-256 of the certificate the listener presents now (ECDSA first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with harness.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def file_cert(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


class CertificateRotation(unittest.TestCase):
    def setUp(self):
        self.h = harness.Harness(name=self.id(), tls=True).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1"])

    def tearDown(self):
        self.h.close()

    def new_pair(self, cn):
        d = os.path.join(self.h.dir, "new-" + cn)
        os.makedirs(d)
        harness.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", "ec.key", "-out", "ec.crt", "-days", "3", "-subj", "/CN=" + cn,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
        return d

    def reloads(self, name):
        return metric(self.h.metrics(), name) or 0

    def test_sighup_serves_the_new_certificate_and_keeps_connections(self):
        old = served_cert(self.h.public_port)
        self.assertEqual(old, file_cert(os.path.join(self.h.dir, "ec.crt")))
        # A keep-alive connection made with the old certificate.
        kept = harness.connect(self.h.public_port, tls=harness.client_context())
        try:
            kept.sendall(sdk_request(BODY))
            self.assertEqual(harness.read_response(kept).status, 200)
            d = self.new_pair("bootstrapd-rotated")
            for name in ("ec.crt", "ec.key"):
                shutil.copy(os.path.join(d, name), os.path.join(self.h.dir, name + ".tmp"))
                os.replace(os.path.join(self.h.dir, name + ".tmp"), os.path.join(self.h.dir, name))
            self.h.signal(signal.SIGHUP)
            new = file_cert(os.path.join(self.h.dir, "ec.crt"))
            harness.wait_until(lambda: served_cert(self.h.public_port) == new, 5, "the new certificate served")
            self.assertNotEqual(new, old)
            self.assertEqual(self.reloads("bootstrapd_tls_reloads_total"), 1)
            # The connection made before goes on with its session.
            kept.sendall(sdk_request(BODY))
            self.assertEqual(harness.read_response(kept).status, 200)
        finally:
            kept.close()
        self.assertIn("public listener's TLS certificates reloaded", self.h.daemon_log())
        self.assertTrue(self.h.alive())

    def test_sessions_from_before_a_reload_still_resume(self):
        ctx = harness.client_context()

        def one(session=None):
            with socket.create_connection(("127.0.0.1", self.h.public_port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                    s.sendall(sdk_request(BODY))
                    self.assertEqual(harness.read_response(s).status, 200)
                    return s.session, s.session_reused

        session, _ = one()
        self.assertTrue(one(session)[1], "resumed before the reload")
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: self.reloads("bootstrapd_tls_reloads_total") == 1, 5, "the reload")
        # Every thread takes the new context on its next loop turn.
        harness.wait_until(lambda: all(one(session)[1] for _ in range(8)), 5, "tickets from before resumed")

    def test_a_bad_new_certificate_keeps_the_old_one_and_says_why(self):
        old = served_cert(self.h.public_port)
        with open(os.path.join(self.h.dir, "ec.crt"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: "listener's TLS certificates in service stay" in self.h.daemon_log(), 5,
                           "the rejection logged")
        self.assertEqual(self.reloads("bootstrapd_tls_reload_failures_total"), 1)
        self.assertEqual(self.reloads("bootstrapd_tls_reloads_total"), 0)
        self.assertEqual(served_cert(self.h.public_port), old)
        r = self.h.bootstrap("a1PK", "dev1", client_id="a1PK.dev1", resources="mqtt")
        self.assertEqual(r.status, 200)
        line = [ln for ln in self.h.daemon_log().splitlines() if "certificates in service stay" in ln][0]
        self.assertIn("ec.crt", line, "the message names the file")
        # A key that does not match its certificate is refused the same way.
        d = self.new_pair("bootstrapd-mismatch")
        shutil.copy(os.path.join(d, "ec.crt"), os.path.join(self.h.dir, "ec.crt"))
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: self.reloads("bootstrapd_tls_reload_failures_total") == 2, 5,
                           "the second rejection counted")
        self.assertEqual(served_cert(self.h.public_port), old)


class TokenRotation(unittest.TestCase):
    """SIGHUP re-reads the configuration file's admin tokens (and log
    settings): a token rotates without a restart."""

    def setUp(self):
        self.h = harness.Harness(name=self.id()).start()

    def tearDown(self):
        self.h.close()

    def tokens(self, *tokens):
        self.h.config_over["admin"] = {"tokens": ["sha256:" + harness.sha256_hex(t) for t in tokens]}
        self.h.write_config()  # the same ports: only the tokens change

    def status(self, token):
        return self.h.admin("GET", "/v1/regions", token=token).status

    def test_add_then_retire_a_token(self):
        new = "rotated-" + os.urandom(8).hex()
        harness.note_secret(new)
        self.assertEqual(self.status(new), 401)
        self.tokens(harness.TOKEN, new)
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: self.status(new) == 200, 5, "the new token accepted")
        self.assertEqual(self.status(harness.TOKEN), 200, "both, while clients move")
        self.tokens(new)
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: self.status(harness.TOKEN) == 401, 5, "the old token refused")
        self.assertEqual(self.status(new), 200)
        self.assertEqual(metric(self.h.metrics(), "bootstrapd_config_reloads_total"), 2)
        self.assertIn("configuration reloaded", self.h.daemon_log())
        self.assertNotIn(new, self.h.daemon_log())

    def test_a_bad_file_keeps_the_tokens_in_service(self):
        with open(self.h.config_path, "w") as f:
            f.write('{"admin": {"tokens": ["sha256:nothex"]}}')
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: metric(self.h.metrics(), "bootstrapd_config_reload_failures_total") == 1, 5,
                           "the rejection counted")
        self.assertEqual(self.status(harness.TOKEN), 200)
        line = [ln for ln in self.h.daemon_log().splitlines() if "admin tokens and log settings in service stay" in ln]
        self.assertEqual(len(line), 1)
        self.assertIn("admin.tokens[0]", line[0])
        self.assertTrue(self.h.alive())


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def exposition_problems(text):
    """What Prometheus' text format (0.0.4) and its naming rules would
    refuse in TEXT: samples outside their TYPE's block, a family or a series
    twice, counters not ending in _total, histograms whose buckets do not add
    up."""
    problems, types, seen, series = [], {}, set(), set()
    current = None
    buckets = {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            continue
        if ln.startswith("# TYPE "):
            _, _, name, kind = ln.split(" ", 3)
            if name in types:
                problems.append("family %s declared twice" % name)
            types[name] = kind
            current = name
            if kind == "counter" and not name.endswith("_total"):
                problems.append("counter %s does not end in _total" % name)
            continue
        m = SAMPLE.match(ln)
        if not m:
            problems.append("not a sample line: %r" % ln)
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if types.get(current) == "histogram" and name == current + suffix:
                fam = current
        if fam != current:
            problems.append("%s outside its family's block (after TYPE %s)" % (name, current))
        if (name, labels) in series:
            problems.append("series %s%s twice" % (name, labels))
        series.add((name, labels))
        seen.add(fam)
        if name.endswith("_bucket"):
            le = re.search(r'le="([^"]+)"', labels).group(1)
            key = (fam, re.sub(r',?le="[^"]+"', "", labels).replace("{}", "").replace("{,", "{"))
            buckets.setdefault(key, []).append((float(le), float(value)))
        if name.endswith("_count") and types.get(fam) == "histogram":
            key = (fam, labels)
            b = buckets.get(key, [])
            if not b or b[-1][0] != float("inf") or b[-1][1] != float(value):
                problems.append("%s%s: +Inf bucket is not the count" % (fam, labels))
            if [v for _, v in b] != sorted(v for _, v in b):
                problems.append("%s%s: buckets not cumulative" % (fam, labels))
    return problems


class OperatorMetrics(unittest.TestCase):
    """The metrics an operator alerts on that are not counted elsewhere."""

    def test_the_exposition_is_what_prometheus_reads(self):
        with harness.Harness(name=self.id(), tls=True) as h:
            h.put_product("a1PK")
            h.register("a1PK", ["dev1"])
            h.bootstrap("a1PK", "dev1", client_id="a1PK.dev1", resources="mqtt")
            text = h.metrics()
        self.assertEqual(exposition_problems(text), [])
        # The checker itself refuses what it should.
        self.assertTrue(exposition_problems("# TYPE x_total counter\nx_total 1\nx_total 2\n"))
        self.assertTrue(exposition_problems("# TYPE y counter\ny 1\n"))
        self.assertTrue(exposition_problems('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
                                            "h_sum 1\nh_count 1\n"))
        if shutil.which("promtool"):
            import subprocess
            r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))

    def test_build_start_redis_latency_and_batches_by_status(self):
        with harness.Harness(name=self.id()) as h:
            started = time.time()
            text = h.metrics()
            self.assertRegex(text, r'(?m)^bootstrapd_build_info\{version="[0-9.]+"\} 1$')
            start = metric(text, "process_start_time_seconds")
            self.assertLess(abs(start - started), 30)
            n0 = metric(text, "bootstrapd_redis_command_duration_seconds_count")
            h.put_product("a1PK")
            h.register("a1PK", ["dev%d" % i for i in range(5)])
            b = h.distribute("productKey,deviceName\n" + "".join("a1PK,dev%d\n" % i for i in range(5)),
                             "strategy=region&targetRegion=us-east-1")
            self.assertEqual(b["status"], "completed", b)
            text = h.metrics()
            self.assertGreater(metric(text, "bootstrapd_redis_command_duration_seconds_count"), n0 + 3)
            inf = re.search(r'(?m)^bootstrapd_redis_command_duration_seconds_bucket\{le="\+Inf"\} (\d+)$', text)
            self.assertEqual(float(inf.group(1)), metric(text, "bootstrapd_redis_command_duration_seconds_count"))
            self.assertEqual(metric(text, 'bootstrapd_batches{status="completed"}'), 1)
            self.assertEqual(metric(text, 'bootstrapd_batches{status="running"}'), 0)
            # Without Redis the process' own figures still answer.
            h.kill_redis(signal.SIGSTOP)
            try:
                text = h.metrics()
            finally:
                h.kill_redis(signal.SIGCONT)
            self.assertIsNotNone(metric(text, "process_start_time_seconds"))
            self.assertIsNone(metric(text, 'bootstrapd_batches{status="completed"}'))


class ReadyzJson(unittest.TestCase):
    def test_readyz_lists_nothing_failing_when_ready(self):
        with harness.Harness(name=self.id()) as h:
            r = h.admin("GET", "/readyz")
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.body)["failing"], [])
            self.assertEqual(metric(h.metrics(), "bootstrapd_draining"), 0)


if __name__ == "__main__":
    harness.main()
