"""Logging (SPEC §2 log.*): text and JSON lines, the request id on every line
of a request (also those written when its Redis reply or timeout comes back)
and in X-Request-Id, the access log, and the old log_level key refused."""

import json
import os
import re
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) [a-z_]+: ")


def lines_with(log, needle):
    return [ln for ln in log.splitlines() if needle in ln]


class TextLogs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = harness.Harness(name=cls.__name__, config={"log": {"level": "info", "access": True}}).start()
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    @classmethod
    def tearDownClass(cls):
        cls.h.stop_daemon()
        cls.h.close()

    def test_every_line_is_shaped(self):
        self.h.admin("GET", "/v1/regions")
        for ln in self.h.daemon_log().splitlines():
            self.assertRegex(ln, TEXT_LINE)

    def test_access_line_names_the_route_template(self):
        rid = "acc-%d" % os.getpid()
        r = self.h.admin("GET", "/v1/batches/12345678", headers={"X-Request-Id": rid})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("X-Request-Id"), rid)
        harness.wait_until(lambda: lines_with(self.h.daemon_log(), "request_id=" + rid), 5, "the access line")
        line = lines_with(self.h.daemon_log(), "request_id=" + rid)[-1]
        self.assertRegex(line, r" info access: GET /v1/batches/\{batchId\} 404 \d+\.\d{3}ms 127\.0\.0\.1 "
                               r"request_id=%s$" % re.escape(rid))
        # The device endpoint's route; an id the listener made when none came.
        r = self.h.bootstrap("a1PK", "dev1", client_id="a1PK.dev1", resources="mqtt")
        self.assertEqual(r.status, 200)
        made = r.header("X-Request-Id")
        self.assertRegex(made, r"^[0-9a-f]{16}$")
        harness.wait_until(lambda: lines_with(self.h.daemon_log(), "request_id=" + made), 5, "its access line")
        self.assertIn(" access: POST /auth/bootstrap 200 ", lines_with(self.h.daemon_log(), "request_id=" + made)[-1])

    def test_route_of_the_region_form_and_of_a_refused_call(self):
        region = self.h.request("GET", "/auth/bootstrap/regionId/0", headers={"X-Request-Id": "rg-1"})
        r = self.h.admin("GET", "/v1/devices/a1PK/dev1", token=None, headers={"X-Request-Id": "rg-2"})
        self.assertEqual(r.status, 401)
        harness.wait_until(lambda: lines_with(self.h.daemon_log(), "request_id=rg-2"), 5, "the access lines")
        self.assertIn(" access: GET /auth/bootstrap/regionId/{regionId} %d " % region.status,
                      lines_with(self.h.daemon_log(), "request_id=rg-1")[-1])
        self.assertIn(" access: GET /v1/devices/{productKey}/{deviceName} 401 ",
                      lines_with(self.h.daemon_log(), "request_id=rg-2")[-1])

    def test_an_insane_request_id_is_replaced(self):
        r = self.h.admin("GET", "/v1/regions", headers={"X-Request-Id": "a b"})
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{16}$")
        r = self.h.admin("GET", "/v1/regions", headers={"X-Request-Id": "x" * 65})
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{16}$")

    def test_the_request_id_follows_the_request_into_its_redis_timeout(self):
        # The 503's line is written when the Redis timer fires, in another
        # turn of the loop: it still carries the request's id.
        rid = "redis-stall.%d_A" % os.getpid()
        self.h.kill_redis(signal.SIGSTOP)
        try:
            r = self.h.admin("GET", "/v1/products/a1PK", headers={"X-Request-Id": rid})
            b = self.h.bootstrap("a1PK", "dev1", client_id="a1PK.dev1", resources="mqtt")
        finally:
            self.h.kill_redis(signal.SIGCONT)
        self.assertEqual(r.status, 503)
        self.assertEqual(b.status, 503)
        harness.wait_until(lambda: len(lines_with(self.h.daemon_log(), "request_id=" + rid)) >= 2, 5,
                           "the warning and the access line")
        mine = lines_with(self.h.daemon_log(), "request_id=" + rid)
        warn = [ln for ln in mine if " warn admin: " in ln]
        self.assertEqual(len(warn), 1, mine)
        self.assertIn("/v1/products/a1PK", warn[0])
        self.assertIn("503", warn[0])
        # The device's 503 line carries the id the listener gave it.
        bid = b.header("X-Request-Id")
        harness.wait_until(lambda: any(" warn bootstrap: " in ln for ln in
                                       lines_with(self.h.daemon_log(), "request_id=" + bid)), 5,
                           "the bootstrap 503 line with its request id")
        # Lines that belong to no request carry none.
        for ln in self.h.daemon_log().splitlines():
            if " info server: " in ln:
                self.assertNotIn("request_id=", ln)


