"""Mass-production records (SPEC §5): every registration call (CSV upload,
{"count":N}, a day's dynamic registrations) is a record of its product, whose
CSV can be downloaded again for the factory (audited); a device's secret can
be reset."""

import csv
import hashlib
import io
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, sdk_request  # noqa: E402

ACTOR = "sha256:" + hashlib.sha256(harness.TOKEN.encode()).hexdigest()[:8]


def hmac256(key, msg):
    return subprocess.run(["openssl", "dgst", "-sha256", "-hmac", key], input=msg.encode(), stdout=subprocess.PIPE,
                          check=True, timeout=10).stdout.decode().split()[-1]


class Registrations(HarnessCase):
    def records(self, pk):
        r = self.h.admin("GET", "/v1/products/%s/registrations" % pk)
        self.assertEqual(r.status, 200, r)
        return r.json()["registrations"]

    def download(self, pk, rid):
        r = self.h.admin("GET", "/v1/products/%s/registrations/%s.csv" % (pk, rid))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        return r.body

    def signed(self, pk, dn, secret):
        sign = hmac256(secret, "clientId%s.%sdeviceName%sproductKey%s" % (pk, dn, dn, pk))
        return self.h.public(sdk_request("productKey=%s&deviceName=%s&clientId=%s.%s&signmethod=hmacsha256&sign=%s"
                                         % (pk, dn, pk, dn, sign)))

    def test_calls_are_records_and_download_again(self):
        self.h.put_product("a1Rg", bootstrapAuth="required")
        up = self.h.admin("POST", "/v1/products/a1Rg/devices", "deviceName,deviceSecret\r\nrg-0001,=s3cret+1\r\nrg-0002,\r\n",
                          content_type="text/csv")
        self.assertEqual(up.status, 200, up)
        gen = self.h.admin("POST", "/v1/products/a1Rg/devices", {"count": 3})
        self.assertEqual(gen.status, 200, gen)
        recs = self.records("a1Rg")
        self.assertEqual([(r["method"], r["count"], r["actor"]) for r in recs], [("count", 3, ACTOR), ("csv", 2, ACTOR)])
        self.assertEqual([r["id"] for r in recs], [gen.header("X-Registration-Id"), up.header("X-Registration-Id")])
        self.assertRegex(recs[0]["createdAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # The factory's file again, byte for byte; a secret as it is, even "=..." first.
        self.assertEqual(self.download("a1Rg", recs[1]["id"]), up.body)
        self.assertEqual(self.download("a1Rg", recs[0]["id"]), gen.body)
        self.assertIn(b"rg-0001,=s3cret+1\r\n", up.body)
        # Every download is audited (a read of secrets).
        r = self.h.admin("GET", "/v1/audit?limit=10")
        got = [(e["action"], e["target"], e["result"]) for e in r.json()["entries"]]
        self.assertIn(("registration.download", "a1Rg/%s.csv" % recs[0]["id"], "200"), got)

    def test_secret_reset(self):
        self.h.put_product("a1Rs", bootstrapAuth="required")
        old = self.h.register("a1Rs", ["rs-0001"])["rs-0001"]
        self.assertEqual(self.signed("a1Rs", "rs-0001", old).status, 200)
        r = self.h.admin("POST", "/v1/devices/a1Rs/rs-0001/secret")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        j = r.json()
        self.assertEqual((j["productKey"], j["deviceName"]), ("a1Rs", "rs-0001"))
        self.assertRegex(j["deviceSecret"], r"^[0-9a-f]{32}$")
        self.assertEqual(self.signed("a1Rs", "rs-0001", old).status, 401)
        self.assertEqual(self.signed("a1Rs", "rs-0001", j["deviceSecret"]).status, 200)
        self.assertNotIn(j["deviceSecret"], self.h.daemon_log())
        # The registration's file gives the secret in force.
        rid = self.records("a1Rs")[0]["id"]
        self.assertIn(("rs-0001," + j["deviceSecret"]).encode(), self.download("a1Rs", rid))
        self.assertEqual(self.h.admin("POST", "/v1/devices/a1Rs/rs-9999/secret").status, 404)
        self.assertEqual(self.h.admin("POST", "/v1/devices/a1Rs/rs-0001/secret", token=None).status, 401)
        self.assertEqual(self.h.admin("GET", "/v1/devices/a1Rs/rs-0001/secret").status, 405)

    def test_dynamic_registrations_one_record_a_day(self):
        r = self.h.put_product("a1Rd", dynamicRegistration="open")
        psecret = r.json()["productSecret"]
        issued = {}
        for dn in ("rd-0001", "rd-0002"):
            body = "productKey=a1Rd&deviceName=%s&random=7&sign=%s&signMethod=hmacsha256" % (
                dn, hmac256(psecret, "deviceName%sproductKeya1Rdrandom7" % dn))
            r = self.h.public(sdk_request(body, path="/auth/register/device"))
            self.assertEqual(r.status, 200, r)
            issued[dn] = r.json()["data"]["deviceSecret"]
        day = time.strftime("d%Y%m%d", time.gmtime())
        recs = harness.wait_until(lambda: (lambda rs: rs if rs and rs[0]["count"] == 2 else None)(self.records("a1Rd")),
                                  5, "the day's record")
        self.assertEqual((recs[0]["id"], recs[0]["method"], recs[0]["actor"]), (day, "dynamic", "device"), recs)
        rows = list(csv.reader(io.StringIO(self.download("a1Rd", day).decode(), newline="")))
        self.assertEqual(rows, [["productKey", "deviceName", "deviceSecret"],
                                ["a1Rd", "rd-0001", issued["rd-0001"]], ["a1Rd", "rd-0002", issued["rd-0002"]]])

    def test_not_found(self):
        self.h.put_product("a1Rn")
        self.assertEqual(self.records("a1Rn"), [])
        for path in ("/v1/products/a1Nope/registrations", "/v1/products/a1Rn/registrations/99.csv",
                     "/v1/products/a1Rn/registrations/x.csv", "/v1/products/a1Rn/registrations/1",
                     "/v1/products/a1Rn/registrations/d2026.csv"):
            r = self.h.admin("GET", path)
            self.assertEqual(r.status, 404, (path, r))
        self.assertEqual(self.h.admin("POST", "/v1/products/a1Rn/registrations").status, 405)


if __name__ == "__main__":
    harness.main()
