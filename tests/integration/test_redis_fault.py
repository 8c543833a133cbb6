"""Redis faults (SPEC §4 503 row, §5 /readyz): a dead or hung Redis gives a
fast 503, never a hang or a wrong answer, and service comes back by itself
when Redis does."""

import json
import os
import signal
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import success_body  # noqa: E402
from test_bootstrap import DeviceAsserts  # noqa: E402

BOUND_S = harness.REDIS_TIMEOUT_MS / 1000.0 + 0.7
RECOVERY_S = 10
ANSWER = success_body([("mqtt", "a1PK.iot-as-mqtt.cn-shanghai.example.com", 1883, None)])


class RedisFault(DeviceAsserts, unittest.TestCase):
    def setUp(self):
        self.h = harness.Harness(name=self.id(), persistence=True).start()
        self.h.put_product("a1PK")
        self.h.register("a1PK", ["dev1", "dev2"])
        self.assertSuccess(self.h.bootstrap("a1PK", "dev1"), ANSWER)
        # Persist what we wrote so a restarted redis-server loads it.
        self.assertEqual(self.h.redis("SAVE"), "OK")

    def tearDown(self):
        try:
            if self.h.redis_proc.poll() is None:
                self.h.redis_proc.send_signal(signal.SIGCONT)
            self.h.stop_daemon()
        finally:
            self.h.close()

    def timed(self, fn):
        t0 = time.monotonic()
        r = fn()
        return time.monotonic() - t0, r

    def assertUnavailable(self, dn="dev1"):
        elapsed, r = self.timed(lambda: self.h.bootstrap("a1PK", dn, timeout=10))
        self.assertDeviceError(r, 503, 503)
        self.assertLess(elapsed, BOUND_S, "503 took %.3fs (redis.timeout_ms is %d)"
                        % (elapsed, harness.REDIS_TIMEOUT_MS))

    def assertNotReady(self):
        elapsed, r = self.timed(lambda: self.h.admin("GET", "/readyz", token=None, timeout=10))
        self.assertEqual(r.status, 503, r)
        self.assertIn("redis", json.dumps(r.json()).lower(), r.body)
        self.assertLess(elapsed, BOUND_S, "/readyz took %.3fs" % elapsed)
        # The process itself is still serving.
        self.assertEqual(self.h.admin("GET", "/healthz", token=None).status, 200)

    def all_ok(self, n=8):
        # New connections spread over the daemon's threads, each with its own
        # Redis connection that may come back a moment after the others.
        return all(self.h.bootstrap("a1PK", "dev%d" % (1 + i % 2), timeout=5).status == 200 for i in range(n))

    def assertRecovers(self):
        harness.wait_until(self.all_ok, RECOVERY_S,
                           "bootstrap to answer 200 again (8 in a row) after Redis came back", interval=0.1)
        self.assertSuccess(self.h.bootstrap("a1PK", "dev1"), ANSWER)
        self.assertSuccess(self.h.bootstrap("a1PK", "dev2"), ANSWER)
        harness.wait_until(lambda: self.h.admin("GET", "/readyz", token=None).status == 200, RECOVERY_S,
                           "/readyz to answer 200 again", interval=0.1)

    def concurrent_unavailable(self, n=8):
        results = [None] * n

        def one(i):
            try:
                results[i] = self.timed(lambda: self.h.bootstrap("a1PK", "dev%d" % (1 + i % 2), timeout=10))
            except Exception as e:  # reported below
                results[i] = (None, e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        for elapsed, r in results:
            self.assertIsNotNone(elapsed, r)
            self.assertDeviceError(r, 503, 503)
            self.assertLess(elapsed, BOUND_S + 0.5)

    def test_redis_killed_then_restarted(self):
        self.h.kill_redis(signal.SIGKILL)
        for _ in range(3):
            self.assertUnavailable()
        self.assertNotReady()
        self.concurrent_unavailable()
        self.h.restart_redis()
        self.assertRecovers()
        # The activation written before the SAVE is still there.
        d = self.h.admin("GET", "/v1/devices/a1PK/dev1").json()
        self.assertEqual(d["status"], "active")

    def test_redis_hung(self):
        self.h.kill_redis(signal.SIGSTOP)
        for _ in range(3):
            self.assertUnavailable()
        self.assertNotReady()
        self.concurrent_unavailable()
        elapsed, r = self.timed(lambda: self.h.admin("GET", "/v1/devices/a1PK/dev1", timeout=10))
        self.assertGreaterEqual(r.status, 500, r)
        self.assertLess(elapsed, BOUND_S, "admin call took %.3fs with Redis hung" % elapsed)
        self.h.kill_redis(signal.SIGCONT)
        self.assertRecovers()

    def test_redis_hung_then_killed_then_restarted(self):
        self.h.kill_redis(signal.SIGSTOP)
        self.assertUnavailable()
        self.h.kill_redis(signal.SIGKILL)
        self.assertUnavailable()
        self.h.restart_redis()
        self.assertRecovers()

    def test_daemon_started_while_redis_down(self):
        self.h.stop_daemon()
        self.h.kill_redis(signal.SIGKILL)
        self.h.start_daemon()
        self.assertUnavailable()
        self.assertNotReady()
        self.h.restart_redis()
        self.assertRecovers()


if __name__ == "__main__":
    harness.main()
