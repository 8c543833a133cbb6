"""The records that C and the Lua scripts both read or write
(docs/key-schema.md), each written on one side and read on the other, and the
store's layout version (SPEC §2 readiness; docs/key-schema.md "Layout
version"): a store holding another layout is not served."""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body  # noqa: E402

US1 = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
EU = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
# The longest name of every character a device name may hold.
LONG = "Az09_-.@:" + "x" * 23


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
        self.assertEqual(self.h.redis("HGET", key, "version"), "4")
        # A store of another layout (an older or newer binary wrote it).
        self.h.redis("HSET", key, "version", "1")
        try:
            r = self.h.admin("GET", "/readyz", token=None)
            self.assertEqual(r.status, 503, r)
            j = r.json()
            self.assertEqual((j["failing"], j["schema"]), (["schema"], {"binary": "4", "store": "1"}), j)
            # The worker (restarted: it checks when it starts) applies nothing.
            self.h.stop_daemon()
            self.h.start_daemon()
            bid = self.h.create_batch("productKey,deviceName\na1Lv,lv-0001\n", "targetRegion=us-east-1")["batchId"]
            time.sleep(1.5)
            b = self.h.get_batch(bid)
            self.assertEqual((b["status"], b["processed"]), ("initializing", 0), b)
            self.assertIn("data layout 1", self.h.daemon_log())
        finally:
            self.h.redis("HSET", key, "version", "4")
        harness.wait_until(lambda: self.h.admin("GET", "/readyz", token=None).status == 200, 10, "ready again")
        b = self.h.wait_batch(bid, 30)
        self.assertEqual((b["status"], b["succeeded"]), ("completed", 1), b)


if __name__ == "__main__":
    harness.main()
