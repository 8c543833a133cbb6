"""The admin API (SPEC §5) on the admin listener: products, device
registration, device entries, regions, tokens, operations endpoints."""

import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase  # noqa: E402

NAME_RE = re.compile(r"^[A-Za-z0-9_\-.@:]{4,32}$")
SECRET_RE = re.compile(r"^[0-9a-f]{32}$")


class AdminAsserts:
    def assertAdminError(self, r, status, code=None):
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r.header_lines)
        err = r.json().get("error")
        self.assertIsInstance(err, dict, r.body)
        self.assertIsInstance(err.get("code"), str, r.body)
        self.assertRegex(err["code"], r"^[a-z][a-z0-9_]*$")
        self.assertIsInstance(err.get("message"), str, r.body)
        if code is not None:
            self.assertEqual(err["code"], code, r.body)
        return err

    def csv_rows(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/csv"), r.header_lines)
        lines = r.text().lstrip("\ufeff").splitlines()
        self.assertEqual(lines[0], "productKey,deviceName,deviceSecret")
        return [ln.split(",") for ln in lines[1:] if ln]


class Products(AdminAsserts, HarnessCase):
    def test_create_then_update(self):
        body = {"homeRegion": "cn-shanghai", "homeInstance": "iot-cn-sh-public",
                "account": "acct-a", "locked": False}
        r = self.h.admin("PUT", "/v1/products/pkCreate1", body)
        self.assertEqual(r.status, 201, r)
        j = r.json()
        for k in ("productKey", "homeRegion", "homeInstance", "account", "locked", "bootstrapAuth",
                  "createdAt", "updatedAt"):
            self.assertIn(k, j)
        self.assertEqual(j["productKey"], "pkCreate1")
        self.assertEqual(j["homeRegion"], "cn-shanghai")
        self.assertEqual(j["homeInstance"], "iot-cn-sh-public")
        self.assertEqual(j["account"], "acct-a")
        self.assertIs(j["locked"], False)
        self.assertEqual(j["bootstrapAuth"], "none")
        self.assertTrue(j["createdAt"])
        self.assertTrue(j["updatedAt"])
        body["locked"] = True
        body["account"] = "acct-b"
        r2 = self.h.admin("PUT", "/v1/products/pkCreate1", body)
        self.assertEqual(r2.status, 200, r2)
        j2 = r2.json()
        self.assertIs(j2["locked"], True)
        self.assertEqual(j2["account"], "acct-b")
        self.assertEqual(j2["createdAt"], j["createdAt"])
        g = self.h.admin("GET", "/v1/products/pkCreate1")
        self.assertEqual(g.status, 200, g)
        self.assertEqual(g.json(), j2)

    def test_home_instance_defaults_to_region_default(self):
        r = self.h.admin("PUT", "/v1/products/pkDefInst", {"homeRegion": "us-east-1", "account": "acct-a"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["homeInstance"], "iot-us-1")

    def test_non_default_home_instance(self):
        r = self.h.admin("PUT", "/v1/products/pkUs2", {"homeRegion": "us-east-1", "homeInstance": "iot-us-2",
                                                       "account": "acct-a"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["homeInstance"], "iot-us-2")

    def test_unknown_region(self):
        r = self.h.admin("PUT", "/v1/products/pkBadRegion", {"homeRegion": "mars-north-1", "account": "acct-a"})
        self.assertAdminError(r, 400, "unknown_region")
        self.assertAdminError(self.h.admin("GET", "/v1/products/pkBadRegion"), 404, "product_not_found")

    def test_unknown_instance(self):
        r = self.h.admin("PUT", "/v1/products/pkBadInst", {"homeRegion": "cn-shanghai",
                                                           "homeInstance": "iot-eu-1", "account": "acct-a"})
        self.assertAdminError(r, 400)

    def test_invalid_json(self):
        r = self.h.admin("PUT", "/v1/products/pkBadJson", '{"homeRegion": "cn-shanghai",',
                         content_type="application/json")
        self.assertAdminError(r, 400, "invalid_json")

    def test_missing_home_region(self):
        r = self.h.admin("PUT", "/v1/products/pkNoRegion", {"account": "acct-a"})
        self.assertAdminError(r, 400)

    def test_unknown_product(self):
        self.assertAdminError(self.h.admin("GET", "/v1/products/pkNeverMade"), 404, "product_not_found")

    def test_home_change_moves_bootstrap_answer(self):
        self.h.put_product("pkMove1")
        self.h.register("pkMove1", ["dev1"])
        r = self.h.bootstrap("pkMove1", "dev1")
        self.assertEqual(r.body, harness.success_body(
            [("mqtt", "pkMove1.iot-as-mqtt.cn-shanghai.example.com", 1883, None)]))
        self.h.put_product("pkMove1", region="eu-central-1", instance=None)
        r = self.h.bootstrap("pkMove1", "dev1")
        self.assertEqual(r.body, harness.success_body(
            [("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")]))


class Devices(AdminAsserts, HarnessCase):
    @classmethod
    def prepare(cls):
        cls.h.put_product("pkDev")

    def register(self, body, content_type="text/csv", pk="pkDev"):
        return self.h.admin("POST", "/v1/products/%s/devices" % pk, body, content_type=content_type)

    def assertNotRegistered(self, pk, dn):
        self.assertAdminError(self.h.admin("GET", "/v1/devices/%s/%s" % (pk, dn)), 404, "device_not_found")

    def test_csv_names_crlf(self):
        rows = self.csv_rows(self.register("deviceName\r\ndev1\r\ndev2\r\n"))
        self.assertEqual([(r[0], r[1]) for r in rows], [("pkDev", "dev1"), ("pkDev", "dev2")])
        secrets = [r[2] for r in rows]
        for s in secrets:
            self.assertRegex(s, SECRET_RE)
        self.assertEqual(len(set(secrets)), len(secrets))

    def test_csv_names_lf_no_final_newline(self):
        rows = self.csv_rows(self.register("deviceName\nlf-dev1\nlf-dev2"))
        self.assertEqual([r[1] for r in rows], ["lf-dev1", "lf-dev2"])

    def test_csv_with_secrets(self):
        given = "0123456789abcdef0123456789abcdef"
        other = "00112233445566778899aabbccddeeff"
        rows = self.csv_rows(self.register("deviceName,deviceSecret\r\nsec-dev1,%s\r\nsec-dev2,%s\r\n"
                                           % (given, other)))
        self.assertEqual(rows, [["pkDev", "sec-dev1", given], ["pkDev", "sec-dev2", other]])

    def test_json_count(self):
        rows = self.csv_rows(self.register({"count": 3}, content_type="application/json"))
        self.assertEqual(len(rows), 3)
        names = [r[1] for r in rows]
        self.assertEqual(len(set(names)), 3)
        for pk, name, secret in rows:
            self.assertEqual(pk, "pkDev")
            self.assertRegex(name, NAME_RE)
            self.assertRegex(secret, SECRET_RE)
            r = self.h.admin("GET", "/v1/devices/pkDev/" + name)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len({r[2] for r in rows}), 3)

    def check_bad_name(self, bad):
        body = "deviceName\r\nbadrow-ok1\r\n%s\r\nbadrow-ok2\r\n" % bad
        r = self.register(body)
        err = self.assertAdminError(r, 400)
        text = json.dumps(err)
        # Data row 2 (line 3 of the file): either numbering is fine.
        self.assertRegex(text, r"\b[23]\b", "the message should name the row")
        self.assertNotRegistered("pkDev", "badrow-ok1")
        self.assertNotRegistered("pkDev", "badrow-ok2")

    def test_name_too_short(self):
        self.check_bad_name("ab")

    def test_name_with_slash(self):
        self.check_bad_name("bad/name")

    def test_name_too_long(self):
        self.check_bad_name("n" * 33)

    def test_name_limits_accepted(self):
        rows = self.csv_rows(self.register("deviceName\nabcd\n%s\nA-z_0.9@x:y\n" % ("n" * 32)))
        self.assertEqual([r[1] for r in rows], ["abcd", "n" * 32, "A-z_0.9@x:y"])

    def test_too_many_json(self):
        r = self.register({"count": 10001}, content_type="application/json")
        self.assertEqual(r.status, 413, r)

    def test_too_many_csv(self):
        body = "deviceName\n" + "".join("many%05d\n" % i for i in range(10001))
        r = self.register(body)
        self.assertEqual(r.status, 413, r)
        self.assertNotRegistered("pkDev", "many00000")

    def test_unknown_product(self):
        r = self.register("deviceName\nnp-dev1\n", pk="pkNoSuchProduct")
        self.assertAdminError(r, 404, "product_not_found")

    def test_device_entry(self):
        secret = "fedcba9876543210fedcba9876543210"
        rows = self.csv_rows(self.register("deviceName,deviceSecret\nentry-dev1,%s\n" % secret))
        self.assertEqual(rows[0][2], secret)
        r = self.h.admin("GET", "/v1/devices/pkDev/entry-dev1")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(secret.encode(), r.body.lower())
        j = r.json()
        for k in ("productKey", "deviceName", "status", "registeredAt", "activatedAt", "lastBootstrapAt",
                  "lastResolvedRegion", "assignment", "notify"):
            self.assertIn(k, j)
        self.assertEqual(j["productKey"], "pkDev")
        self.assertEqual(j["deviceName"], "entry-dev1")
        self.assertEqual(j["status"], "inactive")
        self.assertTrue(j["registeredAt"])
        self.assertFalse(j["activatedAt"])
        self.assertIsNone(j["notify"])
        a = j["assignment"]
        self.assertEqual((a["level"], a["region"], a["instance"], a["account"]),
                         ("home", "cn-shanghai", "iot-cn-sh-public", "acct-a"))
        self.assertNotIn("deviceSecret", j)
        self.assertNotIn("secret", json.dumps(j).lower())

    def test_generated_secret_never_returned(self):
        rows = self.csv_rows(self.register("deviceName\nentry-dev2\n"))
        secret = rows[0][2]
        r = self.h.admin("GET", "/v1/devices/pkDev/entry-dev2")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(secret.encode(), r.body.lower())
        # Secrets are stored encrypted at rest (SPEC §8).
        sealed = self.h.redis("HGET", harness.key("secret", "pkDev", "entry-dev2"), "pkDev/entry-dev2")
        self.assertTrue(sealed, "no sealed secret stored for the device")
        self.assertNotIn(secret, sealed.lower())

    def test_unknown_device(self):
        self.assertNotRegistered("pkDev", "never-made")

    def test_device_of_unknown_product(self):
        r = self.h.admin("GET", "/v1/devices/pkNoSuchProduct/dev1")
        self.assertEqual(r.status, 404, r)
        self.assertIn(self.assertAdminError(r, 404)["code"], ("device_not_found", "product_not_found"))


class Access(AdminAsserts, HarnessCase):
    def test_regions(self):
        r = self.h.admin("GET", "/v1/regions")
        self.assertEqual(r.status, 200, r)
        regions = r.json()["regions"]
        ids = [x["id"] if isinstance(x, dict) else x for x in regions]
        self.assertEqual(sorted(ids), ["cn-shanghai", "eu-central-1", "us-east-1"])

    def test_no_token(self):
        for method, path in (("GET", "/v1/regions"), ("GET", "/v1/products/pk1"),
                             ("PUT", "/v1/products/pkNoTok"), ("GET", "/v1/devices/pk1/dev1")):
            with self.subTest(path=path):
                body = {"homeRegion": "cn-shanghai", "account": "a"} if method == "PUT" else None
                r = self.h.admin(method, path, body, token=None)
                self.assertAdminError(r, 401, "unauthorized")
        self.assertAdminError(self.h.admin("GET", "/v1/products/pkNoTok"), 404, "product_not_found")

    def test_wrong_token(self):
        # (Trailing blanks are not part of a header value, so "test-token " is
        # the right token and not tried here.)
        for token in ("wrong-token", "test-token2", "Test-Token", "test-tokem", "", "sha256:" + harness.sha256_hex("test-token"),
                      harness.sha256_hex("test-token")):
            with self.subTest(token=token):
                self.assertAdminError(self.h.admin("GET", "/v1/regions", token=token), 401, "unauthorized")

    def test_wrong_scheme(self):
        r = self.h.admin("GET", "/v1/regions", token=None, headers={"Authorization": "Basic dGVzdC10b2tlbg=="})
        self.assertAdminError(r, 401, "unauthorized")

    def test_healthz(self):
        self.assertEqual(self.h.admin("GET", "/healthz", token=None).status, 200)

    def test_readyz(self):
        r = self.h.admin("GET", "/readyz", token=None)
        self.assertEqual(r.status, 200, r)

    def test_metrics(self):
        self.h.admin("GET", "/v1/regions")
        self.h.bootstrap("pkNone", "dev1")
        r = self.h.admin("GET", "/metrics", token=None)
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/plain"), r.header_lines)
        self.assertIn("bootstrapd_http_requests_total", r.text())
        self.assertRegex(r.text(), r"(?m)^bootstrapd_http_requests_total\{[^}]*\} [0-9.e+]+$")

    def test_unknown_admin_path(self):
        r = self.h.admin("GET", "/v1/nothing-here")
        self.assertEqual(r.status, 404, r)


if __name__ == "__main__":
    harness.main()
