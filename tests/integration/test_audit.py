"""The audit log (SPEC §5): every operator call that changes something or
reads a secret, and every dynamic registration, with actor, address, action,
target and result; listed (GET /v1/audit), exported as CSV; and the
activations through bootstrap per interval (GET /v1/stats/activations)."""

import csv
import hashlib
import io
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase  # noqa: E402

ACTOR = "sha256:" + hashlib.sha256(harness.TOKEN.encode()).hexdigest()[:8]


class Audit(HarnessCase):
    harness_args = {"config": {"worker": {"pause_ms": 0}}}

    def entries(self, query=""):
        r = self.h.admin("GET", "/v1/audit" + ("?" + query if query else ""))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def newest(self, action):
        for e in self.entries("limit=1000")["entries"]:
            if e["action"] == action:
                return e
        self.fail("no %s in the audit log" % action)

    def test_changes_are_kept_reads_are_not(self):
        self.h.put_product("a1Au")
        e = self.newest("product.put")
        self.assertEqual((e["actor"], e["from"], e["target"], e["result"]), (ACTOR, "127.0.0.1", "a1Au", "201"), e)
        self.assertRegex(e["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.h.register("a1Au", ["au-0001"])
        self.assertEqual(self.newest("devices.register")["target"], "a1Au")
        bid = self.h.create_batch("productKey,deviceName\na1Au,au-0001\n", "targetRegion=eu-central-1")["batchId"]
        self.assertEqual(self.newest("batch.create")["result"], "202")
        self.h.wait_batch(bid)
        r = self.h.admin("POST", "/v1/accounts/acct-z/auth-codes")
        self.assertEqual(r.status, 201, r)
        self.assertNotIn(r.json()["authCode"], repr(self.entries("limit=1000")))
        self.assertEqual(self.newest("authcode.issue")["target"], "acct-z")
        before = len(self.entries("limit=1000")["entries"])
        for path in ("/v1/products/a1Au", "/v1/devices/a1Au/au-0001", "/v1/batches/" + bid, "/v1/stats"):
            self.assertEqual(self.h.admin("GET", path).status, 200)
        self.assertEqual(len(self.entries("limit=1000")["entries"]), before, "reads are not audited")

    def test_refused_calls_too(self):
        r = self.h.admin("PUT", "/v1/products/a1Nt", {"homeRegion": "cn-shanghai"}, token=None)
        self.assertEqual(r.status, 401, r)
        e = self.newest("product.put")
        self.assertEqual((e["actor"], e["target"], e["result"]), ("-", "a1Nt", "401"), e)
        r = self.h.admin("PUT", "/v1/products/a1Bd", {"homeRegion": "mars-north-1"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.newest("product.put")["result"], "400")

    def test_dynamic_registrations(self):
        import subprocess
        r = self.h.put_product("a1Ad", dynamicRegistration="open")
        secret = r.json()["productSecret"]
        sign = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret],
                              input=b"deviceNamead-0001productKeya1Adrandom42", stdout=subprocess.PIPE,
                              check=True).stdout.decode().split()[-1]
        body = "productKey=a1Ad&deviceName=ad-0001&random=42&sign=%s&signMethod=hmacsha256" % sign
        r = self.h.public(harness.sdk_request(body, path="/auth/register/device"))
        self.assertEqual(r.status, 200, r)
        r = self.h.public(harness.sdk_request(body, path="/auth/register/device"))
        self.assertEqual(r.status, 401, r)
        got = [e for e in self.entries("limit=1000")["entries"] if e["action"] == "device.register"]
        self.assertEqual([(e["actor"], e["target"], e["result"]) for e in got[:2]],
                         [("device", "a1Ad/ad-0001", "401"), ("device", "a1Ad/ad-0001", "200")], got)
        self.assertNotIn(secret, repr(self.entries("limit=1000")))

    def test_pages_filters_and_export(self):
        for i in range(5):
            self.h.put_product("a1Pg%d" % i)
        first = self.entries("limit=2")
        self.assertEqual(len(first["entries"]), 2)
        self.assertIsNotNone(first["nextCursor"])
        second = self.entries("limit=2&cursor=" + first["nextCursor"])
        ids = [e["id"] for e in first["entries"] + second["entries"]]
        self.assertEqual(len(set(ids)), 4, "no entry on two pages")
        self.assertEqual(ids, sorted(ids, key=lambda i: tuple(map(int, i.split("-"))), reverse=True))
        self.assertEqual(self.entries("until=1700000000")["entries"], [])
        self.assertEqual(len(self.entries("since=%d&limit=1000" % (time.time() + 3600))["entries"]), 0)
        for bad in ("limit=0", "limit=1001", "since=yesterday", "cursor=x", "color=red"):
            r = self.h.admin("GET", "/v1/audit?" + bad)
            self.assertEqual(r.status, 400, (bad, r))
        # A target that a spreadsheet would run comes back neutralised in the export.
        self.h.admin("PUT", "/v1/products/=1+2", {"homeRegion": "cn-shanghai"})
        r = self.h.admin("GET", "/v1/audit?limit=5", headers={"Accept": "text/csv"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/csv"), r)
        rows = list(csv.reader(io.StringIO(r.body.decode(), newline="")))
        self.assertEqual(rows[0], ["at", "actor", "from", "action", "target", "result"])
        self.assertEqual(rows[1][3:], ["product.put", "'=1+2", "400"], rows[1])
        self.assertIn(b'"\'=1+2"', r.body)
        self.assertEqual(len(rows), 6)
        self.assertIsNotNone(r.header("X-Next-Cursor"))

    def test_activations_per_interval(self):
        self.h.put_product("a1Ac")
        self.h.register("a1Ac", ["ac-0001", "ac-0002"])
        for dn in ("ac-0001", "ac-0002", "ac-0001"):  # the third is no activation
            self.assertEqual(self.h.bootstrap("a1Ac", dn).status, 200)
        now = int(time.time())

        def stats():
            r = self.h.admin("GET", "/v1/stats/activations?interval=5m&since=%d&until=%d" % (now - 600, now + 1))
            self.assertEqual(r.status, 200, r)
            return r.json()
        j = harness.wait_until(lambda: (lambda j: j if j["total"] >= 2 else None)(stats()), 5, "the activations")
        self.assertEqual(j["intervalSeconds"], 300)
        self.assertEqual(sum(a["count"] for a in j["activations"]), j["total"])
        self.assertEqual(j["total"], 2)
        self.assertEqual(len(j["activations"]), 3)  # 600 s and the slot under way
        r = self.h.admin("GET", "/v1/stats/activations?interval=1d")
        self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(r.json()["total"], 2)
        for bad in ("interval=7m", "interval=0h", "since=0", "since=%d&until=%d" % (now, now - 10), "x=1"):
            r = self.h.admin("GET", "/v1/stats/activations?" + bad)
            self.assertEqual(r.status, 400, (bad, r))


if __name__ == "__main__":
    harness.main()
