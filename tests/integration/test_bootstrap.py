"""The device endpoint (SPEC §4) on the public listener: wire format, errors,
resolution order, TLS, limits, timeouts and signals."""

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
from urllib.parse import quote_plus

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body, sdk_request, build_request  # noqa: E402

SH_MQTT = ("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1883, None)
SH_HTTP = ("http", "iot-as-http.cn-shanghai.example.com", 443, None)
EU_MQTT = ("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")
SDK_BODY = b"productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&resources=mqtt"
SDK_ANSWER = (b'{"code":200,"data":{"resources":{"mqtt":{"host":"a1PK.iot-as-mqtt.cn-shanghai.example.com",'
              b'"port":1883}}},"message":"success"}')
EU_ANSWER = (b'{"code":200,"data":{"resources":{"mqtt":{"host":"mqtt.eu-central-1.example.com","port":8883,'
             b'"ip":"192.0.2.10"}}},"message":"success"}')


class DeviceAsserts:
    def assertHttpFraming(self, r):
        """HTTP/1.1, one exact Content-Length, never chunked."""
        self.assertTrue(r.status_line.startswith(b"HTTP/1.1 "), r.status_line)
        self.assertFalse(r.chunked, "answer must not be chunked")
        cls = [ln for ln in r.header_lines if ln.lower().startswith(b"content-length:")]
        self.assertEqual(len(cls), 1, "exactly one Content-Length header: %r" % r.header_lines)
        self.assertEqual(int(cls[0].split(b":", 1)[1]), len(r.body))

    def assertFraming(self, r):
        """What every answer of the public listener must look like for the
        field SDKs' parsers."""
        self.assertTrue(r.status_line.startswith(b"HTTP/1.1 "), r.status_line)
        self.assertFalse(r.chunked, "answer must not be chunked")
        self.assertIsNone(r.header("Transfer-Encoding"), r.header_lines)
        cls = [ln for ln in r.header_lines if ln.lower().startswith(b"content-length:")]
        self.assertEqual(len(cls), 1, "exactly one Content-Length header: %r" % r.header_lines)
        self.assertTrue(cls[0].startswith(b"Content-Length: "), cls[0])
        self.assertEqual(int(cls[0][len(b"Content-Length: "):]), len(r.body))
        for line in [r.status_line] + r.header_lines:
            self.assertLessEqual(len(line), 126, "header line longer than 126 bytes: %r" % line)
        if r.body:
            self.assertTrue(harness.is_compact_json(r.body), "body not compact JSON: %r" % r.body)
            code = json.loads(r.body)["code"]
            if r.status == 200:
                self.assertEqual(code, 200, "HTTP 200 with code %r" % code)
            else:
                self.assertNotEqual(code, 200, "HTTP %d with code 200" % r.status)

    def assertSuccess(self, r, body):
        self.assertEqual(r.status_line, b"HTTP/1.1 200 OK", r)
        self.assertFraming(r)
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
        self.assertEqual(r.body, body)

    def assertDeviceError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertFraming(r)
        j = r.json()
        self.assertEqual(j.get("code"), code, r.body)
        self.assertIsInstance(j.get("message"), str)
        self.assertTrue(j["message"])
        self.assertEqual(list(j), ["code", "message"], r.body)
        self.assertIsInstance(j["code"], int)


class DeviceEndpoint(DeviceAsserts, HarnessCase):
    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("a1PK")
        h.register("a1PK", ["dev1", "dev2", "dev3", "old-sdk", "get-dev"])
        h.put_product("a1EU", region="eu-central-1", instance=None)
        h.register("a1EU", ["dev1"])

    def test_sdk_request_byte_exact(self):
        with harness.connect(self.h.public_port) as s:
            s.sendall(sdk_request(SDK_BODY))
            r = harness.read_response(s)
            self.assertSuccess(r, SDK_ANSWER)
            self.assertLessEqual(len(r.body), 192)
            # Nothing may follow the body on the connection.
            s.settimeout(0.3)
            try:
                extra = s.recv(100)
            except socket.timeout:
                extra = b""
            self.assertEqual(extra, b"", "bytes after the declared body")

    def test_old_sdk_body(self):
        r = self.h.public(sdk_request(b"productKey=a1PK&deviceName=old-sdk"))
        self.assertSuccess(r, SDK_ANSWER)

    def test_get_query_string(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap?productKey=a1PK&deviceName=get-dev"))
        self.assertSuccess(r, SDK_ANSWER)

    def test_query_parameters_on_post(self):
        data = (b"POST /auth/bootstrap?productKey=a1PK&deviceName=dev2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: " + harness.SDK_CONTENT_TYPE.encode() + b"\r\nContent-Length: 0\r\n\r\n")
        self.assertSuccess(self.h.public(data), SDK_ANSWER)

    def test_full_parameter_set(self):
        body = ("productKey=a1PK&deviceName=dev3&clientId=dev3&version=default&timestamp=1700000000000"
                "&resources=mqtt")
        self.assertSuccess(self.h.public(sdk_request(body)), SDK_ANSWER)

    def test_keep_alive_two_requests(self):
        with harness.connect(self.h.public_port) as s:
            for _ in range(2):
                s.sendall(sdk_request(SDK_BODY))
                self.assertSuccess(harness.read_response(s), SDK_ANSWER)

    def test_mqtt_and_http(self):
        r = self.h.bootstrap("a1PK", "dev1", resources="mqtt,http")
        self.assertSuccess(r, success_body([SH_MQTT, SH_HTTP]))

    def test_mqtt_first_whatever_the_request_order(self):
        r = self.h.bootstrap("a1PK", "dev1", resources="http,mqtt")
        self.assertSuccess(r, success_body([SH_MQTT, SH_HTTP]))

    def test_http_only(self):
        r = self.h.bootstrap("a1PK", "dev1", resources="http")
        self.assertSuccess(r, success_body([SH_HTTP]))

    def test_unknown_resource_next_to_known_is_left_out(self):
        r = self.h.bootstrap("a1PK", "dev1", resources="mqtt,coap")
        self.assertSuccess(r, SDK_ANSWER)

    def test_resource_not_offered_by_instance_is_left_out(self):
        # eu-central-1/iot-eu-1 offers mqtt only.
        r = self.h.bootstrap("a1EU", "dev1", resources="mqtt,http")
        self.assertSuccess(r, EU_ANSWER)

    def test_home_region_with_backup_ip(self):
        self.assertSuccess(self.h.bootstrap("a1EU", "dev1"), EU_ANSWER)

    def test_unknown_resource_only(self):
        self.assertDeviceError(self.h.bootstrap("a1PK", "dev1", resources="coap"), 400, 460)

    def test_region_id_form(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/eu-central-1"))
        self.assertSuccess(r, EU_ANSWER)

    def test_region_id_form_substitutes_region_and_instance(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/us-east-1"))
        self.assertSuccess(r, success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)]))

    def test_region_id_form_template_needs_product_key(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/cn-shanghai"))
        self.assertDeviceError(r, 400, 460)

    def test_region_id_form_unknown_region(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/mars-north-1"))
        self.assertDeviceError(r, 400, 460)

    def test_missing_product_key(self):
        self.assertDeviceError(self.h.public(sdk_request(b"deviceName=dev1")), 400, 460)

    def test_missing_device_name(self):
        self.assertDeviceError(self.h.public(sdk_request(b"productKey=a1PK")), 400, 460)

    def test_empty_device_name(self):
        self.assertDeviceError(self.h.public(sdk_request(b"productKey=a1PK&deviceName=")), 400, 460)

    def test_empty_product_key(self):
        self.assertDeviceError(self.h.public(sdk_request(b"productKey=&deviceName=dev1")), 400, 460)

    def test_no_parameters_at_all(self):
        self.assertDeviceError(self.h.public(build_request("GET", "/auth/bootstrap")), 400, 460)

    def test_client_id_sdk4_product_key_dot_device_name(self):
        # The vendor SDK 4.x sends {productKey}.{deviceName}: 65 characters
        # with the longest names.
        client_id = "a1PK" + "k" * 28 + "." + "d" * 32
        self.assertEqual(len(client_id), 65)
        self.assertSuccess(self.h.bootstrap("a1PK", "dev1", client_id=client_id), SDK_ANSWER)

    def test_client_id_128_accepted(self):
        self.assertSuccess(self.h.bootstrap("a1PK", "dev1", client_id="c" * 128), SDK_ANSWER)

    def test_client_id_129_rejected(self):
        self.assertDeviceError(self.h.bootstrap("a1PK", "dev1", client_id="c" * 129), 400, 460)

    def test_too_many_parameters(self):
        extra = [("x%d" % i, "1") for i in range(30)]
        self.assertSuccess(self.h.bootstrap("a1PK", "dev1", extra=extra), SDK_ANSWER)
        r = self.h.bootstrap("a1PK", "dev1", extra=extra + [("x30", "1")])
        self.assertDeviceError(r, 400, 460)
        self.assertEqual(r.json()["message"], "too many parameters")

    def test_bad_percent_encoding(self):
        r = self.h.public(sdk_request(b"productKey=a1PK&deviceName=dev%G1"))
        self.assertDeviceError(r, 400, 460)

    def test_truncated_percent_encoding(self):
        r = self.h.public(sdk_request(b"productKey=a1PK&deviceName=dev1%2"))
        self.assertDeviceError(r, 400, 460)

    def test_percent_encoded_parameters(self):
        r = self.h.public(sdk_request(b"productKey=a1P%4B&deviceName=%64ev1&clientId=a1PK%2Edev1"))
        self.assertSuccess(r, SDK_ANSWER)

    def test_unknown_product(self):
        self.assertDeviceError(self.h.bootstrap("zzNoSuchPK", "dev1"), 404, 5001)

    def test_unknown_device_of_known_product(self):
        self.assertDeviceError(self.h.bootstrap("a1PK", "no-such-device"), 404, 5001)

    def test_other_paths_404(self):
        for path in ("/", "/auth", "/auth/bootstrap/extra", "/favicon.ico", "/auth/bootstrap/regionId/"):
            with self.subTest(path=path):
                r = self.h.public(build_request("GET", path))
                self.assertDeviceError(r, 404, 404)

    def test_admin_api_not_on_public_listener(self):
        auth = {"Authorization": "Bearer " + harness.TOKEN}
        for method, path in (("GET", "/v1/products/a1PK"), ("GET", "/v1/regions"),
                             ("GET", "/v1/devices/a1PK/dev1"), ("GET", "/healthz"),
                             ("GET", "/readyz"), ("GET", "/metrics"), ("PUT", "/v1/products/x")):
            with self.subTest(path=path):
                r = self.h.public(build_request(method, path, b"{}" if method == "PUT" else None, auth))
                self.assertEqual(r.status, 404, r)
                self.assertFraming(r)
                self.assertEqual(r.json().get("code"), 404)
                self.assertNotIn(b"bootstrapd_", r.body)

    def test_wrong_method(self):
        for method in ("PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                r = self.h.public(build_request(method, "/auth/bootstrap", SDK_BODY,
                                                {"Content-Type": harness.SDK_CONTENT_TYPE}))
                self.assertEqual(r.status, 405, r)
                self.assertFraming(r)

    def test_malformed_request_line(self):
        r = self.h.public(b"GARBAGE\r\n\r\n")
        self.assertGreaterEqual(r.status, 400, r)
        self.assertLess(r.status, 500, r)
        self.assertTrue(self.h.healthy())


def aliased_regions():
    """default_regions() with SPEC §3 aliases: eu-central-1 is "4" and has a
    regionHost; cn-shanghai ("0") has none and a ${productKey} host; us-east-1
    ("3") has none and a host without device variables."""
    regions = harness.default_regions()
    by_id = {r["id"]: r for r in regions["regions"]}
    by_id["cn-shanghai"]["aliases"] = ["0"]
    by_id["us-east-1"]["aliases"] = ["3"]
    eu = by_id["eu-central-1"]
    eu["aliases"] = ["4", "eu"]
    eu["instances"][0]["endpoints"]["mqtt"]["regionHost"] = "${instanceId}.${regionId}.region.example.com"
    return regions


EU_REGION_ANSWER = success_body([("mqtt", "iot-eu-1.eu-central-1.region.example.com", 8883, "192.0.2.10")])


class RegionAliases(DeviceAsserts, HarnessCase):
    """GET /auth/bootstrap/regionId/{regionId} by id or alias, answered with
    the endpoint's regionHost (SPEC §3, §4)."""

    harness_args = {"regions": aliased_regions()}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1EU", region="eu-central-1", instance=None)
        cls.h.register("a1EU", ["dev1"])

    def region(self, name):
        return self.h.public(build_request("GET", "/auth/bootstrap/regionId/" + name))

    def test_numeric_alias_answers_region_host(self):
        r = self.region("4")
        self.assertSuccess(r, EU_REGION_ANSWER)
        self.assertLessEqual(len(r.body), 192)

    def test_other_alias(self):
        self.assertSuccess(self.region("eu"), EU_REGION_ANSWER)

    def test_region_id_still_works(self):
        self.assertSuccess(self.region("eu-central-1"), EU_REGION_ANSWER)

    def test_post_alias(self):
        r = self.h.public(build_request("POST", "/auth/bootstrap/regionId/4", b"",
                                        {"Content-Type": harness.SDK_CONTENT_TYPE}))
        self.assertSuccess(r, EU_REGION_ANSWER)

    def test_device_form_keeps_host(self):
        # regionHost is for the regionId form only.
        self.assertSuccess(self.h.bootstrap("a1EU", "dev1"), EU_ANSWER)

    def test_alias_without_region_host_uses_host(self):
        # ${regionId} is the region's id, not the alias it was named by.
        r = self.region("3")
        self.assertSuccess(r, success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)]))

    def test_unknown_alias(self):
        for name in ("5", "04", "21", "EU", "4x"):
            with self.subTest(name=name):
                self.assertDeviceError(self.region(name), 400, 460)

    def test_product_key_host_without_region_host(self):
        for name in ("0", "cn-shanghai"):
            with self.subTest(name=name):
                r = self.region(name)
                self.assertDeviceError(r, 400, 460)
                self.assertIn("product key", r.json()["message"])

    def test_admin_regions_shows_aliases_and_region_host(self):
        r = self.h.admin("GET", "/v1/regions")
        self.assertEqual(r.status, 200, r)
        by_id = {x["id"]: x for x in r.json()["regions"]}
        self.assertEqual(by_id["eu-central-1"]["aliases"], ["4", "eu"])
        self.assertEqual(by_id["cn-shanghai"]["aliases"], ["0"])
        self.assertEqual(by_id["eu-central-1"]["instances"][0]["endpoints"]["mqtt"]["regionHost"],
                         "${instanceId}.${regionId}.region.example.com")
        self.assertNotIn("regionHost", by_id["cn-shanghai"]["instances"][0]["endpoints"]["mqtt"])


