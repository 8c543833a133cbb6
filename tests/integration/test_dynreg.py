"""Dynamic registration, one secret per product (SPEC §9): the product
secret, and POST /auth/register/device as the vendor SDK 4.x dynreg component
sends it. Signatures are computed here with `openssl dgst`, independently of
the service."""

import json
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, sdk_request, success_body  # noqa: E402

SH = success_body([("mqtt", "%s.iot-as-mqtt.cn-shanghai.example.com", 1883, None)]).decode()
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def openssl_hmac(method, key, msg):
    """Hex HMAC of MSG under KEY by the openssl command line (hmacsha256 ...)."""
    digest = {"hmacmd5": "md5", "hmacsha1": "sha1", "hmacsha256": "sha256"}[method.lower()]
    out = subprocess.run(["openssl", "dgst", "-" + digest, "-hmac", key], input=msg.encode(),
                         stdout=subprocess.PIPE, check=True, timeout=10).stdout.decode()
    return out.strip().split()[-1]


def dynreg_body(pk, dn, random, secret, method="hmacsha256", sign=None):
    """The form in the SDK's order; the signature over deviceName, productKey
    and random, sorted, as name+value."""
    if sign is None:
        sign = openssl_hmac(method, secret, "deviceName%sproductKey%srandom%s" % (dn, pk, random))
    body = "productKey=%s&deviceName=%s&random=%s&sign=%s" % (pk, dn, random, sign)
    if method is not None:
        body += "&signMethod=%s" % method
    return body


