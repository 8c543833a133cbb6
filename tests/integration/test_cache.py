"""The record cache (SPEC §2 cache.entries, docs/architecture.md): bootstrap
answers from the in-process cache stay exact. A write by any process, through
the API, the worker or straight into Redis, is seen by the very next request;
a lost or restarted Redis drops the cache; cache.entries 0 turns it off."""

import hashlib
import hmac
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, csv_body, success_body  # noqa: E402

EU_ANSWER = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
US1_ANSWER = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
# Not about Redis latency: a generous timeout keeps a loaded machine from 503s.
CONFIG = {"worker": {"pause_ms": 0}, "redis": {"timeout_ms": 2000}}
WARM = 6  # bootstraps before a change: every thread has the records cached by then
RECOVERY_S = 15


def sh_answer(pk):
    return success_body([("mqtt", "%s.iot-as-mqtt.cn-shanghai.example.com" % pk, 1883, None)])


def metric(text, name):
    """The value of the series NAME (with its labels, if any) in TEXT."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    if m is None:
        raise AssertionError("%s missing from /metrics" % name)
    return float(m.group(1))


HITS = 'bootstrapd_cache_requests_total{result="hit"}'
MISSES = 'bootstrapd_cache_requests_total{result="miss"}'
INVALIDATIONS = "bootstrapd_cache_invalidations_total"
FLUSHES = "bootstrapd_cache_flushes_total"
DOWN = "bootstrapd_redis_connections_down"
ENTRIES = "bootstrapd_cache_entries"


class CacheAsserts:
    def assertAnswer(self, pk, dn, body, what="", **kw):
        r = self.h.bootstrap(pk, dn, **kw)
        self.assertEqual(r.status, 200, "%s/%s %s: %r" % (pk, dn, what, r))
        self.assertEqual(r.body, body, "%s/%s %s" % (pk, dn, what))

    def assertUnknown(self, pk, dn, what=""):
        r = self.h.bootstrap(pk, dn)
        self.assertEqual(r.status, 404, "%s/%s %s: %r" % (pk, dn, what, r))

    def warm(self, pk, dn, body, **kw):
        """Bootstraps WARM times, each answered BODY; returns the cache hits
        that took."""
        before = metric(self.h.metrics(), HITS)
        for i in range(WARM):
            self.assertAnswer(pk, dn, body, "warm-up %d" % i, **kw)
        return metric(self.h.metrics(), HITS) - before

    def assertWarm(self, pk, dn, body, **kw):
        hits = self.warm(pk, dn, body, **kw)
        self.assertGreater(hits, 0, "%s/%s: %d bootstraps and no cache hit" % (pk, dn, WARM))

    def wait_ok(self, pk, dn, body, what):
        """Bootstraps until one answers 200 (503 while Redis comes back); every
        200 must be BODY."""
        def ok():
            r = self.h.bootstrap(pk, dn, timeout=10)
            if r.status == 200:
                self.assertEqual(r.body, body, "%s/%s %s: a stale answer" % (pk, dn, what))
                return True
            self.assertEqual(r.status, 503, r)
            return False
        harness.wait_until(ok, RECOVERY_S, "%s/%s to answer 200 %s" % (pk, dn, what), interval=0.05)
        # Each thread has its own Redis connection and reconnects on its own
        # schedule: one may answer while another still waits to retry.
        self.wait_all_connected()

    def wait_all_connected(self):
        harness.wait_until(lambda: metric(self.h.metrics(), DOWN) == 0, RECOVERY_S,
                           "every thread's Redis connection back", interval=0.02)


class CacheExact(CacheAsserts, HarnessCase):
    harness_args = {"config": CONFIG}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1B")
        cls.h.register("a1B", ["b-%02d" % i for i in range(9)])
        cls.h.put_product("a1H")
        cls.h.register("a1H", ["hh-1", "hh-2"])
        cls.h.put_product("a1R")
        cls.h.register("a1R", ["rr-1", "rr-2"])
        cls.h.put_product("a1M")
        cls.h.register("a1M", ["mm-1"])

    def test_batch_seen_by_first_bootstrap(self):
        targets = [("targetRegion=eu-central-1", EU_ANSWER), ("targetRegion=us-east-1", US1_ANSWER),
                   ("targetRegion=cn-shanghai", sh_answer("a1B"))]
        current = {"b-%02d" % i: sh_answer("a1B") for i in range(9)}
        for rnd, (query, body) in enumerate(targets):
            names = ["b-%02d" % i for i in range(9) if i % 3 != rnd % 3 or rnd == 2]
            for dn in current:
                self.assertWarm("a1B", dn, current[dn])
            self.h.distribute(csv_body([["a1B", dn] for dn in names]), query)
            # The very first bootstrap after "completed", for every device moved.
            for dn in names:
                self.assertAnswer("a1B", dn, body, "first bootstrap after batch %d" % rnd)
                current[dn] = body
            for dn in current:
                self.assertAnswer("a1B", dn, current[dn], "after batch %d" % rnd)

    def test_product_home_change_seen_by_next_bootstrap(self):
        homes = [("eu-central-1", "iot-eu-1", EU_ANSWER), ("us-east-1", "iot-us-1", US1_ANSWER),
                 ("cn-shanghai", "iot-cn-sh-public", sh_answer("a1H")), ("eu-central-1", None, EU_ANSWER)]
        current = sh_answer("a1H")
        for region, instance, body in homes:
            for dn in ("hh-1", "hh-2"):
                self.assertWarm("a1H", dn, current)
            self.h.put_product("a1H", region=region, instance=instance)
            self.assertAnswer("a1H", "hh-1", body, "first bootstrap after PUT %s" % region)
            self.assertAnswer("a1H", "hh-2", body, "first bootstrap after PUT %s" % region)
            current = body

    def test_write_by_another_client(self):
        self.assertWarm("a1R", "rr-1", sh_answer("a1R"))
        self.h.redis("HSET", harness.key("product", "a1R"), "hr", "eu-central-1", "hi", "iot-eu-1")
        self.assertAnswer("a1R", "rr-1", EU_ANSWER, "after HSET of the product")
        # A device-level assignment written into the device's bucket.
        self.h.seed_batch(424242, "us-east-1", "iot-us-1")
        self.assertWarm("a1R", "rr-2", EU_ANSWER)
        self.h.set_device_batch("a1R", "rr-2", 424242)
        self.assertAnswer("a1R", "rr-2", US1_ANSWER, "after HSET of the device record")
        # Gone from Redis: unknown at once.
        self.assertWarm("a1R", "rr-1", EU_ANSWER)
        self.assertEqual(self.h.redis("HDEL", harness.key("device", "a1R", "rr-1"), "a1R/rr-1"), "1")
        self.assertUnknown("a1R", "rr-1", "after HDEL")

    def test_absent_records_cached_and_invalidated(self):
        for _ in range(WARM):
            self.assertUnknown("a1M", "mm-new", "before registration")
            self.assertUnknown("a1Nope", "nn-1", "before the product exists")
        hits = metric(self.h.metrics(), HITS)
        self.assertUnknown("a1M", "mm-new")
        self.assertUnknown("a1Nope", "nn-1")
        self.assertGreater(metric(self.h.metrics(), HITS), hits, "absent records are not cached")
        self.h.register("a1M", ["mm-new"])
        self.assertAnswer("a1M", "mm-new", sh_answer("a1M"), "first bootstrap after registration")
        self.h.put_product("a1Nope", region="us-east-1", instance="iot-us-1")
        self.assertUnknown("a1Nope", "nn-1", "product without the device")
        self.h.register("a1Nope", ["nn-1"])
        self.assertAnswer("a1Nope", "nn-1", US1_ANSWER, "first bootstrap after the product and device appeared")

    def test_flushall_drops_everything(self):
        self.assertWarm("a1M", "mm-1", sh_answer("a1M"))
        before = metric(self.h.metrics(), FLUSHES)
        self.h.redis("FLUSHALL")
        self.assertUnknown("a1M", "mm-1", "after FLUSHALL")
        self.assertGreater(metric(self.h.metrics(), FLUSHES), before)
        # Every fixture back, for this test and those that run after it.
        self.prepare()
        self.assertAnswer("a1M", "mm-1", sh_answer("a1M"), "after the product came back")

    def test_metrics(self):
        self.h.put_product("a1X")
        self.h.register("a1X", ["xx-1"])
        self.assertAnswer("a1X", "xx-1", sh_answer("a1X"))
        m0 = self.h.metrics()
        for _ in range(10):
            self.assertAnswer("a1X", "xx-1", sh_answer("a1X"))
        m1 = self.h.metrics()
        # Two lookups a request (product and device), at most one miss of
        # each per thread after the activation write.
        self.assertGreaterEqual(metric(m1, HITS) - metric(m0, HITS), 10)
        self.assertGreater(metric(m1, MISSES), 0)
        self.assertGreater(metric(m1, ENTRIES), 0)
        self.assertEqual(metric(m1, DOWN), 0, "a Redis connection counted down while Redis answers")
        self.h.put_product("a1X", region="eu-central-1", instance="iot-eu-1")
        self.assertAnswer("a1X", "xx-1", EU_ANSWER)
        m2 = self.h.metrics()
        self.assertGreater(metric(m2, INVALIDATIONS), metric(m1, INVALIDATIONS))
        for line in ("# TYPE bootstrapd_cache_requests_total counter", "# TYPE bootstrapd_cache_entries gauge",
                     "# TYPE bootstrapd_cache_invalidations_total counter",
                     "# TYPE bootstrapd_cache_flushes_total counter",
                     "# TYPE bootstrapd_redis_connections_down gauge"):
            self.assertIn(line, m2)

    def test_signed_product_secret(self):
        self.h.put_product("a1S", bootstrapAuth="required")
        secret = self.h.register("a1S", ["ss-1"], secrets={"ss-1": "0123456789abcdef0123456789abcdef"})["ss-1"]
        sign = hmac.new(secret.encode(), b"deviceNamess-1productKeya1S", hashlib.md5).hexdigest()
        self.assertWarm("a1S", "ss-1", sh_answer("a1S"), extra=[("sign", sign)])
        self.assertEqual(self.h.redis("HDEL", harness.key("secret", "a1S", "ss-1"), "a1S/ss-1"), "1")
        r = self.h.bootstrap("a1S", "ss-1", extra=[("sign", sign)])
        self.assertEqual(r.status, 401, "a removed secret still opens: %r" % r)


class CacheRedisRestart(CacheAsserts, HarnessCase):
    harness_args = {"config": CONFIG, "persistence": True}

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1K")
        cls.h.register("a1K", ["kk-1", "kk-2"])

    def setUp(self):
        self.h.put_product("a1K")

    def test_restart_drops_cache(self):
        homes = [("eu-central-1", "iot-eu-1", EU_ANSWER), ("us-east-1", "iot-us-1", US1_ANSWER)]
        current = sh_answer("a1K")
        for region, instance, body in homes:
            self.assertWarm("a1K", "kk-1", current)
            flushes = metric(self.h.metrics(), FLUSHES)
            self.assertEqual(self.h.redis("SAVE"), "OK")
            self.h.kill_redis(signal.SIGKILL)
            harness.wait_until(lambda: metric(self.h.metrics(), DOWN) > 0, RECOVERY_S,
                               "bootstrapd_redis_connections_down to count the lost connections")
            self.h.restart_redis()
            # Written before the daemon is back: the new Redis tracks nothing
            # of ours and will never say so.
            self.h.redis("HSET", harness.key("product", "a1K"), "hr", region, "hi", instance)
            self.wait_ok("a1K", "kk-1", body, "after the restart")
            self.assertGreater(metric(self.h.metrics(), FLUSHES), flushes)
            self.assertWarm("a1K", "kk-1", body)
            current = body

    def test_tracking_connection_killed(self):
        current = sh_answer("a1K")
        for i, (region, instance, body) in enumerate([("eu-central-1", "iot-eu-1", EU_ANSWER),
                                                      ("cn-shanghai", "iot-cn-sh-public", sh_answer("a1K"))]):
            self.assertWarm("a1K", "kk-2", current)
            flushes = metric(self.h.metrics(), FLUSHES)
            killed = int(self.h.redis("CLIENT", "KILL", "TYPE", "pubsub"))
            self.assertGreaterEqual(killed, 2, "one tracking connection per API thread")
            # Its invalidations go nowhere now.
            self.h.redis("HSET", harness.key("product", "a1K"), "hr", region, "hi", instance)
            self.wait_ok("a1K", "kk-2", body, "after CLIENT KILL TYPE pubsub")
            self.assertGreater(metric(self.h.metrics(), FLUSHES), flushes)
            # Tracking comes back and the cache with it.
            harness.wait_until(lambda: self.warm("a1K", "kk-2", body) > 0, RECOVERY_S,
                               "cache hits again after the tracking connections came back", interval=0.1)
            current = body

    def test_redis_hung(self):
        # A Redis that stops answering cannot say what was written: the cache
        # answers (rightly) for at most redis.timeout_ms and one liveness
        # tick, then every answer is a 503 until Redis is back.
        self.assertWarm("a1K", "kk-1", sh_answer("a1K"))
        bound = CONFIG["redis"]["timeout_ms"] / 1000.0 + 0.1 + 1.0
        stopped = time.monotonic()
        self.h.kill_redis(signal.SIGSTOP)
        try:
            def unavailable():
                r = self.h.bootstrap("a1K", "kk-1", timeout=10)
                if r.status == 200:
                    self.assertEqual(r.body, sh_answer("a1K"))
                    self.assertLess(time.monotonic() - stopped, bound, "answered from the cache long after "
                                    "Redis stopped answering")
                    return False
                self.assertEqual(r.status, 503, r)
                return True
            harness.wait_until(unavailable, bound + 3, "a 503 with Redis hung", interval=0.05)
        finally:
            self.h.kill_redis(signal.SIGCONT)
        self.wait_ok("a1K", "kk-1", sh_answer("a1K"), "after Redis answers again")
        harness.wait_until(lambda: self.warm("a1K", "kk-1", sh_answer("a1K")) > 0, RECOVERY_S,
                           "cache hits again after Redis came back", interval=0.1)

    def test_data_connections_killed(self):
        self.assertWarm("a1K", "kk-1", sh_answer("a1K"))
        # Redis forgets what a closed connection read, and tells nobody.
        self.h.redis("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.h.redis("HSET", harness.key("product", "a1K"), "hr", "eu-central-1", "hi", "iot-eu-1")
        self.wait_ok("a1K", "kk-1", EU_ANSWER, "after CLIENT KILL TYPE normal")
        harness.wait_until(lambda: self.warm("a1K", "kk-1", EU_ANSWER) > 0, RECOVERY_S,
                           "cache hits again after the data connections came back", interval=0.1)


class CacheOff(CacheAsserts, HarnessCase):
    harness_args = {"config": dict(CONFIG, cache={"entries": 0})}

    def test_off(self):
        self.h.put_product("a1O")
        self.h.register("a1O", ["oo-1"])
        for _ in range(WARM):
            self.assertAnswer("a1O", "oo-1", sh_answer("a1O"))
        self.h.redis("HSET", harness.key("product", "a1O"), "hr", "eu-central-1", "hi", "iot-eu-1")
        self.assertAnswer("a1O", "oo-1", EU_ANSWER)
        m = self.h.metrics()
        self.assertEqual(metric(m, HITS), 0)
        self.assertEqual(metric(m, MISSES), 0)
        self.assertEqual(metric(m, ENTRIES), 0)
        # No tracking connection at all.
        clients = self.h.redis("CLIENT", "LIST", "TYPE", "pubsub")
        self.assertEqual(clients, "", "a tracking connection with the cache off: %r" % clients)


if __name__ == "__main__":
    harness.main()
