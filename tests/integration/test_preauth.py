"""HTTPS authentication before MQTT (SPEC §10): POST /auth/devicename as the
vendor SDK 3.0.1 sends it, and POST /v1/mqtt/auth driven as a broker's HTTP
authentication (EMQX's shape) would. Signatures by `openssl dgst`."""

import json
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase  # noqa: E402

SECRET = "0123456789abcdef0123456789abcdef"
TS = "2524608000000"  # the SDK's fixed timestamp


def openssl_hmac256_upper(key, msg):
    out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", key], input=msg.encode(), stdout=subprocess.PIPE,
                         check=True, timeout=10).stdout.decode()
    return out.strip().split()[-1].upper()  # the SDK writes capitals


def sdk301_request(pk, dn, secret=SECRET, sign=None, path="/auth/devicename"):
    """The request of the SDK 3.0.1 (infra_preauth.c): its fixed parameter
    order, clientId {pk}.{dn}, its fixed timestamp, the sign in capitals."""
    cid = "%s.%s" % (pk, dn)
    if sign is None:
        sign = openssl_hmac256_upper(secret, "clientId%sdeviceName%sproductKey%stimestamp%s" % (cid, dn, pk, TS))
    body = ("productKey=%s&deviceName=%s&signmethod=hmacsha256&sign=%s&version=default&clientId=%s&timestamp=%s"
            "&resources=mqtt" % (pk, dn, sign, cid, TS))
    return ("POST %s HTTP/1.1\r\nHost: iot-auth.cn-shanghai.aliyuncs.com\r\n"
            "Accept: text/xml,text/javascript,text/html,application/json\r\nContent-Length: %d\r\n"
            "Content-Type: application/x-www-form-urlencoded;charset=utf-8\r\n\r\n%s" % (path, len(body), body)).encode()


def sdk301_parse(body):
    """A port of the SDK 3.0.1's answer parser (_preauth_parse_auth_rsp_string):
    at most 299 bytes; at every ':' the key is the text between the two
    quotes before it; string values up to the next quote, numbers by atoi."""
    text = body[:299].decode()
    out = {}
    for i, ch in enumerate(text):
        if ch != ":":
            continue
        q2 = text.rfind('"', 0, i)
        q1 = text.rfind('"', 0, q2)
        if q1 < 0:
            continue
        key = text[q1 + 1:q2]
        rest = text[i + 1:]
        if rest.startswith('"'):
            out[key] = rest[1:rest.index('"', 1)]
        else:
            out[key] = int(re.match(r"\s*(-?\d*)", rest).group(1) or 0)
    return out