class Dynreg(HarnessCase):
    @classmethod
    def prepare(cls):
        r = cls.h.put_product("a1Op", dynamicRegistration="open", bootstrapAuth="required")
        cls.open_secret = r.json()["productSecret"]
        r = cls.h.put_product("a1Pre", dynamicRegistration="preregistered")
        cls.pre_secret = r.json()["productSecret"]
        cls.h.register("a1Pre", ["pre-0001", "pre-0002"])
        cls.h.put_product("a1Off")

    def register(self, pk, dn, random, secret, **kw):
        return self.h.public(sdk_request(dynreg_body(pk, dn, random, secret, **kw), path="/auth/register/device"))

    def assertIssued(self, r, pk, dn):
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual((j["code"], j["message"], j["data"]["productKey"], j["data"]["deviceName"]),
                         (200, "success", pk, dn), j)
        secret = j["data"]["deviceSecret"]
        self.assertRegex(secret, HEX32)
        # Compact, in this order: the SDK's parser is small.
        self.assertEqual(r.body, ('{"code":200,"data":{"productKey":"%s","deviceName":"%s","deviceSecret":"%s"},'
                                  '"message":"success"}' % (pk, dn, secret)).encode())
        return secret

    def assertDeviceError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["code"], code, r)

    def signed_bootstrap(self, pk, dn, secret):
        sign = openssl_hmac("hmacsha256", secret, "clientId%s.%sdeviceName%sproductKey%s" % (pk, dn, dn, pk))
        body = "productKey=%s&deviceName=%s&clientId=%s.%s&resources=mqtt&signmethod=hmacsha256&sign=%s" % (
            pk, dn, pk, dn, sign)
        return self.h.public(sdk_request(body))

    def test_product_secret_shown_once(self):
        self.assertRegex(self.open_secret, HEX32)
        self.assertNotEqual(self.open_secret, self.pre_secret)
        p = self.h.admin("GET", "/v1/products/a1Op").json()
        self.assertEqual((p["dynamicRegistration"], p["preAuth"]), ("open", False), p)
        self.assertNotIn("productSecret", p)
        # A PUT that keeps it enabled does not show it again, nor change it.
        r = self.h.put_product("a1Op", dynamicRegistration="open", bootstrapAuth="required")
        self.assertNotIn("productSecret", r.json())
        self.assertNotIn(self.open_secret, self.h.daemon_log())
        r = self.register("a1Op", "once-0001", "1", self.open_secret)
        self.assertIssued(r, "a1Op", "once-0001")
        p = self.h.admin("GET", "/v1/products/a1Off").json()
        self.assertEqual(p["dynamicRegistration"], "off", p)

    def test_open_registers_and_the_secret_works(self):
        before = self.h.stats()["devices"]["total"]
        r = self.register("a1Op", "open-0001", "2839104", self.open_secret)
        secret = self.assertIssued(r, "a1Op", "open-0001")
        self.assertEqual(self.h.stats()["devices"]["total"], before + 1)
        d = self.h.device("a1Op", "open-0001")
        self.assertEqual((d["status"], d["activatedAt"]), ("inactive", None), d)
        # The product requires signed bootstraps: the issued secret signs one.
        r = self.signed_bootstrap("a1Op", "open-0001", secret)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, (SH % "a1Op").encode())
        # Bootstrapped: its secret is never issued again.
        r = self.register("a1Op", "open-0001", "77", self.open_secret)
        self.assertDeviceError(r, 409, 6201)
        self.assertNotIn(secret, self.h.daemon_log())

    def test_again_before_bootstrap_gives_a_new_secret(self):
        first = self.assertIssued(self.register("a1Op", "again-0001", "100", self.open_secret), "a1Op", "again-0001")
        second = self.assertIssued(self.register("a1Op", "again-0001", "101", self.open_secret), "a1Op",
                                   "again-0001")
        self.assertNotEqual(first, second)
        self.assertEqual(self.signed_bootstrap("a1Op", "again-0001", first).status, 401)
        self.assertEqual(self.signed_bootstrap("a1Op", "again-0001", second).status, 200)

    def test_replayed_random_refused(self):
        r = self.register("a1Op", "replay-0001", "555", self.open_secret)
        self.assertIssued(r, "a1Op", "replay-0001")
        r = self.register("a1Op", "replay-0001", "555", self.open_secret)
        self.assertDeviceError(r, 401, 401)
        self.assertIn("random", r.json()["message"])
        # The same random for another device is not a replay.
        self.assertIssued(self.register("a1Op", "replay-0002", "555", self.open_secret), "a1Op", "replay-0002")

    def test_sign_methods(self):
        for i, method in enumerate(("hmacmd5", "hmacsha1", "hmacsha256", "HmacSHA256")):
            r = self.register("a1Op", "meth-000%d" % i, "9", self.open_secret, method=method)
            self.assertIssued(r, "a1Op", "meth-000%d" % i)
        # No signMethod: hmacmd5, the default.
        sign = openssl_hmac("hmacmd5", self.open_secret, "deviceNamemeth-0009productKeya1Oprandom9")
        r = self.register("a1Op", "meth-0009", "9", self.open_secret, method=None, sign=sign)
        self.assertIssued(r, "a1Op", "meth-0009")
        # Hex in capitals is the same signature.
        sign = openssl_hmac("hmacsha256", self.open_secret, "deviceNamemeth-0008productKeya1Oprandom9").upper()
        r = self.register("a1Op", "meth-0008", "9", self.open_secret, sign=sign)
        self.assertIssued(r, "a1Op", "meth-0008")
        r = self.register("a1Op", "meth-0007", "9", self.open_secret, method="hmacsha512", sign="00" * 32)
        self.assertDeviceError(r, 400, 460)

    def test_refusals_change_nothing(self):
        before = self.h.stats()["devices"]["total"]
        # A wrong product secret, a signature over other values.
        self.assertDeviceError(self.register("a1Op", "bad-0001", "1", "0" * 32), 401, 401)
        sign = openssl_hmac("hmacsha256", self.open_secret, "deviceNamebad-0002productKeya1Oprandom2")
        self.assertDeviceError(self.register("a1Op", "bad-0001", "1", self.open_secret, sign=sign), 401, 401)
        self.assertDeviceError(self.register("a1Nope", "bad-0001", "1", self.open_secret), 404, 5001)
        self.assertDeviceError(self.register("a1Off", "bad-0001", "1", self.open_secret), 403, 6200)
        # Missing random or sign, bad names.
        body = "productKey=a1Op&deviceName=bad-0001&sign=00&signMethod=hmacsha256"
        self.assertDeviceError(self.h.public(sdk_request(body, path="/auth/register/device")), 400, 460)
        body = "productKey=a1Op&deviceName=bad-0001&random=1&signMethod=hmacsha256"
        self.assertDeviceError(self.h.public(sdk_request(body, path="/auth/register/device")), 401, 401)
        self.assertDeviceError(self.register("a1Op", "x", "1", self.open_secret), 400, 460)
        self.assertDeviceError(self.register("a1Op", "bad-0001", "a b", self.open_secret), 400, 460)
        r = self.h.request("GET", "/auth/register/device")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(self.h.stats()["devices"]["total"], before)
        r = self.h.admin("GET", "/v1/devices/a1Op/bad-0001")
        self.assertEqual(r.status, 404, r)

    def test_preregistered(self):
        self.assertDeviceError(self.register("a1Pre", "pre-9999", "1", self.pre_secret), 404, 5001)
        self.assertIssued(self.register("a1Pre", "pre-0001", "1", self.pre_secret), "a1Pre", "pre-0001")
        # Another product's secret does not sign for this one.
        self.assertDeviceError(self.register("a1Pre", "pre-0002", "1", self.open_secret), 401, 401)

    def test_rotation(self):
        self.h.put_product("a1Rot", dynamicRegistration="open")
        r = self.h.admin("POST", "/v1/products/a1Rot/secret")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        new = r.json()["productSecret"]
        self.assertRegex(new, HEX32)
        self.assertEqual(r.json()["productKey"], "a1Rot")
        self.assertIssued(self.register("a1Rot", "rot-0001", "1", new), "a1Rot", "rot-0001")
        r = self.h.admin("POST", "/v1/products/a1Rot/secret")
        newer = r.json()["productSecret"]
        self.assertDeviceError(self.register("a1Rot", "rot-0002", "1", new), 401, 401)
        self.assertIssued(self.register("a1Rot", "rot-0002", "1", newer), "a1Rot", "rot-0002")
        r = self.h.admin("POST", "/v1/products/a1None/secret")
        self.assertEqual(r.status, 404, r)
        r = self.h.admin("POST", "/v1/products/a1Rot/secret", token=None)
        self.assertEqual(r.status, 401, r)

    def test_bad_mode_refused(self):
        r = self.h.admin("PUT", "/v1/products/a1Bad", {"homeRegion": "cn-shanghai", "dynamicRegistration": "yes"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("dynamicRegistration", r.json()["error"]["message"])
        r = self.h.admin("GET", "/v1/products/a1Bad")
        self.assertEqual(r.status, 404, r)

    def test_admin_api_not_on_public_listener(self):
        r = self.h.request("POST", "/v1/products/a1Op/secret", b"")
        self.assertEqual(r.status, 404, r)


def openssl_tc_sign(secret, content):
    """base64 of the lower-case hex HMAC-SHA1, as the Tencent SDK signs."""
    hexmac = openssl_hmac("hmacsha1", secret, content)
    return subprocess.run(["openssl", "base64", "-A"], input=hexmac.encode(), stdout=subprocess.PIPE,
                          check=True, timeout=10).stdout.decode().strip()


def openssl_tc_open(secret, payload):
    """The answer's payload decrypted as the SDK does: AES-128-CBC, key the
    product secret's first 16 bytes, IV sixteen '0', no padding removed."""
    raw = subprocess.run(["openssl", "base64", "-d", "-A"], input=payload.encode(), stdout=subprocess.PIPE,
                         check=True, timeout=10).stdout
    out = subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-nopad", "-K", secret[:16].encode().hex(),
                          "-iv", "30" * 16], input=raw, stdout=subprocess.PIPE, check=True, timeout=10).stdout
    return out


