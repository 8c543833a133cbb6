"""Distribution batches (docs/batches.md, SPEC §4 resolution order, §5):
upload and whole-batch rejections, per-device results, effects on the device
entries and on bootstrap answers, cross-account codes, listing, retry and
statistics. One daemon in the default `all` role (API and worker in one
process) per test class."""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body, csv_body  # noqa: E402
from test_admin import AdminAsserts  # noqa: E402

RESULTS_HEADER = "productKey,deviceName,result,code,message,notify"
TIME_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
EU = "targetRegion=eu-central-1"
EU_ANSWER = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
US1_ANSWER = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
# redis.timeout_ms: these tests are not about Redis latency (test_redis_fault
# is); a generous timeout keeps a loaded test machine from turning into 503s.
BATCH_CONFIG = {"worker": {"pause_ms": 0}, "limits": {"batch_max_devices": 1000},
                "redis": {"timeout_ms": 2000}}


def sh_answer(pk):
    return success_body([("mqtt", "%s.iot-as-mqtt.cn-shanghai.example.com" % pk, 1883, None)])


def us2_answer(dn):
    return success_body([("mqtt", "%s.mqtt-2.us-east-1.example.com" % dn, 8884, None)])


def rows_csv(pk, names, eol="\n"):
    return csv_body([[pk, n] for n in names], eol=eol)


class BatchAsserts(AdminAsserts):
    """Checks shared by the batch tests (self.h is the Harness)."""

    def assertAnswer(self, pk, dn, body):
        r = self.h.bootstrap(pk, dn)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body, "bootstrap answer of %s/%s" % (pk, dn))

    def assertAccepted(self, r, total):
        """The 202 answer of an accepted upload; returns the batch id."""
        self.assertEqual(r.status, 202, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r.header_lines)
        j = r.json()
        self.assertIsInstance(j.get("batchId"), str, r.body)
        self.assertTrue(j["batchId"], r.body)
        self.assertEqual(j.get("status"), "initializing", r.body)
        self.assertEqual(j.get("total"), total, r.body)
        return j["batchId"]

    def upload(self, body, query=EU, total=None, content_type="text/csv"):
        r = self.h.upload_batch(body, query, content_type)
        if total is None:
            self.assertEqual(r.status, 202, r)
            total = r.json().get("total")
        return self.assertAccepted(r, total)

    def assertCompleted(self, batch_id, total, succeeded, timeout=30):
        b = self.h.wait_batch(batch_id, timeout)
        for k in ("batchId", "status", "total", "processed", "succeeded", "failed", "createdAt", "updatedAt",
                  "strategy"):
            self.assertIn(k, b)
        self.assertEqual(b["batchId"], batch_id)
        self.assertEqual(b["status"], "completed", b)
        self.assertEqual((b["total"], b["processed"], b["succeeded"], b["failed"]),
                         (total, total, succeeded, total - succeeded), b)
        self.assertRegex(b["createdAt"], TIME_RE)
        self.assertRegex(b["updatedAt"], TIME_RE)
        self.assertGreaterEqual(b["updatedAt"], b["createdAt"])
        return b

    def assertResults(self, batch_id, expected):
        """EXPECTED: [(productKey, deviceName, failure code or None)] in upload
        order. Checks the raw header line and the rows parsed with csv."""
        r, rows = self.h.batch_results(batch_id)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/csv"), r.header_lines)
        first = r.body.split(b"\n", 1)[0]
        self.assertIn(first, (RESULTS_HEADER.encode(), RESULTS_HEADER.encode() + b"\r"),
                      "raw header line of the results")
        got = [tuple(row[:4]) for row in rows]
        want = [(pk, dn, "failed" if code else "success", code or "") for pk, dn, code in expected]
        self.assertEqual(got, want)
        for row in rows:
            self.assertEqual(len(row), 6, row)
            if row[2] == "success":
                self.assertEqual(row[4], "", "a success row has no message: %r" % row)
            else:
                self.assertTrue(row[4], "a failure row should say why: %r" % row)
        return rows

    # -- "nothing written"

    def snapshot(self, devices=()):
        # Every key on the batch side (docs/key-schema.md): a refused upload adds none.
        prefix = harness.key("batches")
        keys = self.h.redis("KEYS", prefix + ":*")
        seqs = sorted(k for k in keys.split("\n") if re.match(r"^%s:\d+(:.)?$" % re.escape(prefix), k))
        return {"batches": self.h.all_batch_ids(), "batch keys": seqs,
                "devices": {"%s/%s" % d: self.h.device(*d) for d in devices}}

    def reject(self, body, query, status, code, content_type="text/csv", devices=(), mentions=None):
        """Uploads, expects the whole batch refused with STATUS/CODE and that
        nothing was written: no new batch, the DEVICES' entries unchanged.
        MENTIONS: a regex the error (message/details) must match."""
        before = self.snapshot(devices)
        r = self.h.upload_batch(body, query, content_type)
        if isinstance(code, (tuple, list)):
            err = self.assertAdminError(r, status)
            self.assertIn(err["code"], code, r.body)
        else:
            err = self.assertAdminError(r, status, code)
        if mentions:
            self.assertRegex(json.dumps(err), mentions, "the error should name the row/column or parameter")
        self.assertEqual(self.snapshot(devices), before, "a refused batch must write nothing")
        return err


# ---------------------------------------------------------------- uploads

