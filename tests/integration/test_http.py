"""The HTTP layer of both listeners, byte for byte (SPEC §2 "Connections" and
"Logging", §4 "Every answer of either listener is JSON ..."): smuggling
refused and its connection closed, JSON errors before a route is known,
request and keep-alive deadlines, pipelining, HTTP/1.0, descriptor
exhaustion and the connection bound, request ids, and the public listener
never serving the admin paths.

Each check is written once and run against the public listener (device
error shape {"code":N,"message":"..."}) and the admin listener (admin error
shape {"error":{"code":"<snake_case>","message":"...","details":[]}}); the
test names end in _public or _admin. The public listener is plain HTTP here
and TLS in the *Tls classes.

Assumption where the SPEC leaves a choice: a connection on which no byte has
arrived yet is idle, so it is closed after limits.keepalive_timeout_s, with
no answer (a 408 is for a request that began and did not arrive whole).
"""

import json
import os
import re
import select
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, TOKEN, sdk_request  # noqa: E402

REQUEST_TIMEOUT_S = 2
KEEPALIVE_TIMEOUT_S = 3
MAX_HEADER_BYTES = 1024
MAX_BODY_BYTES = 4096
LIMITS = {"request_timeout_s": REQUEST_TIMEOUT_S, "keepalive_timeout_s": KEEPALIVE_TIMEOUT_S,
          "max_header_bytes": MAX_HEADER_BYTES, "max_body_bytes": MAX_BODY_BYTES}

# The reason phrases of RFC 9110 (and the names older RFCs gave 413).
REASONS = {
    200: ("OK",), 201: ("Created",), 400: ("Bad Request",), 404: ("Not Found",),
    405: ("Method Not Allowed",), 408: ("Request Timeout",),
    413: ("Content Too Large", "Payload Too Large", "Request Entity Too Large"),
    414: ("URI Too Long",), 431: ("Request Header Fields Too Large",),
}
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SNAKE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CLOSE_BOUND_S = 2  # a refused connection is closed within this after its answer