class PreAuth(HarnessCase):
    @classmethod
    def prepare(cls):
        cls.h.put_product("a1Pa", preAuth=True)
        names = ("pa-0001", "pa-0002", "pa-0003", "pa-0004")
        cls.h.register("a1Pa", list(names), secrets={n: SECRET for n in names})
        cls.h.put_product("a1Np")
        cls.h.register("a1Np", ["np-0001"], secrets={"np-0001": SECRET})

    def preauth(self, pk, dn, **kw):
        return self.h.public(sdk301_request(pk, dn, **kw))

    def mqtt_auth(self, clientid, username, password, token=harness.TOKEN):
        return self.h.admin("POST", "/v1/mqtt/auth", {"clientid": clientid, "username": username, "password": password},
                            token=token)

    def assertAllowed(self, r, allow):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b'{"result":"allow"}' if allow else b'{"result":"deny"}')

    def issue(self, dn):
        r = self.preauth("a1Pa", dn)
        self.assertEqual(r.status, 200, r)
        return r, r.json()["data"]

    def test_sdk_answer(self):
        r, data = self.issue("pa-0001")
        host = "a1Pa.iot-as-mqtt.cn-shanghai.example.com"
        self.assertEqual(r.body, ('{"code":200,"data":{"iotId":"%s","iotToken":"%s","resources":{"mqtt":'
                                  '{"host":"%s","port":1883}}},"message":"success"}' % (
                                      data["iotId"], data["iotToken"], host)).encode())
        self.assertLessEqual(len(r.body), 299)
        # The bootstrap's own answer and 89 bytes: at most 192 + 89 = 281.
        plain = self.h.bootstrap("a1Pa", "pa-0001")
        self.assertEqual(len(r.body), len(plain.body) + 89)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        # What the SDK takes from it, read as its parser reads.
        got = sdk301_parse(r.body)
        self.assertEqual((got["code"], got["host"], got["port"]), (200, host, 1883), got)
        self.assertEqual((got["iotId"], got["iotToken"]), (data["iotId"], data["iotToken"]))
        self.assertRegex(got["iotId"], r"^[0-9a-f]{32}$")  # at most 63: the SDK's buffer
        self.assertRegex(got["iotToken"], r"^[0-9a-f]{32}$")  # at most 64
        # The iotId is the device's, stable; the token new each time.
        _, again = self.issue("pa-0001")
        self.assertEqual(again["iotId"], data["iotId"])
        self.assertNotEqual(again["iotToken"], data["iotToken"])
        # A bootstrap, too: the device is active.
        d = self.h.device("a1Pa", "pa-0001")
        self.assertEqual((d["status"], d["lastResolvedRegion"]), ("active", "cn-shanghai"), d)
        self.assertNotIn(data["iotToken"], self.h.daemon_log())

    def test_broker_checks_the_token(self):
        _, data = self.issue("pa-0002")
        iot_id, token = data["iotId"], data["iotToken"]
        # The SDK connects with its client id rebuilt: {pk}.{dn}|...|.
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|securemode=-1,_v=sdk-c-3.0.1|", iot_id, token), True)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002", iot_id, token), True)
        self.assertAllowed(self.mqtt_auth("", iot_id, token), True)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", iot_id, token.upper()), False)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", iot_id, token[:-1] + "0" if token[-1] != "0" else
                                          token[:-1] + "1"), False)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0003|", iot_id, token), False)  # another device's id
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-00022|", iot_id, token), False)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", "f" * 32, token), False)  # no such group
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", "0" + iot_id[1:-1] + "x", token), False)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", "a1Pa.pa-0002", token), False)
        # A new token replaces the old one.
        _, data2 = self.issue("pa-0002")
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", iot_id, token), False)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", iot_id, data2["iotToken"]), True)
        # Seven days later (the record says so): denied.
        key = harness.key("preauth", iot_id)
        rec = self.h.redis("GET", key).split(";")
        self.assertEqual(rec[2], "a1Pa/pa-0002")
        self.assertNotIn(data2["iotToken"], ";".join(rec))  # only its hash is kept
        ttl = int(self.h.redis("TTL", key))
        self.assertTrue(7 * 86400 - 60 <= ttl <= 7 * 86400, ttl)
        rec[0] = "1700000000"
        self.h.redis("SET", key, ";".join(rec))
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0002|", iot_id, data2["iotToken"]), False)

    def test_secret_reset_revokes_the_token(self):
        _, data = self.issue("pa-0003")
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0003|", data["iotId"], data["iotToken"]), True)
        r = self.h.admin("POST", "/v1/devices/a1Pa/pa-0003/secret")
        self.assertEqual(r.status, 200, r)
        self.assertAllowed(self.mqtt_auth("a1Pa.pa-0003|", data["iotId"], data["iotToken"]), False)
        # The old secret no longer signs a pre-auth; the new one does.
        self.assertEqual(self.preauth("a1Pa", "pa-0003").status, 401)
        r = self.preauth("a1Pa", "pa-0003", secret=r.json()["deviceSecret"])
        self.assertEqual(r.status, 200, r)

    def test_refusals(self):
        r = self.preauth("a1Np", "np-0001")
        self.assertEqual((r.status, r.json()["code"]), (403, 6200), r)
        r = self.preauth("a1Pa", "pa-0004", secret="f" * 32)
        self.assertEqual((r.status, r.json()["code"]), (401, 401), r)
        body = b"productKey=a1Pa&deviceName=pa-0004&clientId=a1Pa.pa-0004&timestamp=1"
        r = self.h.public(harness.sdk_request(body, path="/auth/devicename"))
        self.assertEqual((r.status, r.json()["code"]), (401, 401), r)
        r = self.preauth("a1Pa", "pa-9999")
        self.assertEqual((r.status, r.json()["code"]), (404, 5001), r)
        r = self.preauth("a1Nope", "pa-0004")
        self.assertEqual((r.status, r.json()["code"]), (404, 5001), r)
        self.assertEqual(self.h.device("a1Pa", "pa-0004")["status"], "inactive")

    def test_mqtt_auth_input(self):
        r = self.h.admin("POST", "/v1/mqtt/auth", b'{"username":"a","password":"b"', content_type="application/json")
        self.assertEqual(r.status, 400, r)
        r = self.h.admin("POST", "/v1/mqtt/auth", b'{"username":1,"password":"b"}', content_type="application/json")
        self.assertEqual(r.status, 400, r)
        r = self.h.admin("POST", "/v1/mqtt/auth", b'{"username":"a","username":"b","password":"b"}',
                         content_type="application/json")
        self.assertEqual(r.status, 400, r)
        r = self.mqtt_auth("x", "y", "z", token=None)
        self.assertEqual(r.status, 401, r)
        r = self.h.admin("GET", "/v1/mqtt/auth")
        self.assertEqual(r.status, 405, r)
        # Not on the public listener.
        r = self.h.request("POST", "/v1/mqtt/auth", b"{}")
        self.assertEqual(r.status, 404, r)


if __name__ == "__main__":
    harness.main()