# SPEC §3: the vendor SDK 4.x region numbers.
SDK_REGIONS = ["cn-shanghai", "ap-southeast-1", "ap-northeast-1", "us-east-1", "eu-central-1",
               "us-west-1", "cn-hangzhou", "cn-shenzhen", "cn-beijing", "cn-qingdao",
               "cn-zhangjiakou", "cn-huhehaote", "cn-heyuan", "cn-chengdu", "cn-hongkong",
               "ap-southeast-2", "ap-southeast-3", "ap-southeast-5", "ap-south-1", "eu-west-1",
               "me-east-1"]
# Closed, left out of data/cloud-regions.csv (data/README.md).
SDK_REGIONS_ABSENT = {"ap-southeast-2", "ap-south-1"}


def shipped_regions():
    """data/regions.json without its notify brokers (they point at
    127.0.0.1:1883, which may be somebody else's broker)."""
    with open(os.path.join(harness.source_root(), "data", "regions.json")) as f:
        regions = json.load(f)
    for r in regions["regions"]:
        for i in r["instances"]:
            i.pop("notify", None)
    return regions


class ShippedRegionIds(DeviceAsserts, HarnessCase):
    """The shipped catalog answers the SDK's numeric regionId form."""

    harness_args = {"regions": shipped_regions()}

    def test_sdk_region_numbers(self):
        for n, rid in enumerate(SDK_REGIONS):
            with self.subTest(n=n, region=rid):
                r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/%d" % n))
                if rid in SDK_REGIONS_ABSENT:
                    self.assertDeviceError(r, 400, 460)
                    continue
                self.assertSuccess(r, success_body([("mqtt", "iot-as-mqtt.%s.example.com" % rid, 1883, None)]))
                self.assertLessEqual(len(r.body), 192)

    def test_numeric_region_id_4_is_eu_central_1(self):
        r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/4"))
        self.assertSuccess(r, success_body([("mqtt", "iot-as-mqtt.eu-central-1.example.com", 1883, None)]))

    def test_every_region_by_id(self):
        for region in shipped_regions()["regions"]:
            with self.subTest(region=region["id"]):
                r = self.h.public(build_request("GET", "/auth/bootstrap/regionId/" + region["id"]))
                self.assertSuccess(r, success_body(
                    [("mqtt", "iot-as-mqtt.%s.example.com" % region["id"], 1883, None)]))
                self.assertLessEqual(len(r.body), 192)