PK = "a1PK"
SDK_BODY = b"productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&resources=mqtt"
SDK_ANSWER = harness.success_body([("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1883, None)])
EU_PATH = "/auth/bootstrap/regionId/eu-central-1"
EU_ANSWER = harness.success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])

CLOSED_ERRORS = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def auth():
    return b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"


def ok_request(which, extra=b"", version=b"HTTP/1.1"):
    """A request that each listener answers 200 (public: the regionId form of
    eu-central-1, admin: GET /v1/regions), with EXTRA header lines."""
    path = EU_PATH.encode() if which == "public" else b"/v1/regions"
    head = b"GET " + path + b" " + version + b"\r\nHost: 127.0.0.1\r\n"
    if which == "admin":
        head += auth()
    return head + extra + b"\r\n"


def product_put(pk, extra=b""):
    body = json.dumps({"homeRegion": "cn-shanghai", "homeInstance": "iot-cn-sh-public",
                       "account": "acct-a", "locked": False}).encode()
    return (b"PUT /v1/products/" + pk.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth()
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            + extra + b"\r\n" + body)


def hidden_request(which, tag):
    """The request smuggled behind a refused one: public, a request that
    would be answered 200; admin, a write (a product TAG) that must never
    exist."""
    if which == "public":
        return b"GET " + EU_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Smuggled: " + tag.encode() + b"\r\n\r\n"
    return product_put(tag)


class HttpChecks:
    """Connections to either listener and the checks of an answer."""

    def port(self, which):
        return self.h.public_port if which == "public" else self.h.admin_port

    def tls(self, which):
        return self.h.public_tls_context() if which == "public" else None

    def open(self, which, timeout=harness.SOCKET_TIMEOUT_S):
        return harness.connect(self.port(which), tls=self.tls(which), timeout=timeout)

    def read(self, s, buf, timeout=harness.SOCKET_TIMEOUT_S, what="an answer"):
        try:
            return harness.read_response(s, timeout=timeout, buf=buf)
        except (harness.ConnectionClosed, socket.timeout) + CLOSED_ERRORS as e:
            self.fail("no complete answer (%s): %s" % (what, e))

    def exchange(self, which, data, timeout=harness.SOCKET_TIMEOUT_S):
        """Sends DATA on a new connection; returns (socket, answer, buffer of
        what followed the answer). The caller closes the socket."""
        try:
            s = self.open(which, timeout=timeout)
        except OSError as e:
            self.fail("cannot connect to the %s listener: %s" % (which, e))
        try:
            s.sendall(data)
        except CLOSED_ERRORS:
            pass  # refused early; the answer may still be there to read
        buf = bytearray()
        try:
            return s, self.read(s, buf, timeout), buf
        except BaseException:
            s.close()
            raise

    def assertFraming(self, r):
        """HTTP/1.1, the exact reason phrase, one exact `Content-Length: `,
        never chunked, every header line at most 126 bytes."""
        reasons = REASONS.get(r.status, ())
        self.assertIn(r.status_line, [b"HTTP/1.1 %d %s" % (r.status, p.encode()) for p in reasons],
                      "status line %r" % r.status_line)
        self.assertFalse(r.chunked, "answer must not be chunked: %r" % r.header_lines)
        self.assertIsNone(r.header("Transfer-Encoding"), r.header_lines)
        cls = [ln for ln in r.header_lines if ln.lower().startswith(b"content-length:")]
        self.assertEqual(len(cls), 1, "exactly one Content-Length header: %r" % r.header_lines)
        self.assertTrue(cls[0].startswith(b"Content-Length: "), cls[0])
        self.assertRegex(cls[0][len(b"Content-Length: "):], rb"^(0|[1-9][0-9]*)$")
        self.assertEqual(int(cls[0][len(b"Content-Length: "):]), len(r.body), r)
        for line in [r.status_line] + r.header_lines:
            self.assertLessEqual(len(line), 126, "header line longer than 126 bytes: %r" % line)

    def assertJsonError(self, r, which, status):
        """STATUS with the listener's JSON error shape; returns the code."""
        self.assertEqual(r.status, status, r)
        self.assertFraming(r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"),
                        "Content-Type %r: %r" % (r.header("Content-Type"), r))
        try:
            j = json.loads(r.body.decode("utf-8"))
        except ValueError:
            self.fail("body is not JSON: %r" % r.body)
        self.assertIsInstance(j, dict, r.body)
        if which == "public":
            self.assertEqual(list(j), ["code", "message"], r.body)
            self.assertIs(type(j["code"]), int, r.body)
            self.assertNotEqual(j["code"], 200, r.body)
            self.assertIsInstance(j["message"], str, r.body)
            self.assertTrue(harness.is_compact_json(r.body), "not compact JSON: %r" % r.body)
            return j["code"]
        self.assertEqual(list(j), ["error"], r.body)
        err = j["error"]
        self.assertIsInstance(err, dict, r.body)
        self.assertIsInstance(err.get("code"), str, r.body)
        self.assertRegex(err["code"], SNAKE_RE)
        self.assertIsInstance(err.get("message"), str, r.body)
        self.assertIsInstance(err.get("details"), list, r.body)
        return err["code"]

    def assertOk(self, r, which):
        self.assertEqual(r.status, 200, r)
        self.assertFraming(r)
        if which == "public":
            self.assertEqual(r.body, EU_ANSWER)
        else:
            self.assertIn("regions", r.json())

    def wait_closed(self, s, buf=b"", within=CLOSE_BOUND_S):
        """Waits until the peer closes S; returns (seconds, bytes it sent
        before closing, starting with BUF's). None for seconds when it was
        still open after WITHIN."""
        t0 = time.monotonic()
        got = bytes(buf)
        while True:
            left = t0 + within - time.monotonic()
            if left <= 0:
                return None, got
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except CLOSED_ERRORS:
                chunk = b""
            except ssl.SSLError as e:  # e.g. an unexpected EOF in older Pythons
                if "EOF" not in str(e):
                    raise
                chunk = b""
            if not chunk:
                return time.monotonic() - t0, got
            got += chunk

    def assertClosed(self, s, buf=b"", within=CLOSE_BOUND_S, what="after the answer"):
        """The peer closes S within WITHIN seconds and sends nothing more
        (a second answer would mean a smuggled request was executed)."""
        elapsed, got = self.wait_closed(s, buf, within)
        self.assertEqual(got, b"", "bytes %s (a request hidden behind was answered?): %r" % (what, got[:300]))
        self.assertIsNotNone(elapsed, "connection still open %.1fs %s" % (within, what))

    def assertStillOpen(self, s, which):
        """S is still served: a further request on it gets its answer."""
        s.sendall(ok_request(which))
        self.assertOk(self.read(s, bytearray(), what="a further request on the same connection"), which)

    def refused(self, which, data, status=400, hidden=None):
        """DATA on a new connection gets STATUS in the listener's shape and the
        connection is closed with nothing more. HIDDEN: a product that a
        request smuggled in DATA would have made, which must not exist
        (checked first: it is the worst outcome)."""
        s, r, buf = self.exchange(which, data)
        with s:
            elapsed, got = self.wait_closed(s, buf)
        if hidden:
            self.assertNoProduct(hidden)
        self.assertEqual(got, b"", "bytes after the answer (a request hidden behind it answered?): answer %r, then %r"
                         % (r, got[:300]))
        self.assertJsonError(r, which, status)
        self.assertIsNotNone(elapsed, "connection still open %.1fs after the %d" % (CLOSE_BOUND_S, r.status))
        return r

    def assertSoon(self, pred, within, what):
        try:
            harness.wait_until(pred, within, what)
        except TimeoutError as e:
            self.fail(str(e))

    def assertNoProduct(self, pk):
        r = self.h.admin("GET", "/v1/products/" + pk)
        self.assertEqual(r.status, 404, "%s exists: a request hidden behind was executed: %r" % (pk, r))


def per_listener(*listeners):
    """Class decorator: each check_NAME(self, which) of the class becomes
    test_NAME_<listener> for each of LISTENERS. A check_NAME may be limited
    with a `listeners` attribute."""
    def deco(cls):
        for name in dir(cls):
            if not name.startswith("check_"):
                continue
            fn = getattr(cls, name)
            for which in listeners:
                if which not in getattr(fn, "listeners", ("public", "admin")):
                    continue

                def test(self, fn=fn, which=which):
                    fn(self, which)
                test.__name__ = "test_%s_%s" % (name[len("check_"):], which)
                test.__doc__ = fn.__doc__
                setattr(cls, test.__name__, test)
        return cls
    return deco


def only(*listeners):
    def deco(fn):
        fn.listeners = listeners
        return fn
    return deco


class HttpCase(HttpChecks, HarnessCase):
    harness_args = {"config": {"limits": LIMITS}}

    @classmethod
    def prepare(cls):
        cls.h.put_product(PK)
        cls.h.register(PK, ["dev1"])


class Head(HttpCase):
    def test_a_head_answer_has_no_body_and_the_connection_goes_on(self):
        # HEAD is no route's method: 405 with the length the body would have,
        # and no body, or the next answer on the connection would be misread.
        s = harness.connect(self.h.admin_port)
        try:
            s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            r = harness.read_response(s, head=True)
            self.assertEqual(r.status, 405)
            self.assertGreater(int(r.header("Content-Length")), 0)
            self.assertEqual(r.body, b"")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            r = harness.read_response(s)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"status": "ok"})
        finally:
            s.close()