class JsonLogs(unittest.TestCase):
    def test_every_line_is_one_json_object(self):
        h = harness.Harness(name=self.id(), config={"log": {"format": "json", "level": "debug", "access": True}})
        with h:
            h.put_product("a1PK")
            h.register("a1PK", ["dev1"])
            rid = "json-%d" % os.getpid()
            r = h.admin("GET", "/v1/devices/a1PK/dev1", headers={"X-Request-Id": rid})
            self.assertEqual(r.status, 200)
            h.kill_redis(signal.SIGSTOP)
            try:
                self.assertEqual(h.admin("GET", "/v1/stats", headers={"X-Request-Id": rid + "-503"}).status, 503)
            finally:
                h.kill_redis(signal.SIGCONT)
            h.stop_daemon()
            log = h.daemon_log()
        objs = []
        for ln in log.splitlines():
            o = json.loads(ln)  # every line, or this fails
            for k in ("ts", "level", "module", "msg"):
                self.assertIn(k, o, ln)
            self.assertRegex(o["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            objs.append(o)
        access = [o for o in objs if o["module"] == "access" and o.get("request_id") == rid]
        self.assertEqual(len(access), 1, access)
        a = access[0]
        self.assertEqual((a["method"], a["route"], a["status"], a["client"]),
                         ("GET", "/v1/devices/{productKey}/{deviceName}", 200, "127.0.0.1"))
        self.assertIsInstance(a["duration_ms"], (int, float))
        warn = [o for o in objs if o.get("request_id") == rid + "-503" and o["level"] == "warn"]
        self.assertEqual(len(warn), 1, [o for o in objs if o.get("request_id", "").startswith(rid)])
        self.assertIn("/v1/stats", warn[0]["msg"])
        self.assertTrue(any(o["module"] == "server" and "request_id" not in o for o in objs))


class AccessOff(unittest.TestCase):
    def test_no_access_lines_by_default_and_sighup_turns_them_on(self):
        with harness.Harness(name=self.id(), config={"log": {"level": "info", "access": False}}) as h:
            for _ in range(3):
                h.admin("GET", "/v1/regions")
            self.assertEqual(lines_with(h.daemon_log(), " access: "), [])
            # SIGHUP re-reads log.*: the next answers are logged.
            h.config_over["log"] = {"level": "info", "access": True, "format": "json"}
            h.write_config()
            h.signal(signal.SIGHUP)
            harness.wait_until(lambda: "configuration reloaded" in h.daemon_log(), 5, "the reload")
            r = h.admin("GET", "/v1/regions", headers={"X-Request-Id": "after-hup"})
            self.assertEqual(r.status, 200)
            harness.wait_until(lambda: lines_with(h.daemon_log(), '"request_id":"after-hup"'), 5,
                               "a JSON access line after the reload")
            line = lines_with(h.daemon_log(), '"request_id":"after-hup"')[-1]
            self.assertEqual(json.loads(line)["route"], "/v1/regions")


class MovedKey(unittest.TestCase):
    def test_log_level_says_where_it_went(self):
        h = harness.Harness(name=self.id(), config={"log_level": "debug"})
        try:
            with self.assertRaises(RuntimeError) as ctx:
                h.start()
            self.assertIn('"log_level": it is "log": {"level": ...} now', str(ctx.exception))
        finally:
            h.close()


if __name__ == "__main__":
    harness.main()
