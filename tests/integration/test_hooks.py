"""Push subscriptions (SPEC §5): application servers subscribe to events and
get signed JSON POSTs, retried with backoff, at least once, across a receiver
that is down, slow and up again, and across a restart of bootstrapd. A real
HTTP receiver on loopback counts every event. Times are scaled down for the
tests (BOOTSTRAPD_TEST_HOOKS_SCALE=60: 10 minutes of failures are 10 s)."""

import hashlib
import hmac
import http.server
import json
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase  # noqa: E402

SECRET = "hook-secret-0123456789"
SCALE = 60


class Receiver:
    """An HTTP server on a loopback port that keeps every POST it gets;
    MODE: "ok" (204), "fail" (500), "slow" (2 s, then 200)."""

    def __init__(self, port=None):
        self.port = port or harness.free_port()
        self.mode = "ok"
        self.got = []
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rec.lock:
                    rec.got.append((dict(self.headers.items()), body))
                if rec.mode == "slow":
                    time.sleep(2)
                code = 500 if rec.mode == "fail" else 204
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def events(self):
        """The distinct events received and answered (by id), checked: signed."""
        out = {}
        with self.lock:
            got = list(self.got)
        for headers, body in got:
            want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers.get("X-Bootstrapd-Signature") == want, (headers, body)
            e = json.loads(body)
            assert headers.get("X-Bootstrapd-Event") == e["type"], headers
            out[e["id"]] = e
        return out

    def wait(self, pred, timeout, what):
        return harness.wait_until(lambda: (lambda es: es if pred(es) else None)(self.events()), timeout, what)