# ---------------------------------------------------------------- smuggling

class SmugglingChecks:
    """Requests whose framing two parsers could read differently: 400 and
    the connection closed, nothing behind executed (SPEC §4)."""

    def smuggle(self, which, framing, body_head, tag):
        """The 200-request of WHICH with FRAMING header lines and a body of
        BODY_HEAD followed by a hidden request (TAG); refused 400 + close,
        and the hidden admin write never applied."""
        hidden = hidden_request(which, tag)
        framing = framing.replace(b"{n}", str(len(body_head) + len(hidden)).encode())
        self.refused(which, ok_request(which, framing) + body_head + hidden,
                     hidden=tag if which == "admin" else None)

    def check_two_content_lengths(self, which):
        self.smuggle(which, b"Content-Length: 5\r\nContent-Length: {n}\r\n", b"xxxxx", "pkSmugTwoCl" + self.tag())

    def check_two_content_lengths_larger_first(self, which):
        self.smuggle(which, b"Content-Length: {n}\r\nContent-Length: 5\r\n", b"xxxxx", "pkSmugClRev" + self.tag())

    def check_same_content_length_twice(self, which):
        self.smuggle(which, b"Content-Length: 5\r\nContent-Length: 5\r\n", b"xxxxx", "pkSmugSameCl" + self.tag())

    def check_content_length_list(self, which):
        """`Content-Length: 5, 5` is two Content-Length values in one line."""
        self.smuggle(which, b"Content-Length: 5, 5\r\n", b"xxxxx", "pkSmugClList" + self.tag())

    def check_content_length_and_chunked(self, which):
        # Both readings end the body at the same byte, so the hidden request
        # is the next one for either: only refusing the pair is safe.
        self.smuggle(which, b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n",
                     "pkSmugClTe" + self.tag())

    def check_chunked_and_content_length(self, which):
        self.smuggle(which, b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n",
                     "pkSmugTeCl" + self.tag())

    def check_nul_in_header(self, which):
        if which == "admin":
            # The token followed by a NUL must not authenticate anything.
            data = (b"GET /v1/regions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                    + TOKEN.encode() + b"\0junk\r\n\r\n")
        else:
            data = ok_request(which, b"X-Note: abc\0def\r\n")
        tag = "pkSmugNul" + self.tag()
        self.refused(which, data + hidden_request(which, tag), hidden=tag if which == "admin" else None)

    def check_bare_cr_in_header(self, which):
        tag = "pkSmugCr" + self.tag()
        self.refused(which, ok_request(which, b"X-Note: abc\rdef\r\n") + hidden_request(which, tag),
                     hidden=tag if which == "admin" else None)

    def check_bare_cr_ending_a_header(self, which):
        """A bare CR as a line end: one parser's header line is another's two."""
        tag = "pkSmugCrEnd" + self.tag()
        self.refused(which, ok_request(which, b"X-Note: abc\rContent-Length: 5\r\n") + b"xxxxx"
                     + hidden_request(which, tag), hidden=tag if which == "admin" else None)

    def check_hidden_write_would_apply(self, which):
        """The control of the checks above: the same hidden write sent on its
        own is applied, so its absence there means it was not executed."""
        tag = "pkSmugControl" + self.tag()
        s, r, buf = self.exchange(which, hidden_request(which, tag))
        s.close()
        self.assertEqual(r.status, 201 if which == "admin" else 200, r)
        if which == "admin":
            self.assertEqual(self.h.admin("GET", "/v1/products/" + tag).status, 200)

    def tag(self):
        return type(self).__name__


@per_listener("public", "admin")
class Smuggling(SmugglingChecks, HttpCase):
    pass


@per_listener("public")
class SmugglingTls(SmugglingChecks, HttpCase):
    harness_args = {"tls": True, "config": {"limits": LIMITS}}


# ---------------------------------------------------- errors before a route

class PreRouteChecks:
    """Errors found before a route is known are JSON in the listener's
    shape (SPEC §4)."""

    def check_malformed_request_line(self, which):
        for line in (b"NONSENSE\r\n\r\n", b"GET /x HTTP/1.1 junk\r\nHost: 127.0.0.1\r\n\r\n",
                     b"GET\r\n\r\n"):
            with self.subTest(request=line):
                self.refused(which, line, 400)

    def check_malformed_header(self, which):
        self.refused(which, ok_request(which, b"NoColonHere\r\n"), 400)

    def check_headers_over_limit(self, which):
        pad = b"X-Pad: " + b"p" * 100 + b"\r\n"
        self.refused(which, ok_request(which, pad * 15), 431)

    def check_headers_over_limit_unterminated(self, which):
        """431 as soon as the limit is passed, not when the header ends (it
        never does here) nor at the request deadline (408)."""
        pad = b"X-Pad: " + b"p" * 100 + b"\r\n"
        data = ok_request(which, pad * 15)[:-2]
        t0 = time.monotonic()
        s, r, buf = self.exchange(which, data, timeout=REQUEST_TIMEOUT_S + 2)
        with s:
            self.assertJsonError(r, which, 431)
            self.assertLess(time.monotonic() - t0, REQUEST_TIMEOUT_S - 0.5, "431 only at the deadline")
            self.assertClosed(s, buf)

    def check_headers_under_limit_served(self, which):
        pad = b"X-Pad: " + b"p" * 100 + b"\r\n"
        data = ok_request(which, pad * 6)
        self.assertLess(len(data), MAX_HEADER_BYTES - 100)
        s, r, buf = self.exchange(which, data)
        with s:
            self.assertOk(r, which)

    def check_request_line_over_limit(self, which):
        path = (EU_PATH if which == "public" else "/v1/regions").encode()
        data = b"GET " + path + b"?pad=" + b"p" * 1500 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if which == "admin":
            data += auth()
        s, r, buf = self.exchange(which, data + b"\r\n")
        with s:
            self.assertIn(r.status, (414, 431), r)
            self.assertJsonError(r, which, r.status)
            self.assertClosed(s, buf)

    def check_body_over_limit_refused_before_body(self, which):
        """A Content-Length over max_body_bytes is answered 413 without the
        body ever being sent."""
        if which == "public":
            head = (b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    + harness.SDK_CONTENT_TYPE.encode() + b"\r\n")
        else:
            head = (b"PUT /v1/products/pkTooBig HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth()
                    + b"Content-Type: application/json\r\n")
        data = head + b"Content-Length: %d\r\n\r\n" % (MAX_BODY_BYTES * 100)
        t0 = time.monotonic()
        s, r, buf = self.exchange(which, data, timeout=REQUEST_TIMEOUT_S + 2)
        with s:
            self.assertJsonError(r, which, 413)
            self.assertLess(time.monotonic() - t0, REQUEST_TIMEOUT_S - 0.5, "413 only at the deadline")
            self.assertClosed(s, buf)
        if which == "admin":
            self.assertNoProduct("pkTooBig")

    def check_body_over_limit_sent(self, which):
        if which == "public":
            data = sdk_request(SDK_BODY + b"&pad=" + b"p" * MAX_BODY_BYTES)
        else:
            data = (b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth()
                    + b"Content-Type: text/csv\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
                    + b"x" * (MAX_BODY_BYTES + 1))
        s, r, buf = self.exchange(which, data)
        with s:
            self.assertJsonError(r, which, 413)

    def check_lower_case_method(self, which):
        path = b"/auth/bootstrap" if which == "public" else b"/v1/regions"
        data = b"post " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (auth() if which == "admin" else b"")
        s, r, buf = self.exchange(which, data + b"Content-Length: 0\r\n\r\n")
        with s:
            self.assertJsonError(r, which, 405)

    def check_unknown_method(self, which):
        path = b"/auth/bootstrap" if which == "public" else b"/v1/regions"
        data = b"FOO " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (auth() if which == "admin" else b"")
        s, r, buf = self.exchange(which, data + b"\r\n")
        with s:
            self.assertJsonError(r, which, 405)

    @only("public")
    def check_wrong_method_on_route(self, which):
        s, r, buf = self.exchange(which, b"DELETE /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with s:
            self.assertJsonError(r, which, 405)

    def check_unknown_path(self, which):
        data = b"GET /no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (auth() if which == "admin" else b"")
        s, r, buf = self.exchange(which, data + b"\r\n")
        with s:
            self.assertJsonError(r, which, 404)


@per_listener("public", "admin")
class PreRoute(PreRouteChecks, HttpCase):
    pass


@per_listener("public")
class PreRouteTls(PreRouteChecks, HttpCase):
    harness_args = {"tls": True, "config": {"limits": LIMITS}}


# ---------------------------------------------------------------- deadlines

class DeadlineChecks:
    """limits.request_timeout_s counts from a request's first byte to its
    last, however slowly it trickles; limits.keepalive_timeout_s closes an
    idle connection (SPEC §2)."""

    DRIP_S = 0.3

    def trickle(self, which, head, drip):
        """Sends HEAD, then one byte of DRIP every DRIP_S seconds until the
        daemon answers or closes (at most REQUEST_TIMEOUT_S + 3 s). Checks a
        408 in the listener's shape, then the close, between the deadline and
        2 s after it, counted from the first byte."""
        s = self.open(which)
        with s:
            t0 = time.monotonic()
            s.sendall(head)
            sent = 0
            limit = t0 + REQUEST_TIMEOUT_S + 3
            while time.monotonic() < limit:
                pending = s.pending() if isinstance(s, ssl.SSLSocket) else 0
                if pending or select.select([s], [], [], self.DRIP_S)[0]:
                    break
                try:
                    s.sendall(drip[sent % len(drip):sent % len(drip) + 1])
                except CLOSED_ERRORS:
                    break
                sent += 1
            else:
                self.fail("no answer nor close %.1fs after the first byte (request_timeout_s is %d): "
                          "the deadline is reset by each byte?" % (limit - t0, REQUEST_TIMEOUT_S))
            buf = bytearray()
            r = self.read(s, buf, what="408 after the request deadline")
            answered = time.monotonic() - t0
            self.assertJsonError(r, which, 408)
            self.assertGreaterEqual(answered, REQUEST_TIMEOUT_S - 0.3,
                                    "408 before the deadline (%d bytes trickled)" % sent)
            self.assertClosed(s, buf, within=max(0.5, REQUEST_TIMEOUT_S + 2 - answered),
                              what="after the 408")
            self.assertLessEqual(time.monotonic() - t0, REQUEST_TIMEOUT_S + 2)

    def check_slow_header(self, which):
        self.trickle(which, ok_request(which)[:-2] + b"X-Slow: ", b"abcdefghijklmnopqrstuvwxyz")

    def check_slow_body(self, which):
        if which == "public":
            head = (b"POST /auth/bootstrap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    + harness.SDK_CONTENT_TYPE.encode() + b"\r\nContent-Length: 200\r\n\r\n")
            self.trickle(which, head, SDK_BODY)
        else:
            tag = "pkSlowBody" + type(self).__name__
            head = (b"PUT /v1/products/" + tag.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth()
                    + b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n")
            self.trickle(which, head, b'{"homeRegion":"cn-shanghai"  ')
            self.assertNoProduct(tag)

    def check_idle_keepalive_closed(self, which):
        """Open across a pause shorter than the keep-alive timeout (the timer
        starts again after each answer), closed silently after it."""
        s, r, buf = self.exchange(which, ok_request(which))
        with s:
            self.assertOk(r, which)
            time.sleep(1)
            s.sendall(ok_request(which))
            self.assertOk(self.read(s, buf, what="a second request after 1 s idle"), which)
            elapsed, got = self.wait_closed(s, buf, within=KEEPALIVE_TIMEOUT_S + 2)
            self.assertEqual(got, b"", "bytes on an idle connection: %r" % got[:300])
            self.assertIsNotNone(elapsed, "idle connection open %.0fs after its last answer (keepalive_timeout_s %d)"
                                 % (KEEPALIVE_TIMEOUT_S + 2, KEEPALIVE_TIMEOUT_S))
            self.assertGreaterEqual(elapsed, KEEPALIVE_TIMEOUT_S - 0.5,
                                    "idle connection closed before keepalive_timeout_s (%d)" % KEEPALIVE_TIMEOUT_S)

    def check_silent_connection_closed(self, which):
        """No byte ever sent: the first request is owed within
        request_timeout_s of the accept; then closed silently."""
        s = self.open(which)
        with s:
            elapsed, got = self.wait_closed(s, within=REQUEST_TIMEOUT_S + 2)
            self.assertEqual(got, b"", "bytes on a connection that sent nothing: %r" % got[:300])
            self.assertIsNotNone(elapsed, "silent connection still open after %.0fs" % (REQUEST_TIMEOUT_S + 2))
            self.assertGreaterEqual(elapsed, REQUEST_TIMEOUT_S - 0.5,
                                    "silent connection closed before request_timeout_s (%d)" % REQUEST_TIMEOUT_S)


@per_listener("public", "admin")
class Deadlines(DeadlineChecks, HttpCase):
    pass


class DeadlinesTls(DeadlineChecks, HttpCase):
    harness_args = {"tls": True, "config": {"limits": LIMITS}}

    def test_slow_header_public(self):
        self.check_slow_header("public")


# --------------------------------------------------------------- pipelining

class PipeliningChecks:
    def check_pipelined_in_order(self, which):
        """Three requests in one send(): answered in order, each complete."""
        if which == "public":
            data = (b"GET " + EU_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    + sdk_request(SDK_BODY)
                    + b"GET /no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        else:
            tag = "pkPipe" + type(self).__name__
            data = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    + product_put(tag)
                    + b"GET /v1/products/" + tag.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth() + b"\r\n"
                    + b"GET /v1/no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth() + b"\r\n")
        s = self.open(which)
        with s:
            s.sendall(data)
            buf = bytearray()
            n = 3 if which == "public" else 4
            answers = [self.read(s, buf, what="pipelined answer %d of %d" % (i + 1, n)) for i in range(n)]
        for r in answers:
            self.assertFraming(r)
        if which == "public":
            self.assertEqual([r.status for r in answers], [200, 200, 404], answers)
            self.assertEqual(answers[0].body, EU_ANSWER)
            self.assertEqual(answers[1].body, SDK_ANSWER)
            self.assertJsonError(answers[2], which, 404)
        else:
            self.assertEqual([r.status for r in answers], [200, 201, 200, 404], answers)
            self.assertEqual(answers[2].json().get("productKey"), tag, answers[2])
            self.assertJsonError(answers[3], which, 404)
        self.assertEqual(bytes(buf), b"", "bytes after the last answer")

    def check_http10_closes(self, which):
        s, r, buf = self.exchange(which, ok_request(which, version=b"HTTP/1.0"))
        with s:
            self.assertOk(r, which)
            self.assertClosed(s, buf, what="after the answer to an HTTP/1.0 request")

    def check_http10_keep_alive(self, which):
        s, r, buf = self.exchange(which, ok_request(which, b"Connection: keep-alive\r\n", version=b"HTTP/1.0"))
        with s:
            self.assertOk(r, which)
            self.assertEqual((r.header("Connection") or "").lower(), "keep-alive", r.header_lines)
            s.sendall(ok_request(which, b"Connection: keep-alive\r\n", version=b"HTTP/1.0"))
            self.assertOk(self.read(s, buf, what="a second HTTP/1.0 keep-alive request"), which)

    def check_connection_close(self, which):
        s, r, buf = self.exchange(which, ok_request(which, b"Connection: close\r\n"))
        with s:
            self.assertOk(r, which)
            self.assertClosed(s, buf, what="after the answer to a Connection: close request")

    def check_keep_alive_by_default(self, which):
        s, r, buf = self.exchange(which, ok_request(which))
        with s:
            self.assertOk(r, which)
            self.assertStillOpen(s, which)


@per_listener("public", "admin")
class Pipelining(PipeliningChecks, HttpCase):
    pass


@per_listener("public")
class PipeliningTls(PipeliningChecks, HttpCase):
    harness_args = {"tls": True, "config": {"limits": LIMITS}}


# --------------------------------------------------------------- request id

@per_listener("public", "admin")
class RequestId(HttpCase):
    """X-Request-Id: a sane one (at most 64 of A-Za-z0-9._-) is echoed, else
    one is generated (SPEC §2 Logging)."""

    def answer_id(self, which, given=None, data=None):
        extra = b"" if given is None else b"X-Request-Id: " + given + b"\r\n"
        s, r, buf = self.exchange(which, data(extra) if data else ok_request(which, extra))
        s.close()
        ids = r.header_all("X-Request-Id")
        self.assertEqual(len(ids), 1, "one X-Request-Id in the answer: %r" % r.header_lines)
        self.assertRegex(ids[0], REQUEST_ID_RE)
        return r, ids[0]

    def check_request_id_echoed(self, which):
        for given in (b"abc-123.X_y", b"a" * 64, b"0"):
            with self.subTest(given=given):
                r, rid = self.answer_id(which, given)
                self.assertOk(r, which)
                self.assertEqual(rid, given.decode())

    def check_request_id_generated(self, which):
        r1, id1 = self.answer_id(which)
        r2, id2 = self.answer_id(which)
        self.assertOk(r1, which)
        self.assertNotEqual(id1, id2, "two requests, one generated id")

    def check_request_id_insane_replaced(self, which):
        for given in (b"a" * 65, b"has space", b"a/b", b"semi;colon", b"\xc3\xa9t\xc3\xa9", b"<script>"):
            with self.subTest(given=given):
                r, rid = self.answer_id(which, given)
                self.assertOk(r, which)
                self.assertNotEqual(rid.encode(), given)

    def check_request_id_on_errors(self, which):
        """Also on an answer made before a route is known (405) and on a 404."""
        def foo(extra):
            return b"FOO / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"

        def missing(extra):
            return b"GET /no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"
        r, rid = self.answer_id(which, b"req-405", data=foo)
        self.assertJsonError(r, which, 405)
        self.assertEqual(rid, "req-405")
        r, rid = self.answer_id(which, None, data=missing)
        self.assertJsonError(r, which, 404)


# ---------------------------------------------------- the public listener

class PublicIsolation(HttpCase):
    """The admin API and the operations endpoints are never reachable through
    the public listener (SPEC §4, §5)."""

    def test_no_admin_paths_on_public(self):
        for method, path in (("GET", "/v1/regions"), ("GET", "/v1/stats"), ("GET", "/v1/products/" + PK),
                             ("GET", "/v1/devices/%s/dev1" % PK), ("POST", "/v1/batches"),
                             ("PUT", "/v1/products/pkViaPublic"), ("POST", "/v1/mqtt/auth")):
            with self.subTest(method=method, path=path):
                body = b"{}" if method in ("POST", "PUT") else None
                data = harness.build_request(method, path, body, {"Authorization": "Bearer " + TOKEN,
                                                                  "Content-Type": "application/json"})
                s, r, buf = self.exchange("public", data)
                s.close()
                self.assertJsonError(r, "public", 404)
        self.assertNoProduct("pkViaPublic")

    def test_no_operations_on_public(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            with self.subTest(path=path):
                s, r, buf = self.exchange("public", harness.build_request("GET", path))
                s.close()
                self.assertJsonError(r, "public", 404)


# ------------------------------------------------ descriptors, connections

def idle_connections(port, n, timeout=2.0):
    """Opens N plain connections to the public listener at PORT one after
    the other, each with one request whose answer is read before the next
    connection opens, so that they are answered, then idle, in order.
    Returns (sockets, served flags). A connection not served within TIMEOUT
    stays open, waiting (kept by the kernel); after 3 such, the rest are
    opened without waiting and their answers read at the end, within 1 s."""
    socks, served, waiting = [], [], []
    for _ in range(n):
        try:
            s = harness.connect(port, timeout=1)
            socks.append(s)
            s.sendall(ok_request("public"))
        except OSError:
            break
        if len(waiting) >= 3:
            waiting.append(s)
            served.append(None)
            continue
        try:
            served.append(harness.read_response(s, timeout=timeout).status == 200)
        except (OSError, harness.ConnectionClosed):
            served.append(False)
            waiting.append(s)
    deadline = time.monotonic() + 1
    for i, s in enumerate(socks):
        if served[i] is None:
            try:
                r = harness.read_response(s, timeout=max(0.05, deadline - time.monotonic()))
                served[i] = r.status == 200
            except (OSError, harness.ConnectionClosed):
                served[i] = False
    return socks, served


def is_closed(s):
    """True when the peer has closed S (EOF or reset readable now)."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        s.setblocking(False)
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


# Long deadlines: only making room may free a descriptor during these tests.
CONN_LIMITS = {"request_timeout_s": 60, "keepalive_timeout_s": 60}
LOG_EVENT_RE = re.compile(r"accept|descriptor|open files|EMFILE|ENFILE|connection", re.I)


class FdExhaustion(HttpChecks, HarnessCase):
    """RLIMIT_NOFILE 64 and max_connections 0 (90 % of it, more than the
    descriptors left beside the daemon's own): more idle keep-alive
    connections than it can hold. The process does not spin nor flood its
    log, and new clients are served by closing the oldest idle connections
    (SPEC §2)."""

    NOFILE = 64
    OPEN = 80
    harness_args = {"nofile": NOFILE, "config": {"threads": 1, "limits": dict(CONN_LIMITS, max_connections=0)}}

    @classmethod
    def prepare(cls):
        cls.socks, cls.served = idle_connections(cls.h.public_port, cls.OPEN)
        time.sleep(0.5)
        log0 = os.path.getsize(cls.h.log_path)
        cpu0, t0 = cls.h.cpu_seconds(), time.monotonic()
        time.sleep(3)
        cls.cpu = cls.h.cpu_seconds() - cpu0
        cls.window = time.monotonic() - t0
        with open(cls.h.log_path, "rb") as f:
            f.seek(log0)
            logged = f.read(1 << 20).decode(errors="replace")  # enough to count a flood
        cls.log_lines = [ln for ln in logged.splitlines() if LOG_EVENT_RE.search(ln)]

    @classmethod
    def tearDownClass(cls):
        for s in getattr(cls, "socks", []):
            s.close()
        super().tearDownClass()

    def test_all_opened(self):
        self.assertEqual(len(self.socks), self.OPEN, "the kernel refused connections")

    def test_no_spin(self):
        self.assertLess(self.cpu, 0.5, "%.2fs CPU in %.1fs while descriptors ran out (spinning)"
                        % (self.cpu, self.window))

    def test_log_not_flooded(self):
        self.assertLessEqual(len(self.log_lines), int(self.window) + 2,
                             "%d (or more) log lines about connections in %.1fs, e.g. %r"
                             % (len(self.log_lines), self.window, self.log_lines[:3]))

    def test_new_client_served(self):
        s = self.open("public", timeout=5)
        with s:
            t0 = time.monotonic()
            s.sendall(ok_request("public"))
            self.assertOk(self.read(s, bytearray(), timeout=5, what="a new client at the descriptor limit"), "public")
            self.assertLess(time.monotonic() - t0, 5)

    def test_admin_healthz_answers(self):
        s, r, buf = self.exchange("admin", harness.build_request("GET", "/healthz"), timeout=5)
        s.close()
        self.assertEqual(r.status, 200, r)

    def test_oldest_idle_closed(self):
        """The first connections (answered, then idle) made room; the latest
        ones were served."""
        self.assertTrue(self.served[0], "the first connection was not even served")
        self.assertTrue(is_closed(self.socks[0]), "the oldest idle connection is still open")
        self.assertTrue(all(self.served[-10:]), "the last connections were not served: %r" % self.served)


class MaxConnections(HttpChecks, HarnessCase):
    """limits.max_connections 20: the 21st connection is served once the
    oldest idle one is closed for it; the bound is over both listeners, and
    /healthz still answers (SPEC §2)."""

    BOUND = 20
    harness_args = {"config": {"threads": 1, "limits": dict(CONN_LIMITS, max_connections=BOUND)}}

    def fill(self):
        socks, served = idle_connections(self.h.public_port, self.BOUND)
        self.addCleanup(lambda: [s.close() for s in socks])
        self.assertEqual(served, [True] * self.BOUND, "connections below the bound not all served")
        return socks

    def test_next_connection_served(self):
        socks = self.fill()
        s = self.open("public")
        with s:
            s.sendall(ok_request("public"))
            self.assertOk(self.read(s, bytearray(), timeout=4, what="connection %d" % (self.BOUND + 1)), "public")
        self.assertSoon(lambda: is_closed(socks[0]), 2, "the oldest idle connection closed")
        closed = [i for i, x in enumerate(socks) if i and is_closed(x)]
        self.assertEqual(closed, [], "more idle connections closed than needed")

    def test_bound_over_both_listeners(self):
        socks = self.fill()
        s = self.open("admin")
        with s:
            s.sendall(ok_request("admin"))
            self.assertOk(self.read(s, bytearray(), timeout=4, what="an admin connection at the bound"), "admin")
        self.assertSoon(lambda: is_closed(socks[0]), 2, "the oldest idle public connection closed")

    def test_healthz_at_bound(self):
        self.fill()
        s, r, buf = self.exchange("admin", harness.build_request("GET", "/healthz"), timeout=4)
        s.close()
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    harness.main()