class Resolution(DeviceAsserts, HarnessCase):
    """Device level, product level, home; activation bookkeeping. Batches are
    seeded straight into Redis per the key schema."""

    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("a1PK")
        h.register("a1PK", ["home-1", "home-2", "dev-level", "dev-level-2", "act-1", "act-2"])
        h.put_product("a1PL")
        h.register("a1PL", ["plain-1", "override-1", "override-2", "act-3"])
        h.seed_batch(900001, "eu-central-1", "iot-eu-1")
        h.seed_batch(900002, "us-east-1", "iot-us-2", account="acct-b")
        h.set_product_batch("a1PL", 900001)

    def device(self, pk, dn):
        r = self.h.admin("GET", "/v1/devices/%s/%s" % (pk, dn))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_record_written_by_registration(self):
        rec = self.h.device_record("a1PK", "home-2")
        fields = rec.split(";")
        self.assertEqual(len(fields), 7, rec)  # docs/key-schema.md, "Device record"
        self.assertEqual(fields[0], "0")
        self.assertEqual(fields[1], "i")
        self.assertGreater(int(fields[2], 36), 1600000000)  # base 36
        self.assertEqual(fields[3:], ["0", "0", "", ""])

    def test_home(self):
        self.assertSuccess(self.h.bootstrap("a1PK", "home-1"),
                           success_body([("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1883, None)]))
        a = self.device("a1PK", "home-1")["assignment"]
        self.assertEqual((a["level"], a["region"], a["instance"], a["account"]),
                         ("home", "cn-shanghai", "iot-cn-sh-public", "acct-a"))

    def test_product_level_overrides_home(self):
        self.assertSuccess(self.h.bootstrap("a1PL", "plain-1"), EU_ANSWER)
        a = self.device("a1PL", "plain-1")["assignment"]
        self.assertEqual((a["level"], a["strategy"], a["region"], a["instance"], a["account"]),
                         ("product", "region", "eu-central-1", "iot-eu-1", "acct-a"))
        self.assertIsNotNone(a.get("batchId"))
        self.assertTrue(a.get("distributedAt"))

    def test_device_level_overrides_product_level(self):
        self.h.set_device_batch("a1PL", "override-1", 900002)
        r = self.h.bootstrap("a1PL", "override-1", resources="mqtt,http")
        self.assertSuccess(r, success_body([("mqtt", "override-1.mqtt-2.us-east-1.example.com", 8884, None),
                                            ("http", "http-2.us-east-1.example.com", 8443, None)]))
        a = self.device("a1PL", "override-1")["assignment"]
        self.assertEqual((a["level"], a["strategy"], a["region"], a["instance"], a["account"]),
                         ("device", "region", "us-east-1", "iot-us-2", "acct-b"))
        self.assertIsNotNone(a.get("batchId"))
        self.assertTrue(a.get("distributedAt"))

    def test_device_level_overrides_home(self):
        self.h.set_device_batch("a1PK", "dev-level", 900001)
        self.assertSuccess(self.h.bootstrap("a1PK", "dev-level"), EU_ANSWER)
        self.assertEqual(self.device("a1PK", "dev-level")["assignment"]["level"], "device")

    def test_device_level_substitutes_device_name(self):
        self.h.set_device_batch("a1PK", "dev-level-2", 900002)
        self.assertSuccess(self.h.bootstrap("a1PK", "dev-level-2"),
                           success_body([("mqtt", "dev-level-2.mqtt-2.us-east-1.example.com", 8884, None)]))

    def test_other_devices_keep_product_level(self):
        self.h.set_device_batch("a1PL", "override-2", 900002)
        self.assertSuccess(self.h.bootstrap("a1PL", "plain-1"), EU_ANSWER)

    def test_activation_recorded(self):
        before = self.device("a1PK", "act-1")
        self.assertEqual(before["status"], "inactive")
        self.assertFalse(before.get("activatedAt"))
        self.assertFalse(before.get("lastBootstrapAt"))
        self.assertFalse(before.get("lastResolvedRegion"))
        self.assertTrue(before.get("registeredAt"))
        self.assertSuccess(self.h.bootstrap("a1PK", "act-1"),
                           success_body([("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1883, None)]))
        after = self.device("a1PK", "act-1")
        self.assertEqual(after["status"], "active")
        self.assertTrue(after.get("activatedAt"))
        self.assertTrue(after.get("lastBootstrapAt"))
        self.assertEqual(after["lastResolvedRegion"], "cn-shanghai")
        self.assertEqual(after["registeredAt"], before["registeredAt"])

    def test_activation_records_distributed_region(self):
        self.h.set_device_batch("a1PK", "act-2", 900001)
        self.assertSuccess(self.h.bootstrap("a1PK", "act-2"), EU_ANSWER)
        after = self.device("a1PK", "act-2")
        self.assertEqual(after["status"], "active")
        self.assertEqual(after["lastResolvedRegion"], "eu-central-1")
        # The registration and assignment fields survive the activation write.
        rec = self.h.device_record("a1PK", "act-2").split(";")
        self.assertEqual(rec[0], "900001")
        self.assertEqual(rec[1], "a")
        # The region by its code (docs/key-schema.md, "Codes").
        self.assertEqual(rec[5], self.h.redis("HGET", harness.key("codes"), "r:eu-central-1"))
        self.assertNotEqual(rec[5], "")

    def test_rejected_request_does_not_activate(self):
        self.assertDeviceError(self.h.bootstrap("a1PL", "act-3", resources="coap"), 400, 460)
        d = self.device("a1PL", "act-3")
        self.assertEqual(d["status"], "inactive")
        self.assertFalse(d.get("activatedAt"))


class SignedBootstrap(DeviceAsserts, HarnessCase):
    """SPEC §8, the signature computed here with Python's hmac."""

    SECRET = "Zq7-signed.device+secret"
    SKIP = ("sign", "signmethod", "version", "resources")

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1SG", bootstrapAuth="required")
        cls.h.register("a1SG", ["sig-dev1"], {"sig-dev1": cls.SECRET})

    def sign(self, params, method="hmacmd5"):
        first = {}
        for k, v in params:
            first.setdefault(k, v)
        content = "".join(k + v for k, v in sorted(first.items()) if k not in self.SKIP)
        return hmac.new(self.SECRET.encode(), content.encode(), getattr(hashlib, method[4:])).hexdigest()

    def send(self, body_params, query_params=()):
        form = lambda ps: "&".join("%s=%s" % (k, quote_plus(v)) for k, v in ps)
        if not query_params:
            return self.h.public(sdk_request(form(body_params)))
        return self.h.public(sdk_request(form(body_params), path="/auth/bootstrap?" + form(query_params)))

    def base(self):
        return [("productKey", "a1SG"), ("deviceName", "sig-dev1"), ("clientId", "a1SG.sig-dev1"),
                ("timestamp", "1700000000000")]

    def assertSigned(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["code"], 200, r.body)

    def test_each_method(self):
        for method in ("hmacmd5", "hmacsha1", "hmacsha256"):
            p = self.base() + [("signmethod", method), ("version", "default"), ("resources", "mqtt")]
            self.assertSigned(self.send(p + [("sign", self.sign(p, method))]))

    def test_default_method_and_upper_case_hex(self):
        p = self.base()
        self.assertSigned(self.send(p + [("sign", self.sign(p).upper())]))

    def test_decoded_values_are_signed(self):
        p = [("productKey", "a1SG"), ("deviceName", "sig-dev1"), ("clientId", "a b+c/d\u00e9"),
             ("Extra", "x=y&z")]
        self.assertSigned(self.send(p + [("signmethod", "hmacsha256"), ("sign", self.sign(p, "hmacsha256"))]))

    def test_query_and_body_together_body_wins(self):
        body = self.base()
        query = [("clientId", "from-query"), ("random", "42")]
        sign = self.sign(body + query)
        self.assertSigned(self.send(body + [("sign", sign)], query))

    def test_wrong_or_missing_signature(self):
        p = self.base()
        good = self.sign(p)
        bad = ("0" if good[0] != "0" else "1") + good[1:]
        r = self.send(p + [("sign", bad)])
        self.assertDeviceError(r, 401, 401)
        self.assertEqual(r.json()["message"], "signature mismatch")
        # A parameter added after signing breaks it.
        self.assertDeviceError(self.send(p + [("sign", good), ("extra", "1")]), 401, 401)
        r = self.send(p)
        self.assertDeviceError(r, 401, 401)
        self.assertEqual(r.json()["message"], "signature required")


class BodyLimit(DeviceAsserts, HarnessCase):
    harness_args = {"config": {"limits": {"max_body_bytes": 1024}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    def test_oversized_body(self):
        body = b"productKey=a1PK&deviceName=dev1&clientId=" + b"x" * 2000
        r = self.h.public(sdk_request(body))
        self.assertEqual(r.status, 413, r)
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)
        # libevent's HTTP layer refuses it before any handler runs, with its own
        # short error page (libevent 2.1 has no hook to change that body).
        self.assertHttpFraming(r)

    def test_huge_content_length_answered_without_body(self):
        data = (b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                + harness.SDK_CONTENT_TYPE.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n")
        t0 = time.monotonic()
        r = self.h.public(data, timeout=5)
        self.assertEqual(r.status, 413, r)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)
        self.assertHttpFraming(r)

    def test_body_at_limit_accepted(self):
        body = b"productKey=a1PK&deviceName=dev1"
        self.assertSuccess(self.h.public(sdk_request(body)), SDK_ANSWER)


class RateLimit(DeviceAsserts, HarnessCase):
    harness_args = {"config": {"limits": {"bootstrap_rps_per_ip": 2}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    def test_rate_limited_with_retry_after(self):
        answers = [self.h.public(sdk_request(SDK_BODY)) for _ in range(12)]
        self.assertSuccess(answers[0], SDK_ANSWER)
        limited = [r for r in answers if r.status == 429]
        self.assertTrue(limited, [r.status for r in answers])
        for r in answers:
            self.assertIn(r.status, (200, 429), r)
            self.assertFraming(r)
        r = limited[0]
        self.assertDeviceError(r, 429, 429)
        retry = r.header("Retry-After")
        self.assertIsNotNone(retry, r.header_lines)
        self.assertRegex(retry, r"^[1-9][0-9]*$")
        harness.wait_until(lambda: self.h.public(sdk_request(SDK_BODY)).status == 200,
                           int(retry) + 3, "the rate limit to let the address through again", interval=0.2)


class Timeouts(DeviceAsserts, HarnessCase):
    harness_args = {"config": {"limits": {"request_timeout_s": 2, "keepalive_timeout_s": 2}}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    def wait_closed(self, s, deadline_s=8):
        """Returns (seconds until the daemon closed S, bytes it sent)."""
        t0 = time.monotonic()
        got = b""
        while True:
            left = t0 + deadline_s - time.monotonic()
            if left <= 0:
                self.fail("connection still open after %ds (keepalive_timeout_s is 2)" % deadline_s)
            s.settimeout(left)
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                continue
            if not chunk:
                return time.monotonic() - t0, got
            got += chunk

    def check_closed(self, s, started):
        elapsed, got = self.wait_closed(s)
        self.assertGreaterEqual(time.monotonic() - started, 1.5, "closed before the timeout")
        if got:
            self.assertNotRegex(got[:12], rb"^HTTP/1\.[01] 2", got)

    def test_silent_connection_closed(self):
        started = time.monotonic()
        with harness.connect(self.h.public_port) as s:
            self.check_closed(s, started)

    def test_half_header_closed(self):
        started = time.monotonic()
        with harness.connect(self.h.public_port) as s:
            s.sendall(b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.check_closed(s, started)

    def test_partial_body_closed(self):
        started = time.monotonic()
        with harness.connect(self.h.public_port) as s:
            s.sendall(b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60\r\n\r\nproductKey=")
            self.check_closed(s, started)

    def test_idle_keep_alive_closed(self):
        with harness.connect(self.h.public_port) as s:
            s.sendall(sdk_request(SDK_BODY))
            self.assertSuccess(harness.read_response(s), SDK_ANSWER)
            started = time.monotonic()
            self.check_closed(s, started)

    def test_others_served_while_slow_clients_hang(self):
        slow = [harness.connect(self.h.public_port) for _ in range(5)]
        try:
            for s in slow[:3]:
                s.sendall(b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)
            self.assertLess(time.monotonic() - t0, 1.0)
            for s in slow:
                self.wait_closed(s)
        finally:
            for s in slow:
                s.close()


def s_client(port, *args, data=b"", timeout=20):
    """Runs openssl s_client against 127.0.0.1:PORT; returns (rc, output)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost", *args]
    try:
        r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return -1, (e.output or b"").decode(errors="replace")
    return r.returncode, r.stdout.decode(errors="replace")


def negotiated(out):
    """(protocol, cipher) of the handshake s_client reports, or None. The
    "New, X, Cipher is Y" line gives the cipher's own version in X (SSLv3 for
    AES128-SHA), so the protocol comes from the session's "Protocol :" line."""
    m = re.search(r"(?:New|Reused), (\S+), Cipher is (\S+)", out)
    if not m or m.group(2) == "(NONE)":
        return None
    # A TLS 1.3 s_client that leaves before the ticket prints no session block;
    # its suites' version is the protocol's.
    p = re.search(r"Protocol\s*:\s*(\S+)", out)
    return (p.group(1) if p else m.group(1)), m.group(2)


class TlsBase(DeviceAsserts, HarnessCase):
    @classmethod
    def prepare(cls):
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    def exchange(self, ctx, data=None):
        with harness.connect(self.h.public_port, tls=ctx) as s:
            version, cipher = s.version(), s.cipher()[0]
            s.sendall(data or sdk_request(SDK_BODY))
            return version, cipher, harness.read_response(s)

    def peer_subject(self, out):
        m = re.search(r"subject=.*?(bootstrapd-test-(?:ec|rsa))", out)
        return m.group(1) if m else None


class Tls(TlsBase):
    harness_args = {"tls": {"legacy_device_ciphers": True}}

    def test_sdk_request_tls12(self):
        ctx = harness.client_context(max_version=ssl.TLSVersion.TLSv1_2)
        version, cipher, r = self.exchange(ctx)
        self.assertEqual(version, "TLSv1.2")
        self.assertSuccess(r, SDK_ANSWER)

    def test_sdk_request_tls13(self):
        ctx = harness.client_context(min_version=ssl.TLSVersion.TLSv1_3)
        version, cipher, r = self.exchange(ctx)
        self.assertEqual(version, "TLSv1.3")
        self.assertSuccess(r, SDK_ANSWER)

    def test_verified_against_generated_certificates(self):
        for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(max_version=maxv):
                ctx = harness.client_context(verify=True, max_version=maxv)
                version, cipher, r = self.exchange(ctx)
                self.assertSuccess(r, SDK_ANSWER)

    def test_rsa_only_client_gets_rsa_certificate(self):
        rc, out = s_client(self.h.public_port, "-tls1_2", "-sigalgs", "RSA+SHA256",
                           "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(negotiated(out), ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"), out)
        self.assertEqual(self.peer_subject(out), "bootstrapd-test-rsa", out)
        self.assertIn("Server public key is 2048 bit", out)

    def test_ecdsa_client_gets_ecdsa_certificate(self):
        rc, out = s_client(self.h.public_port, "-tls1_2", "-sigalgs", "ECDSA+SHA256",
                           "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(negotiated(out), ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"), out)
        self.assertEqual(self.peer_subject(out), "bootstrapd-test-ec", out)
        self.assertIn("Server public key is 256 bit", out)

    def test_modern_client_gets_ecdsa_certificate(self):
        rc, out = s_client(self.h.public_port)
        self.assertIsNotNone(negotiated(out), out)
        self.assertEqual(negotiated(out)[0], "TLSv1.3", out)
        self.assertEqual(self.peer_subject(out), "bootstrapd-test-ec", out)

    def test_legacy_static_rsa_handshake(self):
        rc, out = s_client(self.h.public_port, "-tls1_2", "-cipher", "AES128-SHA")
        self.assertEqual(negotiated(out), ("TLSv1.2", "AES128-SHA"), out)
        self.assertEqual(self.peer_subject(out), "bootstrapd-test-rsa", out)

    def test_legacy_static_rsa_request_answered(self):
        for cipher in ("AES128-SHA", "AES256-SHA", "AES128-SHA256", "AES256-SHA256"):
            with self.subTest(cipher=cipher):
                ctx = harness.client_context(max_version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
                version, got, r = self.exchange(ctx)
                self.assertEqual((version, got), ("TLSv1.2", cipher))
                self.assertSuccess(r, SDK_ANSWER)

    def tls_failures(self, reason):
        return harness.metric_value(self.h.metrics(), "bootstrapd_tls_handshake_failures_total", reason=reason) or 0

    def test_tls11_refused(self):
        before = self.tls_failures("protocol_version")
        rc, out = s_client(self.h.public_port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        self.assertIsNone(negotiated(out), out)
        self.assertNotEqual(rc, 0, out)
        self.assertTrue(self.h.healthy())
        harness.wait_until(lambda: self.tls_failures("protocol_version") == before + 1, 3,
                           "the refused TLS 1.1 handshake counted under protocol_version")

    def test_session_resumption(self):
        sess = os.path.join(self.h.dir, "sess.pem")
        rc, out = s_client(self.h.public_port, "-tls1_2", "-sess_out", sess)
        self.assertRegex(out, r"\bNew, ", out)
        self.assertEqual(negotiated(out)[0], "TLSv1.2", out)
        rc, out = s_client(self.h.public_port, "-tls1_2", "-sess_in", sess)
        self.assertRegex(out, r"\bReused, ", out)

    def test_session_id_resumption_without_tickets(self):
        sess = os.path.join(self.h.dir, "sess-id.pem")
        rc, out = s_client(self.h.public_port, "-tls1_2", "-no_ticket", "-sess_out", sess)
        self.assertIsNotNone(negotiated(out), out)
        rc, out = s_client(self.h.public_port, "-tls1_2", "-no_ticket", "-sess_in", sess)
        self.assertRegex(out, r"\bReused, ", out)

    def test_plain_http_on_tls_port_does_not_get_answer(self):
        try:
            r = harness.raw_request(self.h.public_port, sdk_request(SDK_BODY), timeout=3)
            self.assertNotEqual(r.status, 200, r)
        except (OSError, harness.ConnectionClosed):
            pass
        self.assertTrue(self.h.healthy())
        self.assertGreaterEqual(self.tls_failures("not_tls"), 1)


class TlsModern(TlsBase):
    harness_args = {"tls": True, "config": {"log": {"level": "debug"}}}

    def test_sdk_request(self):
        version, cipher, r = self.exchange(harness.client_context())
        self.assertSuccess(r, SDK_ANSWER)

    def test_static_rsa_refused_without_legacy_ciphers(self):
        rc, out = s_client(self.h.public_port, "-tls1_2", "-cipher", "AES128-SHA")
        self.assertIsNone(negotiated(out), out)
        ctx = harness.client_context(max_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA")
        with self.assertRaises(ssl.SSLError):
            self.exchange(ctx)
        # Counted, and at debug level logged with what the client offered.
        text = self.h.metrics()
        self.assertGreaterEqual(harness.metric_value(text, "bootstrapd_tls_handshake_failures_total",
                                                     reason="no_shared_cipher") or 0, 2, text)
        harness.wait_until(lambda: re.search(r"handshake with 127\.0\.0\.1 failed: no_shared_cipher.*"
                                             r"suites.*AES128-SHA", self.h.logs_text()), 3,
                           "the failed handshake logged with the offered suites")

    def test_rsa_only_client_still_served(self):
        rc, out = s_client(self.h.public_port, "-tls1_2", "-sigalgs", "RSA+SHA256",
                           "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(self.peer_subject(out), "bootstrapd-test-rsa", out)


def catalog_with_port(port):
    regions = harness.default_regions()
    regions["regions"][0]["instances"][0]["endpoints"]["mqtt"]["port"] = port
    return regions


class Reload(DeviceAsserts, HarnessCase):
    @classmethod
    def prepare(cls):
        cls.h.put_product("a1PK")
        cls.h.register("a1PK", ["dev1"])

    def tearDown(self):
        # Put the original catalog back for the next test.
        self.h.write_regions()
        self.h.signal(signal.SIGHUP)
        harness.wait_until(lambda: self.answers_all(SDK_ANSWER), 5, "the original catalog to be back in service")
        super().tearDown()

    def answers_all(self, body, n=6):
        """True when N requests on new connections (spread over the daemon's
        threads) all get BODY."""
        return all(self.h.public(sdk_request(SDK_BODY)).body == body for _ in range(n))

    def hup_and_wait_for_log(self, pattern):
        offset = len(self.h.daemon_log())
        self.h.signal(signal.SIGHUP)
        return harness.wait_until(lambda: re.search(pattern, self.h.daemon_log()[offset:]), 5,
                                  "a log line matching %r after SIGHUP" % pattern)

    def test_broken_json_rejected_old_catalog_kept(self):
        self.h.write_regions(text='{"regions": [ {"id": "cn-shanghai", \n')
        self.hup_and_wait_for_log(r"(?i)(reject|fail|error|invalid|keep)")
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)
        r = self.h.admin("GET", "/v1/regions")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"eu-central-1", r.body)

    def test_invalid_catalog_rejected_old_catalog_kept(self):
        self.h.write_regions(catalog_with_port(70000))
        self.hup_and_wait_for_log(r"(?i)(reject|fail|error|invalid|keep)")
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)

    def test_missing_catalog_rejected(self):
        os.unlink(self.h.regions_path)
        self.hup_and_wait_for_log(r"(?i)(reject|fail|error|invalid|keep)")
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), SDK_ANSWER)

    def test_new_catalog_in_service(self):
        self.h.write_regions(catalog_with_port(1884))
        self.h.signal(signal.SIGHUP)
        expected = success_body([("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1884, None)])
        harness.wait_until(lambda: self.answers_all(expected), 5,
                           "the answers to use the reloaded catalog (port 1884)")
        self.assertSuccess(self.h.public(sdk_request(SDK_BODY)), expected)


def accept_queue(port):
    """Connections to PORT that the kernel holds and the daemon has not yet
    accepted (the Recv-Q of its listening sockets)."""
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], stdout=subprocess.PIPE, text=True,
                         timeout=10).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())


class Shutdown(DeviceAsserts, unittest.TestCase):
    def setUp(self):
        self.h = harness.Harness(name=self.id()).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1"])

    def tearDown(self):
        self.h.close()

    def check_exit(self, sig):
        idle = harness.connect(self.h.public_port)
        try:
            idle.sendall(sdk_request(SDK_BODY))
            self.assertSuccess(harness.read_response(idle), SDK_ANSWER)
            t0 = time.monotonic()
            self.h.signal(sig)
            rc = self.h.proc.wait(timeout=harness.DRAIN_BOUND_S + 2)
            self.assertEqual(rc, 0)
            self.assertLess(time.monotonic() - t0, harness.DRAIN_BOUND_S + 1)
        finally:
            idle.close()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.h.public_port), timeout=1).close()

    def test_sigterm_with_idle_keep_alive_connection(self):
        self.check_exit(signal.SIGTERM)

    def test_sigint(self):
        self.check_exit(signal.SIGINT)

    def test_sigterm_answers_request_waiting_on_redis(self):
        # Redis hung, a generous redis.timeout_ms: the request is in flight
        # (waiting on Redis) when SIGTERM comes; it still gets its 503.
        self.h.close()
        self.h = harness.Harness(name=self.id(), config={"redis": {"timeout_ms": 3000}}).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1"])
        self.h.kill_redis(signal.SIGSTOP)
        s = harness.connect(self.h.public_port, timeout=10)
        try:
            s.sendall(sdk_request(SDK_BODY))
            time.sleep(0.5)  # inside the 3 s the daemon waits on Redis
            self.h.signal(signal.SIGTERM)
            r = harness.read_response(s, timeout=10)
            self.assertDeviceError(r, 503, 503)
        finally:
            s.close()
            self.h.kill_redis(signal.SIGCONT)
        self.assertEqual(self.h.proc.wait(timeout=harness.DRAIN_BOUND_S + 2), 0)

    def test_sigterm_finishes_request_in_flight(self):
        # A request whose body is still arriving when SIGTERM comes is answered.
        s = harness.connect(self.h.public_port)
        try:
            data = sdk_request(SDK_BODY)
            s.sendall(data[:-10])
            # Accepted first: closing a listener resets what waits in its
            # queue, as any server's does, and that is not this test.
            harness.wait_until(lambda: accept_queue(self.h.public_port) == 0, 5, "the connection accepted")
            self.h.signal(signal.SIGTERM)
            # Draining: the listener closes while our request is half read.
            harness.wait_until(lambda: not harness.port_open(self.h.public_port), 5,
                               "the public listener to close after SIGTERM")
            try:
                s.sendall(data[-10:])
                r = harness.read_response(s)
            except (OSError, harness.ConnectionClosed) as e:
                self.fail("SIGTERM dropped a request whose header had arrived and body was "
                          "still coming, instead of finishing it: %s" % e)
            self.assertSuccess(r, SDK_ANSWER)
        finally:
            s.close()
        self.assertEqual(self.h.proc.wait(timeout=harness.DRAIN_BOUND_S + 2), 0)


if __name__ == "__main__":
    harness.main()