def tencent_request(pk, dn, nonce, timestamp, secret, signature=None):
    """The request exactly as the SDK's dynreg.c and HTTP client write it:
    its header block, then the body (sent apart)."""
    if signature is None:
        signature = openssl_tc_sign(secret, "deviceName=%s&nonce=%d&productId=%s&timestamp=%d" % (
            dn, nonce, pk, timestamp))
    body = '{"deviceName":"%s","nonce":%d,"productId":"%s","timestamp":%d,"signature":"%s"}' % (
        dn, nonce, pk, timestamp, signature)
    head = ("POST /register/dev HTTP/1.1\r\nHost: gateway.tencentdevices.com\r\n"
            "Accept: text/xml,application/json;*/*\r\nContent-Length: %d\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n" % len(body))
    return head.encode(), body.encode()


class TencentDynreg(HarnessCase):
    @classmethod
    def prepare(cls):
        r = cls.h.put_product("TCPROD0001", dynamicRegistration="open", bootstrapAuth="required")
        cls.secret = r.json()["productSecret"]

    def send(self, head, body):
        import socket
        import time
        s = socket.create_connection(("127.0.0.1", self.h.public_port), timeout=5)
        try:
            s.sendall(head)
            time.sleep(0.05)
            s.sendall(body)
            data = b""
            # The answer is whole once Content-Length bytes of body are in.
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                    re.search(rb"Content-Length: (\d+)", data).group(1)):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head_part, _, payload = data.partition(b"\r\n\r\n")
        return head_part.decode(), payload

    def test_sdk_registers_and_decrypts(self):
        head, body = self.send(*tencent_request("TCPROD0001", "tc-0001", 48271000, 1700000000, self.secret))
        self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
        self.assertIn("\r\nContent-Length: %d" % len(body), head)
        # What the SDK's parser needs: a '{' first, top-level code 0 and
        # payload, nothing escaped, within its 255 bytes.
        self.assertLessEqual(len(body), 255)
        m = re.match(rb'^\{"code":0,"message":"","len":(\d+),"payload":"([A-Za-z0-9+/=]+)"\}$', body)
        self.assertIsNotNone(m, body)
        plain = openssl_tc_open(self.secret, m.group(2).decode())
        self.assertEqual(len(plain) % 16, 0)
        text = plain.rstrip(b"\0")
        self.assertEqual(len(text), int(m.group(1)))
        self.assertGreater(len(plain), len(text))  # zero padding, at least one byte
        j = json.loads(text)
        self.assertEqual(j["encryptionType"], 2, j)
        psk = j["psk"]
        self.assertRegex(psk, r"^[A-Za-z0-9+/]{22}==$")
        # The PSK is the device's secret: it signs a bootstrap.
        sign = openssl_hmac("hmacsha256", psk, "clientIdTCPROD0001.tc-0001deviceNametc-0001productKeyTCPROD0001")
        r = self.h.public(sdk_request("productKey=TCPROD0001&deviceName=tc-0001&clientId=TCPROD0001.tc-0001"
                                      "&resources=mqtt&signmethod=hmacsha256&sign=" + sign))
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(psk, self.h.daemon_log())

    def test_replay_and_bad_signature(self):
        req = tencent_request("TCPROD0001", "tc-0002", 777, 1700000001, self.secret)
        head, body = self.send(*req)
        self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
        head, body = self.send(*req)
        self.assertTrue(head.startswith("HTTP/1.1 401 "), head)
        self.assertEqual(json.loads(body)["code"], 401)
        # Signed over the raw digest instead of its hex (a known client mistake).
        head, body = self.send(*tencent_request("TCPROD0001", "tc-0003", 1, 2, self.secret,
                                                signature="F0R9nKdqI3bgDCPOTu1vw9BtvcM="))
        self.assertTrue(head.startswith("HTTP/1.1 401 "), head)
        # A body that is not the SDK's JSON.
        head, body = self.send(b"POST /register/dev HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n", b"deviceNam")
        self.assertTrue(head.startswith("HTTP/1.1 400 "), head)
        self.assertEqual(json.loads(body)["code"], 460)
        r = self.h.admin("GET", "/v1/devices/TCPROD0001/tc-0003")
        self.assertEqual(r.status, 404, r)


if __name__ == "__main__":
    harness.main()