class Upload(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkU")
        cls.h.register("pkU", ["u-crlf1", "u-crlf2", "u-crlf3", "u-lf1", "u-lf2", "u-lf3", "u-json1",
                               "u-ct1", "u-256"])
        cls.h.put_product("pkBig")
        cls.big = ["b-%04d" % i for i in range(1001)]
        cls.h.register("pkBig", cls.big)

    def test_template(self):
        r = self.h.admin("GET", "/v1/batches/template.csv")
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/csv"), r.header_lines)
        lines = r.text().splitlines()
        self.assertEqual(lines, ["productKey,deviceName", "a1B2c3D4e5F,dev-0001"])
        # The template is a valid upload as it stands (its product does not exist).
        bid = self.upload(r.body, EU, total=1)
        self.assertCompleted(bid, 1, 0)
        self.assertResults(bid, [("a1B2c3D4e5F", "dev-0001", "product_not_found")])

    def test_bom_crlf_quotes(self):
        body = ('\ufeffproductKey,deviceName\r\n'
                'pkU,u-crlf1\r\n'
                '"pkU","u-crlf2"\r\n'
                'pkU,"u,comma"\r\n'
                'pkU,"u""q1"\r\n'
                '"pkU",u-crlf3\r\n').encode("utf-8")
        bid = self.upload(body, EU, total=5)
        b = self.assertCompleted(bid, 5, 3)
        self.assertEqual(b["strategy"], "region")
        self.assertEqual(b.get("kind"), "devices")
        self.assertEqual(b.get("targetRegion"), "eu-central-1")
        self.assertEqual(b.get("targetInstance"), "iot-eu-1")
        self.assertIsNone(b.get("targetAccount", "absent"))
        self.assertIsNone(b.get("error", "absent"))
        self.assertResults(bid, [("pkU", "u-crlf1", None), ("pkU", "u-crlf2", None),
                                 ("pkU", "u,comma", "invalid_device_name"),
                                 ("pkU", 'u"q1', "invalid_device_name"), ("pkU", "u-crlf3", None)])
        for dn in ("u-crlf1", "u-crlf2", "u-crlf3"):
            self.assertAnswer("pkU", dn, EU_ANSWER)
        # The raw results keep the RFC 4180 quoting of the odd names.
        r, _ = self.h.batch_results(bid)
        self.assertIn(b'pkU,"u,comma",failed,invalid_device_name,', r.body)

    def test_formula_cells_neutralised(self):
        # OWASP CSV injection: what a client sent that is no valid name comes
        # back quoted behind a "'"; valid names (even "-" or "@" first) as they are.
        self.h.register("pkU", ["-dash-1", "@at-0001"])
        rows = [["pkU", "=cmd|' /C calc'!A0"], ["=1+2", "u-x001"], ["pkU", "-dash-1"], ["pkU", "@at-0001"],
                ["pkU", "+bad name"]]
        bid = self.upload(csv_body(rows), EU, total=5)
        self.assertCompleted(bid, 5, 2)
        r, res = self.h.batch_results(bid)
        self.assertIn(b"\r\npkU,\"'=cmd|' /C calc'!A0\",failed,invalid_device_name,", r.body)
        self.assertIn(b"\r\n\"'=1+2\",u-x001,failed,", r.body)
        self.assertIn(b"\r\npkU,-dash-1,success,", r.body)
        self.assertIn(b"\r\npkU,@at-0001,success,", r.body)
        self.assertIn(b"\r\npkU,\"'+bad name\",failed,", r.body)
        self.assertEqual([row[1] for row in res], ["'=cmd|' /C calc'!A0", "u-x001", "-dash-1", "@at-0001",
                                                   "'+bad name"])

    def test_lf_and_blank_trailing_line(self):
        bid = self.upload("productKey,deviceName\npkU,u-lf1\npkU,u-lf2\n\n", EU, total=2)
        self.assertCompleted(bid, 2, 2)
        self.assertResults(bid, [("pkU", "u-lf1", None), ("pkU", "u-lf2", None)])

    def test_no_final_line_end(self):
        bid = self.upload("productKey,deviceName\npkU,u-lf3", "targetRegion=us-east-1", total=1)
        self.assertCompleted(bid, 1, 1)
        self.assertResults(bid, [("pkU", "u-lf3", None)])
        self.assertAnswer("pkU", "u-lf3", US1_ANSWER)

    def test_content_type_with_charset(self):
        r = self.h.upload_batch("productKey,deviceName\npkU,u-ct1\n", EU, content_type="text/csv; charset=utf-8")
        bid = self.assertAccepted(r, 1)
        self.assertCompleted(bid, 1, 1)

    def test_json_devices(self):
        body = {"strategy": "region", "targetRegion": "us-east-1", "targetInstance": "iot-us-2",
                "devices": [{"productKey": "pkU", "deviceName": "u-json1"},
                            {"productKey": "pkU", "deviceName": "u-nosuch"}]}
        bid = self.upload(body, "", total=2)
        b = self.assertCompleted(bid, 2, 1)
        self.assertEqual(b.get("targetInstance"), "iot-us-2")
        self.assertResults(bid, [("pkU", "u-json1", None), ("pkU", "u-nosuch", "device_not_found")])
        self.assertAnswer("pkU", "u-json1", us2_answer("u-json1"))

    def test_field_of_256_bytes_is_a_row_failure(self):
        # Over 256 bytes refuses the batch (Rejections); 256 is read and the
        # row fails on its name.
        name = "n" * 256
        bid = self.upload(csv_body([["pkU", "u-256"], ["pkU", name]]), EU, total=2)
        self.assertCompleted(bid, 2, 1)
        self.assertResults(bid, [("pkU", "u-256", None), ("pkU", name, "invalid_device_name")])

    def test_max_rows_accepted_one_more_refused(self):
        before = self.snapshot([("pkBig", "b-0000")])
        r = self.h.upload_batch(rows_csv("pkBig", self.big), EU)
        self.assertAdminError(r, 413, "too_many_devices")
        self.assertEqual(self.snapshot([("pkBig", "b-0000")]), before)
        r = self.h.upload_batch({"targetRegion": "eu-central-1",
                                 "devices": [{"productKey": "pkBig", "deviceName": n} for n in self.big]})
        self.assertAdminError(r, 413, "too_many_devices")
        self.assertEqual(self.snapshot([("pkBig", "b-0000")]), before)
        bid = self.upload(rows_csv("pkBig", self.big[:1000], eol="\r\n"), EU, total=1000)
        self.assertCompleted(bid, 1000, 1000, timeout=60)
        _, rows = self.h.batch_results(bid)
        self.assertEqual([(r[1], r[2]) for r in rows], [(n, "success") for n in self.big[:1000]])
        self.assertAnswer("pkBig", "b-0999", EU_ANSWER)
        self.assertAnswer("pkBig", "b-1000", sh_answer("pkBig"))


class Rejections(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}
    DEV = [("pkR", "r-dev1")]
    OK = "productKey,deviceName\npkR,r-dev1\n"

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkR")
        cls.h.register("pkR", ["r-dev1", "r-dev2"])

    def test_unterminated_quote(self):
        self.reject('productKey,deviceName\npkR,r-dev1\npkR,"r-dev2\n', EU, 400, "invalid_csv",
                    devices=self.DEV, mentions=r"\b[23]\b")

    def test_wrong_number_of_columns(self):
        self.reject("productKey,deviceName\npkR,r-dev1\npkR,r-dev2,extra\n", EU, 400, "invalid_csv",
                    devices=self.DEV, mentions=r"\b[23]\b")
        self.reject("productKey,deviceName\npkR,r-dev1\npkR\n", EU, 400, "invalid_csv", devices=self.DEV)

    def test_wrong_header(self):
        for header in ("deviceName,productKey", "productKey,devicename", "productKey,deviceName,extra",
                       "productKey", "pk,dn", "pkR,r-dev2"):
            with self.subTest(header=header):
                self.reject(header + "\npkR,r-dev1\n", EU, 400, "invalid_header", devices=self.DEV)

    def test_header_only(self):
        for body in ("productKey,deviceName\n", "productKey,deviceName",
                     "\ufeffproductKey,deviceName\r\n"):
            with self.subTest(body=body):
                self.reject(body, EU, 400, "empty_batch", devices=self.DEV)

    def test_empty_body(self):
        # No header and no rows: either reading is fine, as long as nothing is written.
        self.reject("", EU, 400, ("empty_batch", "invalid_header"), devices=self.DEV)

    def test_empty_json_lists(self):
        self.reject({"targetRegion": "eu-central-1", "devices": []}, "", 400, "empty_batch", devices=self.DEV)
        self.reject({"targetRegion": "eu-central-1", "products": []}, "", 400, "empty_batch", devices=self.DEV)

    def test_too_many_rows(self):
        body = rows_csv("pkR", ["r-%04d" % i for i in range(1001)])
        self.reject(body, EU, 413, "too_many_devices", devices=self.DEV)

    def test_bad_utf8(self):
        self.reject(b"productKey,deviceName\npkR,r-dev1\npkR,r-d\xffv2\n", EU, 400, "invalid_csv",
                    devices=self.DEV, mentions=r"\b[23]\b")
        self.reject(b"productKey,deviceName\npkR,r-dev1\npkR,r-d\xc3\n", EU, 400, "invalid_csv", devices=self.DEV)

    def test_overlong_field(self):
        self.reject("productKey,deviceName\npkR,r-dev1\npkR,%s\n" % ("x" * 300), EU, 400, "invalid_csv",
                    devices=self.DEV, mentions=r"(?i)(\b[23]\b.*(column|devicename)|(column|devicename).*\b[23]\b)")
        self.reject("productKey,deviceName\n%s,r-dev1\n" % ("p" * 300), EU, 400, "invalid_csv", devices=self.DEV)

    def test_unknown_region(self):
        self.reject(self.OK, "targetRegion=mars-north-1", 400, "unknown_region", devices=self.DEV,
                    mentions=r"targetRegion|mars-north-1")
        self.reject(self.OK, "strategy=nearest&regions=eu-central-1,mars-north-1", 400, "unknown_region",
                    devices=self.DEV, mentions=r"regions|mars-north-1")

    def test_unknown_instance(self):
        self.reject(self.OK, "targetRegion=eu-central-1&targetInstance=iot-us-1", 400, "unknown_instance",
                    devices=self.DEV, mentions=r"targetInstance|iot-us-1")
        self.reject(self.OK, "targetRegion=eu-central-1&targetInstance=iot-nope", 400, "unknown_instance",
                    devices=self.DEV)
        self.reject(self.OK, "strategy=nearest&regions=eu-central-1:iot-nope", 400, "unknown_instance",
                    devices=self.DEV)

    def test_missing_target_region(self):
        self.reject(self.OK, "", 400, "missing_parameter", devices=self.DEV, mentions="targetRegion")
        self.reject(self.OK, "strategy=region", 400, "missing_parameter", devices=self.DEV, mentions="targetRegion")
        self.reject(self.OK, "targetInstance=iot-eu-1", 400, "missing_parameter", devices=self.DEV)

    def test_nearest_without_regions(self):
        self.reject(self.OK, "strategy=nearest", 400, "missing_parameter", devices=self.DEV, mentions="regions")
        self.reject(self.OK, "strategy=nearest&targetRegion=eu-central-1", 400,
                    ("missing_parameter", "invalid_parameter"), devices=self.DEV)
        self.reject(self.OK, "strategy=nearest&regions=", 400, ("missing_parameter", "invalid_parameter"),
                    devices=self.DEV)

    def test_nearest_region_twice(self):
        self.reject(self.OK, "strategy=nearest&regions=eu-central-1,eu-central-1", 400, "invalid_parameter",
                    devices=self.DEV)
        self.reject(self.OK, "strategy=nearest&regions=us-east-1:iot-us-1,us-east-1:iot-us-2", 400,
                    "invalid_parameter", devices=self.DEV)

    def test_nearest_with_target_account(self):
        code = self.h.auth_code("acct-b")["authCode"]
        self.reject(self.OK, "strategy=nearest&regions=eu-central-1&targetAccount=acct-b&authCode=" + code,
                    400, "invalid_strategy", devices=self.DEV)
        # A refused batch does not use the code up.
        bid = self.upload(self.OK, "targetRegion=eu-central-1&targetAccount=acct-b&authCode=" + code, total=1)
        self.assertCompleted(bid, 1, 1)

    def test_products_with_nearest(self):
        self.reject({"strategy": "nearest", "regions": ["eu-central-1"], "products": ["pkR"]}, "", 400,
                    "invalid_strategy", devices=self.DEV)

    def test_missing_auth_code(self):
        self.reject(self.OK, EU + "&targetAccount=acct-b", 400, "auth_code_required", devices=self.DEV)

    def test_wrong_auth_code(self):
        issued = self.h.auth_code("acct-b")["authCode"]
        wrong = "%06d" % ((int(issued) + 500000) % 1000000)
        self.reject(self.OK, EU + "&targetAccount=acct-b&authCode=" + wrong, 400, "invalid_auth_code",
                    devices=self.DEV)

    def test_unsupported_media_type(self):
        for ct in ("text/plain", "application/x-www-form-urlencoded", "application/xml", None):
            with self.subTest(content_type=ct):
                self.reject(self.OK, EU, 415, "unsupported_media_type", content_type=ct, devices=self.DEV)

    def test_unknown_query_parameter(self):
        self.reject(self.OK, EU + "&targetRegon=us-east-1", 400, "invalid_parameter", devices=self.DEV,
                    mentions="targetRegon")
        self.reject(self.OK, "strategy=closest&" + EU, 400, "invalid_parameter", devices=self.DEV,
                    mentions="strategy|closest")

    def test_query_parameter_twice(self):
        self.reject(self.OK, EU + "&targetRegion=us-east-1", 400, "invalid_parameter", devices=self.DEV,
                    mentions="targetRegion")

    def test_parameter_in_query_and_json(self):
        body = {"targetRegion": "eu-central-1", "devices": [{"productKey": "pkR", "deviceName": "r-dev1"}]}
        self.reject(body, EU, 400, "invalid_parameter", devices=self.DEV, mentions="targetRegion")
        body = {"strategy": "region", "targetRegion": "eu-central-1",
                "devices": [{"productKey": "pkR", "deviceName": "r-dev1"}]}
        self.reject(body, "strategy=region", 400, "invalid_parameter", devices=self.DEV, mentions="strategy")

    def test_invalid_json(self):
        self.reject('{"targetRegion":"eu-central-1","devices":[', "", 400, "invalid_json",
                    content_type="application/json", devices=self.DEV)
        self.reject({"targetRegion": "eu-central-1", "colour": "red",
                     "devices": [{"productKey": "pkR", "deviceName": "r-dev1"}]}, "", 400, "invalid_json",
                    devices=self.DEV)
        self.reject({"targetRegion": "eu-central-1",
                     "devices": [{"productKey": "pkR", "deviceName": "r-dev1", "colour": "red"}]}, "", 400,
                    "invalid_json", devices=self.DEV)

    def test_device_unchanged_after_all_this(self):
        # r-dev2 is in every refused upload's neighbourhood and never in an accepted one.
        self.assertEqual(self.h.device("pkR", "r-dev2")["assignment"]["level"], "home")
        self.assertAnswer("pkR", "r-dev2", sh_answer("pkR"))


# --------------------------------------------------------- per-device results

class RowFailures(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}

    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("pkF")
        h.register("pkF", ["f-ok1", "f-ok2", "f-super"])
        h.put_product("pkL")
        h.register("pkL", ["l-dev1"])
        h.put_product("pkL", locked=True)
        h.put_product("pkX")
        h.register("pkX", ["x-same", "x-moved"])

    def test_failure_codes(self):
        self.h.seed_batch(999999, "us-east-1", "iot-us-1")
        self.h.set_device_batch("pkF", "f-super", 999999)
        rows = [("pkF", "f-ok1", None),
                ("pkF", "f-missing", "device_not_found"),
                ("pkNoProd", "x-dev1", "product_not_found"),
                ("pkL", "l-dev1", "product_locked"),
                ("pkF", "ab", "invalid_device_name"),
                ("pkF", "bad/name", "invalid_device_name"),
                ("pk!x", "f-ok2", "invalid_device_name"),
                ("pkF", "f-ok1", "duplicate_row"),
                ("pkF", "f-super", "superseded"),
                ("pkF", "f-ok2", None)]
        bid = self.upload(csv_body([[pk, dn] for pk, dn, _ in rows]), EU, total=len(rows))
        self.assertCompleted(bid, len(rows), 2)
        self.assertResults(bid, rows)
        self.assertAnswer("pkF", "f-ok1", EU_ANSWER)
        self.assertAnswer("pkF", "f-ok2", EU_ANSWER)
        # The later (seeded) batch keeps its device; the locked product's stays home.
        self.assertAnswer("pkF", "f-super", US1_ANSWER)
        self.assertEqual(self.h.device("pkF", "f-super")["assignment"]["batchId"], "999999")
        self.assertAnswer("pkL", "l-dev1", sh_answer("pkL"))
        self.assertEqual(self.h.device("pkL", "l-dev1")["assignment"]["level"], "home")

    def test_same_instance_cross_account(self):
        moved = self.h.distribute(csv_body([["pkX", "x-moved"]]), EU)
        self.assertEqual(moved["succeeded"], 1)
        code = self.h.auth_code("acct-b")["authCode"]
        q = "targetRegion=cn-shanghai&targetAccount=acct-b&authCode=" + code
        bid = self.upload(csv_body([["pkX", "x-same"], ["pkX", "x-moved"]]), q, total=2)
        b = self.assertCompleted(bid, 2, 1)
        self.assertEqual(b.get("targetAccount"), "acct-b")
        self.assertResults(bid, [("pkX", "x-same", "same_instance"), ("pkX", "x-moved", None)])
        a = self.h.device("pkX", "x-moved")["assignment"]
        self.assertEqual((a["level"], a["region"], a["instance"], a["account"], a["batchId"]),
                         ("device", "cn-shanghai", "iot-cn-sh-public", "acct-b", bid))
        a = self.h.device("pkX", "x-same")["assignment"]
        self.assertEqual((a["level"], a["account"]), ("home", "acct-a"))
        self.assertAnswer("pkX", "x-moved", sh_answer("pkX"))


# ------------------------------------------------------------------ effects

class Effects(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}

    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("pkE")
        h.register("pkE", ["e-01", "e-02"])
        h.put_product("pkP")
        h.register("pkP", ["p-dev", "p-plain"])
        h.put_product("pkPL")
        h.register("pkPL", ["pl-1"])
        h.put_product("pkPL", locked=True)
        h.put_product("pkN")
        h.register("pkN", ["n-01", "n-02"])
        h.put_product("pkC")
        h.register("pkC", ["c-01"])

    def test_distribution_effects(self):
        self.assertAnswer("pkE", "e-01", sh_answer("pkE"))
        self.assertEqual(self.h.device("pkE", "e-01")["status"], "active")
        bid = self.upload(csv_body([["pkE", "e-01"], ["pkE", "e-02"]]), EU, total=2)
        self.assertCompleted(bid, 2, 2)
        for dn in ("e-01", "e-02"):
            d = self.h.device("pkE", dn)
            self.assertEqual(d["status"], "inactive", d)
            a = d["assignment"]
            self.assertEqual((a["level"], a["strategy"], a["region"], a["instance"], a["account"], a["batchId"]),
                             ("device", "region", "eu-central-1", "iot-eu-1", "acct-a", bid))
            self.assertRegex(a["distributedAt"] or "", TIME_RE)
        # Right after completion the new region answers, and the bootstrap activates.
        self.assertAnswer("pkE", "e-01", EU_ANSWER)
        d = self.h.device("pkE", "e-01")
        self.assertEqual(d["status"], "active")
        self.assertEqual(d["lastResolvedRegion"], "eu-central-1")
        self.assertRegex(d["activatedAt"] or "", TIME_RE)
        # Distributing again replaces the assignment.
        bid2 = self.upload(csv_body([["pkE", "e-01"]]), "targetRegion=us-east-1&targetInstance=iot-us-2", total=1)
        self.assertCompleted(bid2, 1, 1)
        self.assertNotEqual(bid2, bid)
        d = self.h.device("pkE", "e-01")
        self.assertEqual(d["status"], "inactive")
        a = d["assignment"]
        self.assertEqual((a["region"], a["instance"], a["batchId"]), ("us-east-1", "iot-us-2", bid2))
        self.assertAnswer("pkE", "e-01", us2_answer("e-01"))
        self.assertAnswer("pkE", "e-02", EU_ANSWER)

    def test_cross_account(self):
        code = self.h.auth_code("acct-b")["authCode"]
        bid = self.upload(csv_body([["pkC", "c-01"]]), EU + "&targetAccount=acct-b&authCode=" + code, total=1)
        self.assertCompleted(bid, 1, 1)
        a = self.h.device("pkC", "c-01")["assignment"]
        self.assertEqual((a["level"], a["region"], a["account"], a["batchId"]),
                         ("device", "eu-central-1", "acct-b", bid))
        self.assertAnswer("pkC", "c-01", EU_ANSWER)

    def test_product_level(self):
        self.h.distribute(csv_body([["pkP", "p-dev"]]), "targetRegion=us-east-1")
        self.assertAnswer("pkP", "p-dev", US1_ANSWER)
        self.assertAnswer("pkP", "p-plain", sh_answer("pkP"))
        body = {"strategy": "region", "targetRegion": "eu-central-1", "products": ["pkP", "pkNoProd", "pkPL"]}
        bid = self.upload(body, "", total=3)
        b = self.assertCompleted(bid, 3, 1)
        self.assertEqual(b.get("kind"), "products")
        _, rows = self.h.batch_results(bid)
        self.assertEqual([(r[0], r[2], r[3]) for r in rows],
                         [("pkP", "success", ""), ("pkNoProd", "failed", "product_not_found"),
                          ("pkPL", "failed", "product_locked")])
        # Devices without a device-level assignment follow the product ...
        self.assertAnswer("pkP", "p-plain", EU_ANSWER)
        a = self.h.device("pkP", "p-plain")["assignment"]
        self.assertEqual((a["level"], a["strategy"], a["region"], a["instance"], a["batchId"]),
                         ("product", "region", "eu-central-1", "iot-eu-1", bid))
        # ... those with one keep it.
        self.assertAnswer("pkP", "p-dev", US1_ANSWER)
        self.assertEqual(self.h.device("pkP", "p-dev")["assignment"]["level"], "device")
        self.assertAnswer("pkPL", "pl-1", sh_answer("pkPL"))

    def test_nearest(self):
        bid = self.upload(csv_body([["pkN", "n-01"]]), "strategy=nearest&regions=us-east-1:iot-us-2,eu-central-1",
                          total=1)
        b = self.assertCompleted(bid, 1, 1)
        self.assertEqual(b["strategy"], "nearest")
        d = self.h.device("pkN", "n-01")
        a = d["assignment"]
        self.assertEqual((a["level"], a["strategy"], a["batchId"]), ("device", "nearest", bid))
        self.assertEqual(a["candidates"], [{"region": "us-east-1", "instance": "iot-us-2"},
                                           {"region": "eu-central-1", "instance": "iot-eu-1"}])
        self.assertEqual(d["status"], "inactive")
        # No GeoIP configured: the first candidate.
        self.assertAnswer("pkN", "n-01", us2_answer("n-01"))
        # JSON body with the candidates as a list.
        body = {"strategy": "nearest", "regions": ["eu-central-1", "us-east-1:iot-us-2"],
                "devices": [{"productKey": "pkN", "deviceName": "n-02"}]}
        bid2 = self.upload(body, "", total=1)
        self.assertCompleted(bid2, 1, 1)
        self.assertEqual(self.h.device("pkN", "n-02")["assignment"]["candidates"],
                         [{"region": "eu-central-1", "instance": "iot-eu-1"},
                          {"region": "us-east-1", "instance": "iot-us-2"}])
        self.assertAnswer("pkN", "n-02", EU_ANSWER)


# --------------------------------------------------------------- auth codes

class AuthCodes(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}
    DEV = [("pkA", "a-dev1")]
    OK = "productKey,deviceName\npkA,a-dev1\n"

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkA")
        cls.h.register("pkA", ["a-dev1", "a-dev2"])

    def test_issue(self):
        j = self.h.auth_code("acct-b")
        self.assertRegex(j.get("authCode", ""), r"^[0-9]{6}$")
        self.assertEqual(j.get("account"), "acct-b")
        self.assertEqual(j.get("expiresIn"), 300)
        r = self.h.admin("POST", "/v1/accounts/acct-b/auth-codes", token=None)
        self.assertAdminError(r, 401, "unauthorized")

    def test_used_once(self):
        code = self.h.auth_code("acct-b")["authCode"]
        q = EU + "&targetAccount=acct-b&authCode=" + code
        bid = self.upload("productKey,deviceName\npkA,a-dev2\n", q, total=1)
        self.assertCompleted(bid, 1, 1)
        self.reject(self.OK, q, 400, "invalid_auth_code", devices=self.DEV)

    def test_other_account(self):
        code = self.h.auth_code("acct-c")["authCode"]
        self.reject(self.OK, EU + "&targetAccount=acct-b&authCode=" + code, 400, "invalid_auth_code",
                    devices=self.DEV)
        # Still good for the account it was issued for.
        bid = self.upload(self.OK, EU + "&targetAccount=acct-c&authCode=" + code, total=1)
        self.assertCompleted(bid, 1, 1)
        self.assertEqual(self.h.device("pkA", "a-dev1")["assignment"]["account"], "acct-c")


class AuthCodeExpiry(BatchAsserts, HarnessCase):
    harness_args = {"config": harness.deep_merge(BATCH_CONFIG, {"limits": {"auth_code_ttl_s": 1}})}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkT")
        cls.h.register("pkT", ["t-dev1"])

    def test_expired(self):
        t0 = time.monotonic()
        j = self.h.auth_code("acct-b")
        self.assertEqual(j.get("expiresIn"), 1)
        # The check is on upload: wait until the code is well past its TTL.
        harness.wait_until(lambda: time.monotonic() - t0 > 2.5, 5, "the auth code's TTL to pass", interval=0.1)
        self.reject("productKey,deviceName\npkT,t-dev1\n", EU + "&targetAccount=acct-b&authCode=" + j["authCode"],
                    400, "invalid_auth_code", devices=[("pkT", "t-dev1")])

    def test_fresh_code_works(self):
        code = self.h.auth_code("acct-b")["authCode"]
        bid = self.upload("productKey,deviceName\npkT,t-dev1\n", EU + "&targetAccount=acct-b&authCode=" + code,
                          total=1)
        self.assertCompleted(bid, 1, 1)


# ------------------------------------------------------- listing and retry

class Listing(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}

    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("pkLs")
        h.register("pkLs", ["ls-1"])
        cls.ids = []
        for i in range(5):
            region = ("eu-central-1", "us-east-1")[i % 2]
            cls.ids.append(h.distribute("productKey,deviceName\npkLs,ls-1\n", "targetRegion=" + region)["batchId"])

    def page(self, query):
        r = self.h.list_batches(query)
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertIn("batches", j)
        self.assertIn("nextCursor", j)
        for b in j["batches"]:
            for k in ("batchId", "status", "total", "processed", "succeeded", "failed", "createdAt", "strategy"):
                self.assertIn(k, b)
        return [b["batchId"] for b in j["batches"]], j["nextCursor"]

    def test_pages_newest_first(self):
        newest_first = list(reversed(self.ids))
        ids, cur = self.page("limit=2")
        self.assertEqual(ids, newest_first[0:2])
        self.assertIsInstance(cur, str)
        ids, cur = self.page("limit=2&cursor=" + harness.quote(cur, safe=""))
        self.assertEqual(ids, newest_first[2:4])
        self.assertIsInstance(cur, str)
        ids, cur = self.page("limit=2&cursor=" + harness.quote(cur, safe=""))
        self.assertEqual(ids, newest_first[4:5])
        self.assertIsNone(cur)

    def test_default_and_max_limit(self):
        for q in ("", "limit=100", "limit=5"):
            with self.subTest(query=q):
                ids, cur = self.page(q)
                self.assertEqual(ids, list(reversed(self.ids)))
                self.assertIsNone(cur)

    def test_limit_out_of_range(self):
        for q in ("limit=0", "limit=101", "limit=-1", "limit=abc", "limit="):
            with self.subTest(query=q):
                self.assertAdminError(self.h.list_batches(q), 400)

    def test_retry_only_failed(self):
        self.assertEqual(self.h.get_batch(self.ids[0])["status"], "completed")
        r = self.h.admin("POST", "/v1/batches/%s/retry" % self.ids[0])
        self.assertAdminError(r, 409)
        self.assertEqual(self.h.get_batch(self.ids[0])["status"], "completed")

    def test_unknown_batch(self):
        self.assertAdminError(self.h.admin("GET", "/v1/batches/987654"), 404)
        self.assertAdminError(self.h.admin("GET", "/v1/batches/987654/results"), 404)
        self.assertAdminError(self.h.admin("POST", "/v1/batches/987654/retry"), 404)

    def test_needs_token(self):
        for method, path in (("GET", "/v1/batches"), ("GET", "/v1/batches/" + self.ids[0]),
                             ("GET", "/v1/batches/%s/results" % self.ids[0]), ("GET", "/v1/batches/template.csv"),
                             ("POST", "/v1/batches?" + EU), ("GET", "/v1/stats")):
            with self.subTest(path=path):
                body = "productKey,deviceName\npkLs,ls-1\n" if method == "POST" else None
                r = self.h.admin(method, path, body, token=None, content_type="text/csv" if body else None)
                self.assertAdminError(r, 401, "unauthorized")


class Retry(BatchAsserts, HarnessCase):
    """A batch whose step Redis refuses 3 times ends `failed` with an error;
    a retry finishes the rows without a result, each row counted once."""
    harness_args = {"config": harness.deep_merge(BATCH_CONFIG, {"worker": {"chunk_size": 10,
                                                                          "claim_idle_ms": 100}})}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkRt")
        cls.names = ["rt-%02d" % i for i in range(10)]
        cls.h.register("pkRt", [n for n in cls.names if n != "rt-04"])

    def test_failed_then_retried(self):
        # rt-04 is not registered: every command on its bucket fails
        # (WRONGTYPE) in the middle of the step holding rows 0-9.
        bucket = self.h.break_bucket("pkRt", "rt-04")
        bid = self.upload(csv_body([["pkRt", n] for n in self.names]), EU, total=10)
        b = self.h.wait_batch(bid, 30)
        self.assertEqual(b["status"], "failed", b)
        self.assertIsInstance(b.get("error"), str, b)
        self.assertTrue(b["error"], b)
        self.assertLess(b["processed"], 10, b)
        _, rows = self.h.batch_results(bid)
        self.assertEqual(len(rows), b["processed"], "results list the rows with a result, and only those")
        self.assertEqual(self.h.stats()["batches"]["failed"], 1)

        self.h.redis("DEL", bucket)
        r = self.h.admin("POST", "/v1/batches/%s/retry" % bid)
        self.assertIn(r.status, (200, 202), r)
        self.assertCompleted(bid, 10, 9)
        self.assertResults(bid, [("pkRt", n, "device_not_found" if n == "rt-04" else None) for n in self.names])
        self.assertIsNone(self.h.get_batch(bid).get("error"))
        self.assertEqual(self.h.stats()["batches"]["failed"], 0)
        self.assertAdminError(self.h.admin("POST", "/v1/batches/%s/retry" % bid), 409)
        self.assertAnswer("pkRt", "rt-09", EU_ANSWER)


# -------------------------------------------------------------- statistics

class Stats(BatchAsserts, HarnessCase):
    harness_args = {"config": BATCH_CONFIG}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkS")
        cls.h.register("pkS", ["s-01", "s-02", "s-03"])

    def assertStats(self, devices, by_region, activations, completed):
        """Waits (bounded) for the counters to show these values."""
        def matches():
            s = self.h.stats()
            by = {k: v for k, v in s["distributed"]["byRegion"].items() if v}
            return (s["devices"], by, s["activations"], s["batches"]["completed"]) == \
                (devices, by_region, activations, completed)
        try:
            harness.wait_until(matches, 5, "GET /v1/stats to show the expected counts")
        except TimeoutError:
            self.assertEqual(self.h.stats(), {"devices": devices, "distributed": {"byRegion": by_region},
                                              "activations": activations,
                                              "batches": {"initializing": 0, "running": 0, "completed": completed,
                                                          "failed": 0}})

    def test_shape_and_counts(self):
        s = self.h.stats()
        self.assertEqual(set(s), {"devices", "distributed", "activations", "batches"}, s)
        self.assertEqual(set(s["devices"]), {"total", "active", "inactive"})
        self.assertEqual(set(s["batches"]), {"initializing", "running", "completed", "failed"})
        self.assertIsInstance(s["distributed"]["byRegion"], dict)
        self.assertIsInstance(s["activations"], int)
        self.assertEqual(s["devices"], {"total": 3, "active": 0, "inactive": 3})
        self.assertEqual(s["batches"], {"initializing": 0, "running": 0, "completed": 0, "failed": 0})
        self.assertStats({"total": 3, "active": 0, "inactive": 3}, {}, 0, 0)

        self.h.distribute(csv_body([["pkS", "s-01"], ["pkS", "s-02"]]), EU)
        self.h.distribute(csv_body([["pkS", "s-03"]]), "strategy=nearest&regions=us-east-1,eu-central-1")
        self.assertStats({"total": 3, "active": 0, "inactive": 3}, {"eu-central-1": 2, "us-east-1": 1}, 0, 2)

        self.assertAnswer("pkS", "s-01", EU_ANSWER)
        self.assertStats({"total": 3, "active": 1, "inactive": 2}, {"eu-central-1": 2, "us-east-1": 1}, 1, 2)
        # A second bootstrap of an active device is not another activation.
        self.assertAnswer("pkS", "s-01", EU_ANSWER)
        self.assertStats({"total": 3, "active": 1, "inactive": 2}, {"eu-central-1": 2, "us-east-1": 1}, 1, 2)

        # Moving s-1 moves its count and makes it inactive again.
        self.h.distribute(csv_body([["pkS", "s-01"]]), "targetRegion=us-east-1")
        self.assertStats({"total": 3, "active": 0, "inactive": 3}, {"eu-central-1": 1, "us-east-1": 2}, 1, 3)
        self.assertAnswer("pkS", "s-01", US1_ANSWER)
        self.assertStats({"total": 3, "active": 1, "inactive": 2}, {"eu-central-1": 1, "us-east-1": 2}, 2, 3)


class MemoryPressure(BatchAsserts, HarnessCase):
    """Redis at maxmemory (noeviction): a batch fails at once with the reason,
    is retryable as soon as memory is freed, and each row is applied once."""
    harness_args = {"config": {"worker": {"chunk_size": 10, "pause_ms": 200}}}
    N = 100

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkM")
        cls.names = ["m-%03d" % i for i in range(cls.N)]
        cls.h.register("pkM", cls.names)

    def test_batch_fails_then_retries_once_memory_is_back(self):
        bid = self.upload(rows_csv("pkM", self.names), EU)
        harness.wait_until(lambda: self.h.get_batch(bid)["processed"] > 0, 10, "the batch under way")
        self.h.redis("CONFIG", "SET", "maxmemory", "1")
        self.addCleanup(self.h.redis, "CONFIG", "SET", "maxmemory", "0")
        started = time.monotonic()
        b = harness.wait_until(lambda: (lambda b: b if b["status"] == "failed" else None)(self.h.get_batch(bid)),
                               5, "the batch failed")
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn("out of memory", b.get("error", ""), b)
        self.assertLess(b["processed"], self.N, b)
        # Reads keep answering; the bootstraps' record writes are refused and
        # logged at most once a second.
        for dn in self.names[-30:]:
            r = self.h.bootstrap("pkM", dn)
            self.assertEqual(r.status, 200, r)
        lines = [ln for ln in self.h.daemon_log().splitlines() if "could not be recorded" in ln]
        self.assertTrue(1 <= len(lines) <= 3 + time.monotonic() - started, lines)
        self.assertIn("OOM", lines[0])
        # Writes are refused with the reason, and change nothing.
        self.assertAdminError(self.h.admin("POST", "/v1/batches/%s/retry" % bid), 503, "out_of_memory")
        self.assertAdminError(self.h.upload_batch(rows_csv("pkM", self.names[:1]), EU), 503, "out_of_memory")
        self.assertAdminError(self.h.admin("PUT", "/v1/products/pkM", {"homeRegion": "eu-central-1",
                                                                     "homeInstance": "iot-eu-1",
                                                                     "account": "acct-a"}), 503, "out_of_memory")
        self.assertEqual(self.h.get_batch(bid)["status"], "failed")
        # Memory back: the retry is taken at once and every row is applied once.
        self.h.redis("CONFIG", "SET", "maxmemory", "0")
        r = self.h.admin("POST", "/v1/batches/%s/retry" % bid)
        self.assertEqual(r.status, 202, r)
        self.assertCompleted(bid, self.N, self.N)
        _, rows = self.h.batch_results(bid)
        self.assertEqual(sorted(row[1] for row in rows), self.names)
        for dn in self.names[::10]:
            self.assertAnswer("pkM", dn, EU_ANSWER)


class Retention(BatchAsserts, HarnessCase):
    """worker.batch_retention_s: a finished batch's rows and results go after
    the retention; the batch and the devices' assignments stay."""
    harness_args = {"config": {"worker": {"pause_ms": 0, "batch_retention_s": 2}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkR")
        cls.h.register("pkR", ["ret-1", "ret-2"])

    def test_results_removed_assignments_kept(self):
        bid = self.upload(rows_csv("pkR", ["ret-1", "ret-2"]), EU)
        self.assertCompleted(bid, 2, 2)
        self.assertNotIn("prunedAt", self.h.get_batch(bid))
        self.assertEqual(self.h.get_batch(bid)["notify"], {"pending": 0, "sent": 0, "acked": 0, "none": 2})
        # As if a broker had taken the first row's notify (its device never
        # answered): pruning the batch takes it off bootstrapd_notify_unacked.
        self.h.redis("SETRANGE", harness.key("notifies", bid), 0, "s")
        self.h.redis("HINCRBY", harness.key("batch-counters"), "notify_unacked", 1)
        unacked = harness.metric_value(self.h.metrics(), "bootstrapd_notify_unacked")
        self.assertGreaterEqual(unacked, 1)
        self.assertResults(bid, [("pkR", "ret-1", None), ("pkR", "ret-2", None)])
        b = harness.wait_until(lambda: (lambda b: b if "prunedAt" in b else None)(self.h.get_batch(bid)), 15,
                               "the batch pruned")
        self.assertRegex(b["prunedAt"], TIME_RE)
        self.assertEqual((b["status"], b["total"], b["succeeded"]), ("completed", 2, 2), b)
        self.assertNotIn("notify", b)
        self.assertEqual(harness.metric_value(self.h.metrics(), "bootstrapd_notify_unacked"), unacked - 1)
        self.assertAdminError(self.h.admin("GET", "/v1/batches/%s/results" % bid), 410, "batch_expired")
        self.assertAdminError(self.h.admin("POST", "/v1/batches/%s/retry" % bid), 410, "batch_expired")
        self.assertIn(bid, self.h.all_batch_ids())
        # The assignment is the batch's: the devices still go where it sent them.
        self.assertAnswer("pkR", "ret-1", EU_ANSWER)
        self.assertAnswer("pkR", "ret-2", EU_ANSWER)


if __name__ == "__main__":
    harness.main()