class Hooks(HarnessCase):
    harness_args = {"config": {"worker": {"pause_ms": 0}}, "env": {"BOOTSTRAPD_TEST_HOOKS_SCALE": str(SCALE)}}

    def subscribe(self, url, events, secret=SECRET):
        r = self.h.admin("POST", "/v1/subscriptions", {"url": url, "events": events, "secret": secret})
        self.assertEqual(r.status, 201, r)
        return r.json()

    def sub(self, sid):
        r = self.h.admin("GET", "/v1/subscriptions/%s" % sid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def tearDown(self):
        # Each test's subscriptions go with it.
        for s in self.h.admin("GET", "/v1/subscriptions").json()["subscriptions"]:
            self.h.admin("DELETE", "/v1/subscriptions/%s" % s["id"])
        super().tearDown()

    def test_every_event_signed_and_once(self):
        rec = Receiver().start()
        self.addCleanup(rec.stop)
        s = self.subscribe(rec.url, ["batch.completed", "device.distributed", "device.activated", "device.registered"])
        self.assertEqual((s["url"], s["state"]), (rec.url, "active"), s)
        self.assertNotIn("secret", s)
        self.h.put_product("a1Hk")
        self.h.register("a1Hk", ["hk-0001", "hk-0002"])
        self.assertEqual(self.h.bootstrap("a1Hk", "hk-0001").status, 200)
        self.h.distribute("productKey,deviceName\na1Hk,hk-0001\na1Hk,hk-0002\n", "targetRegion=eu-central-1")
        es = rec.wait(lambda es: len(es) >= 5, 20, "five events")
        kinds = sorted(e["type"] for e in es.values())
        self.assertEqual(kinds, ["batch.completed", "device.activated", "device.distributed", "device.distributed",
                                 "device.registered"], es)
        reg = [e for e in es.values() if e["type"] == "device.registered"][0]
        self.assertEqual((reg["data"]["productKey"], reg["data"]["devices"]), ("a1Hk", ["hk-0001", "hk-0002"]), reg)
        act = [e for e in es.values() if e["type"] == "device.activated"][0]
        self.assertEqual((act["data"]["deviceName"], act["data"]["region"]), ("hk-0001", "cn-shanghai"), act)
        done = [e for e in es.values() if e["type"] == "batch.completed"][0]
        self.assertEqual((done["data"]["total"], done["data"]["succeeded"]), (2, 2), done)
        self.assertRegex(done["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        time.sleep(1)
        self.assertEqual(len(rec.got), 5, "each event delivered once when the receiver answers")
        got = self.sub(s["id"])
        self.assertEqual((got["state"], got["delivered"], got["backlog"]), ("active", 5, 0), got)
        self.assertNotIn(SECRET, self.h.daemon_log())

    def test_down_invalid_then_up_again(self):
        rec = Receiver()
        s = self.subscribe(rec.url, ["device.registered", "device.activated"])
        self.h.put_product("a1Hd")
        self.h.register("a1Hd", ["hd-0001", "hd-0002"])
        for dn in ("hd-0001", "hd-0002"):
            self.assertEqual(self.h.bootstrap("a1Hd", dn).status, 200)
        # Nobody listens: failures, then (10 tries over "10 minutes") invalid.
        got = harness.wait_until(lambda: (lambda g: g if g["state"] == "invalid" else None)(self.sub(s["id"])), 30,
                                 "the subscription invalid")
        self.assertIn("onnect", got["lastError"] or "", got)
        self.assertEqual(got["backlog"], 3, got)
        self.assertRegex(got["lastAttemptAt"], r"^\d{4}-")
        # It answers again: the probe finds it, everything comes.
        rec.start()
        self.addCleanup(rec.stop)
        es = rec.wait(lambda es: len(es) >= 3, 20, "the three events after the receiver came back")
        self.assertEqual(sorted(e["type"] for e in es.values()),
                         ["device.activated", "device.activated", "device.registered"])
        got = harness.wait_until(lambda: (lambda g: g if g["state"] == "active" else None)(self.sub(s["id"])), 10,
                                 "active again")
        self.assertEqual(got["backlog"], 0, got)

    def test_failing_and_slow_receivers(self):
        rec = Receiver().start()
        self.addCleanup(rec.stop)
        rec.mode = "fail"
        s = self.subscribe(rec.url, ["device.registered"])
        self.h.put_product("a1Hf")
        self.h.register("a1Hf", ["hf-0001"])
        harness.wait_until(lambda: len(rec.got) >= 3, 20, "three tries")
        self.assertEqual(len(rec.events()), 1, "the same event each time")
        self.assertIn("500", self.sub(s["id"])["lastError"])
        rec.mode = "slow"
        es = harness.wait_until(lambda: (lambda g: g if g["delivered"] == 1 else None)(self.sub(s["id"])), 20,
                                "delivered to a slow receiver")
        self.assertEqual(es["backlog"], 0, es)

    def test_restart_loses_nothing(self):
        rec = Receiver()
        s = self.subscribe(rec.url, ["device.registered"])
        self.h.put_product("a1Hr")
        for i in range(3):
            self.h.register("a1Hr", ["hr-%04d" % i])
        harness.wait_until(lambda: self.sub(s["id"])["backlog"] == 3, 10, "three waiting")
        self.h.stop_daemon()
        self.h.start_daemon()
        rec.start()
        self.addCleanup(rec.stop)
        es = rec.wait(lambda es: len(es) >= 3, 30, "the three events after the restart")
        self.assertEqual(sorted(e["data"]["devices"][0] for e in es.values()), ["hr-0000", "hr-0001", "hr-0002"])

    def test_only_what_it_wants_and_not_after_delete(self):
        rec = Receiver().start()
        self.addCleanup(rec.stop)
        s = self.subscribe(rec.url, ["batch.completed"])
        self.h.put_product("a1Hw")
        self.h.register("a1Hw", ["hw-0001"])
        self.h.distribute("productKey,deviceName\na1Hw,hw-0001\n", "targetRegion=eu-central-1")
        es = rec.wait(lambda es: len(es) >= 1, 20, "the batch's event")
        self.assertEqual([e["type"] for e in es.values()], ["batch.completed"])
        # The list gives the definition; the state (one delivered) is the one's own.
        listed = [x for x in self.h.admin("GET", "/v1/subscriptions").json()["subscriptions"] if x["id"] == s["id"]]
        self.assertEqual(len(listed), 1)
        self.assertNotIn("state", listed[0])
        self.assertNotIn("delivered", listed[0])
        harness.wait_until(lambda: self.h.admin("GET", "/v1/subscriptions/%s" % s["id"]).json()["delivered"] == 1,
                           5, "the delivery counted")
        r = self.h.admin("DELETE", "/v1/subscriptions/%s" % s["id"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.h.admin("GET", "/v1/subscriptions/%s" % s["id"]).status, 404)
        self.h.distribute("productKey,deviceName\na1Hw,hw-0001\n", "targetRegion=us-east-1")
        time.sleep(1.5)
        self.assertEqual(len(rec.events()), 1, "a deleted subscription gets nothing more")

    def test_bad_input(self):
        good = {"url": "http://127.0.0.1:9/x", "events": ["device.activated"], "secret": SECRET}
        for change in ({"url": "ftp://x/y"}, {"url": "http://"}, {"url": 3}, {"events": []}, {"events": ["x.y"]},
                       {"secret": "short"}, {"secret": "a\u0001" * 10}, {"color": "red"}):
            body = dict(good, **change)
            r = self.h.admin("POST", "/v1/subscriptions", body)
            self.assertEqual(r.status, 400, (change, r))
        r = self.h.admin("POST", "/v1/subscriptions", b'{"url":"http://a/b","url":"http://c/d"}',
                         content_type="application/json")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.h.admin("GET", "/v1/subscriptions/x").status, 404)
        self.assertEqual(self.h.admin("DELETE", "/v1/subscriptions/999").status, 404)
        self.assertEqual(self.h.admin("PUT", "/v1/subscriptions").status, 405)
        self.assertEqual(self.h.admin("POST", "/v1/subscriptions", good, token=None).status, 401)


if __name__ == "__main__":
    harness.main()
