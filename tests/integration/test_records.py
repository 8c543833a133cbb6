"""The records that C and the Lua scripts both read or write
(docs/key-schema.md), each written on one side and read on the other, and the
store's layout version (SPEC §2 readiness; docs/key-schema.md "Layout
version"): a store holding another layout is not served."""

import copy
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body  # noqa: E402

US1 = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
EU = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
# The data layout this binary writes (include/schema.h SCHEMA_VERSION).
LAYOUT = "5"
# The longest name of every character a device name may hold.
LONG = "Az09_-.@:" + "x" * 23


def base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while True:
        s = digits[n % 36] + s
        n //= 36
        if n == 0:
            return s


class Records(HarnessCase):
    harness_args = {"config": {"worker": {"pause_ms": 0}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1Rc")
        cls.h.register("a1Rc", [LONG, "rc-0002", "rc-0003"])

    def test_device_record_round_trip(self):
        # Written by C (registration), read by C (GET) ...
        d = self.h.device("a1Rc", LONG)
        self.assertEqual((d["status"], d["activatedAt"], d["lastResolvedRegion"]), ("inactive", None, None), d)
        registered = d["registeredAt"]
        # ... rewritten by Lua (activate.lua: a bootstrap) and read by C ...
        r = self.h.bootstrap("a1Rc", LONG)
        self.assertEqual(r.status, 200, r)
        d = self.h.device("a1Rc", LONG)
        self.assertEqual((d["status"], d["registeredAt"], d["lastResolvedRegion"]), ("active", registered,
                                                                                     "cn-shanghai"), d)
        self.assertIsNotNone(d["activatedAt"])
        # ... rewritten by Lua (apply_devices.lua: a nearest batch, whose
        # candidate list Lua and C both parse), read by C (GET, bootstrap).
        b = self.h.distribute("productKey,deviceName\na1Rc,%s\n" % LONG,
                              "strategy=nearest&regions=us-east-1:iot-us-1,eu-central-1")
        self.assertEqual((b["status"], b["succeeded"]), ("completed", 1), b)
        d = self.h.device("a1Rc", LONG)
        self.assertEqual((d["status"], d["registeredAt"], d["lastResolvedRegion"]), ("inactive", registered,
                                                                                     "cn-shanghai"), d)
        a = d["assignment"]
        self.assertEqual((a["level"], a["strategy"], a["batchId"]), ("device", "nearest", b["batchId"]), a)
        self.assertEqual([(c["region"], c["instance"]) for c in a["candidates"]],
                         [("us-east-1", "iot-us-1"), ("eu-central-1", "iot-eu-1")], a)
        # The notify state, written by Lua, read by C: no broker, so "none".
        self.assertEqual((d["notify"]["state"], d["notify"]["batchId"]), ("none", b["batchId"]), d)
        r = self.h.bootstrap("a1Rc", LONG)
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.body, (US1, EU))

    def test_results_round_trip(self):
        # Results and notify states written by Lua (record.lua, a byte a
        # row, failures aside), read by C (the results CSV).
        rows = [["a1Rc", "rc-0002"], ["a1Rc", "rc-nope"], ["a1Rc", "rc-0003"], ["a1Rc", "rc-0002"]]
        bid = self.h.create_batch(harness.csv_body(rows), "targetRegion=eu-central-1")["batchId"]
        b = self.h.wait_batch(bid)
        self.assertEqual((b["processed"], b["succeeded"], b["failed"]), (4, 2, 2), b)
        _, res = self.h.batch_results(bid)
        self.assertEqual([(r[1], r[2], r[3], r[5]) for r in res],
                         [("rc-0002", "success", "", "none"), ("rc-nope", "failed", "device_not_found", ""),
                          ("rc-0003", "success", "", "none"), ("rc-0002", "failed", "duplicate_row", "")], res)
        self.assertTrue(all(r[4] for r in res if r[2] == "failed"), res)


class Codes(HarnessCase):
    """A record holds its regions and instances by stable short codes
    (docs/key-schema.md, "Codes"): a catalog reload that reorders, adds and
    removes regions changes no record's meaning."""
    harness_args = {"config": {"worker": {"pause_ms": 0}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1Cd")
        cls.h.register("a1Cd", ["cd-0001", "cd-0002"])

    def tearDown(self):
        self.h.write_regions()
        self.h.signal(signal.SIGHUP)
        super().tearDown()

    def record(self, dn):
        return self.h.redis("HGET", harness.key("device", "a1Cd", dn), "a1Cd/" + dn)

    def code(self, kind, ident):
        return self.h.redis("HGET", harness.key("codes"), kind + ":" + ident)

    def reload(self, regions):
        offset = len(self.h.daemon_log())
        self.h.write_regions(regions)
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: re.search("catalog reloaded", self.h.daemon_log()[offset:]), 5, "the reload")

    def test_reload_keeps_every_record_meaning(self):
        r = self.h.bootstrap("a1Cd", "cd-0001")
        self.assertEqual(r.status, 200, r)
        sh = self.code("r", "cn-shanghai")
        self.assertRegex(sh or "", "^[1-9a-z][0-9a-z]{0,6}$")
        # The record holds the code, never the id.
        rec = self.record("cd-0001")
        self.assertEqual(rec.split(";")[5], sh, rec)
        self.assertNotIn("cn-shanghai", rec)
        # A catalog with its regions in another order, cn-shanghai's
        # instance renamed away, and a region that was never seen first.
        regions = copy.deepcopy(harness.default_regions())
        regions["regions"].reverse()
        new = copy.deepcopy(regions["regions"][0])
        new["id"], new["name"] = "ap-south-1", "Asia Pacific (Mumbai)"
        for i, inst in enumerate(new["instances"]):
            inst["id"] = "iot-ap-%d" % i
        regions["regions"].insert(0, new)
        self.reload(regions)
        d = self.h.device("a1Cd", "cd-0001")
        self.assertEqual(d["lastResolvedRegion"], "cn-shanghai", d)
        self.assertEqual(self.code("r", "cn-shanghai"), sh)
        # A device moved to the new region: the new region gets a code of
        # its own, the notify names the old instance by its code.
        b = self.h.distribute("productKey,deviceName\na1Cd,cd-0001\n", "targetRegion=ap-south-1")
        self.assertEqual((b["status"], b["succeeded"]), ("completed", 1), b)
        rec = self.record("cd-0001")
        inst = self.code("i", "iot-cn-sh-public")
        self.assertRegex(inst, "^[1-9a-z][0-9a-z]*$")
        self.assertTrue(rec.endswith(":" + inst), (rec, inst))
        r = self.h.bootstrap("a1Cd", "cd-0001")
        self.assertEqual(r.status, 200, r)
        ap = self.code("r", "ap-south-1")
        self.assertNotIn(ap, ("", sh))
        self.assertEqual(self.record("cd-0001").split(";")[5], ap)
        self.assertEqual(self.h.device("a1Cd", "cd-0001")["lastResolvedRegion"], "ap-south-1")
        # Back to a catalog without ap-south-1: the code still reads.
        self.reload(harness.default_regions())
        self.assertEqual(self.h.device("a1Cd", "cd-0001")["lastResolvedRegion"], "ap-south-1")
        self.assertEqual(self.code("r", "ap-south-1"), ap)

    def test_a_code_given_by_another_process_is_read(self):
        # Another process gave us-east-1 a code this daemon never saw: a
        # device whose record holds it still reads right.
        codes = harness.key("codes")
        n = self.h.redis("HINCRBY", codes, "#", 1)
        mine = base36(int(n))
        self.assertEqual(self.code("r", "zz-other-1"), "")  # (nil)
        self.h.redis("HSET", codes, "r:zz-other-1", mine)
        rec = self.record("cd-0002").split(";")
        rec[5] = mine
        self.h.redis("HSET", harness.key("device", "a1Cd", "cd-0002"), "a1Cd/cd-0002", ";".join(rec))
        self.assertEqual(self.h.device("a1Cd", "cd-0002")["lastResolvedRegion"], "zz-other-1")


class LayoutVersion(HarnessCase):
    harness_args = {"config": {"worker": {"pause_ms": 0}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1Lv")
        cls.h.register("a1Lv", ["lv-0001"])

    def test_another_layout_is_not_served(self):
        r = self.h.admin("GET", "/readyz", token=None)
        self.assertEqual(r.status, 200, r)
        key = harness.key("schema")
        self.assertEqual(self.h.redis("HGET", key, "version"), LAYOUT)
        # A store of another layout (an older or newer binary wrote it).
        self.h.redis("HSET", key, "version", "1")
        try:
            r = self.h.admin("GET", "/readyz", token=None)
            self.assertEqual(r.status, 503, r)
            j = r.json()
            self.assertEqual((j["failing"], j["schema"]), (["schema"], {"binary": LAYOUT, "store": "1"}), j)
            # The worker (restarted: it checks when it starts) applies nothing.
            self.h.stop_daemon()
            self.h.start_daemon()
            bid = self.h.create_batch("productKey,deviceName\na1Lv,lv-0001\n", "targetRegion=us-east-1")["batchId"]
            time.sleep(1.5)
            b = self.h.get_batch(bid)
            self.assertEqual((b["status"], b["processed"]), ("initializing", 0), b)
            self.assertIn("data layout 1", self.h.daemon_log())
        finally:
            self.h.redis("HSET", key, "version", LAYOUT)
        harness.wait_until(lambda: self.h.admin("GET", "/readyz", token=None).status == 200, 10, "ready again")
        b = self.h.wait_batch(bid, 30)
        self.assertEqual((b["status"], b["succeeded"]), ("completed", 1), b)


if __name__ == "__main__":
    harness.main()
