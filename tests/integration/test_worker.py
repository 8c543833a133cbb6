"""The batch worker as its own process (docs/batches.md "The worker", SPEC §1
roles, §2 signals): one `--role api` daemon serves the admin API and
bootstrap, `--role worker` processes on the same Redis apply the batches.
A worker killed mid-batch loses nothing, several workers share one batch,
SIGTERM finishes the step in progress, and every row's result is written
exactly once."""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import success_body, csv_body, metric_sum  # noqa: E402

N = 1000
EU = "targetRegion=eu-central-1"
EU_ANSWER = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
ITEMS_METRIC = "bootstrapd_batch_items_total"
FINISH_S = 60


def sh_answer(pk):
    return success_body([("mqtt", "%s.iot-as-mqtt.cn-shanghai.example.com" % pk, 1883, None)])


class WorkerCase(unittest.TestCase):
    """A fresh redis-server and `--role api` daemon per test; workers are
    started by the test (self.h.start_worker)."""

    worker_config = {}

    def setUp(self):
        # redis.timeout_ms: not what these tests are about (test_redis_fault
        # is); a generous one keeps a loaded machine from turning into 503s.
        self.h = harness.Harness(name=self.id(), args=("--role", "api"),
                                 config={"worker": self.worker_config,
                                         "redis": {"timeout_ms": 2000}}).start()

    def tearDown(self):
        try:
            self.h.stop_daemon()
        finally:
            self.h.close()

    # -- helpers

    def assertAnswer(self, pk, dn, body):
        r = self.h.bootstrap(pk, dn)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body, "bootstrap answer of %s/%s" % (pk, dn))

    def fleet(self, pk, n=N):
        """A product with N devices registered in one call; returns the names."""
        self.h.put_product(pk)
        names = ["%s-%04d" % (pk.lower(), i) for i in range(n)]
        self.assertEqual(len(self.h.register(pk, names)), n)
        return names

    def upload(self, pk, names, query=EU):
        j = self.h.create_batch(csv_body([[pk, n] for n in names]), query)
        self.assertEqual((j["status"], j["total"]), ("initializing", len(names)), j)
        return j["batchId"]

    def wait_mid_batch(self, bid, total):
        """Waits until the batch has some but not all rows processed; returns it."""
        last = {}

        def mid():
            b = last["b"] = self.h.get_batch(bid)
            if b["status"] == "completed" or b["processed"] >= total:
                raise AssertionError("batch %s finished before the test could interrupt it "
                                     "(worker.pause_ms not honoured?): %r" % (bid, b))
            return 0 < b["processed"] < total

        harness.wait_until(mid, 30, "batch %s to be part-way (0 < processed < %d)" % (bid, total), interval=0.01)
        return last["b"]

    def assertStalled(self, bid, total, observe_s=1.5):
        """With no worker running, the batch stays running with the same
        processed count (< TOTAL) for OBSERVE_S seconds; returns that count.
        The results list exactly the processed rows."""
        b = self.h.get_batch(bid)
        self.assertEqual(b["status"], "running", b)
        self.assertLess(b["processed"], total, b)
        deadline = time.monotonic() + observe_s
        while time.monotonic() < deadline:
            again = self.h.get_batch(bid)
            self.assertEqual((again["status"], again["processed"]), ("running", b["processed"]),
                             "progress with no worker alive")
            time.sleep(0.1)
        _, rows = self.h.batch_results(bid)
        self.assertEqual(len(rows), b["processed"], "results list the rows with a result, and only those")
        for row in rows:
            self.assertEqual(row[2], "success", row)
        return b["processed"]

    def assertAllOnce(self, bid, pk, names):
        """The batch completed with every row a success, each device exactly
        once, in upload order; the devices answer with the target."""
        b = self.h.wait_batch(bid, FINISH_S)
        self.assertEqual(b["status"], "completed", b)
        self.assertEqual((b["total"], b["processed"], b["succeeded"], b["failed"]),
                         (len(names), len(names), len(names), 0), b)
        r, rows = self.h.batch_results(bid)
        self.assertEqual(len(rows), len(names), "one result row per uploaded row")
        got = [(row[0], row[1]) for row in rows]
        self.assertEqual(len(set(got)), len(got), "a device has more than one result row")
        self.assertEqual(sorted(got), sorted((pk, n) for n in names))
        self.assertEqual(got, [(pk, n) for n in names], "results are in upload order")
        self.assertEqual({row[2] for row in rows}, {"success"})
        for n in (names[0], names[len(names) // 2], names[-1]):
            self.assertAnswer(pk, n, EU_ANSWER)
            a = self.h.device(pk, n)["assignment"]
            self.assertEqual((a["level"], a["region"], a["batchId"]), ("device", "eu-central-1", bid))
        return b

    def assertCleanExit(self, w):
        rc, elapsed = w.terminate()
        self.assertEqual(rc, 0, "worker %s exit status after SIGTERM" % w.name)
        self.assertLessEqual(elapsed, harness.DRAIN_BOUND_S)


class BootstrapAroundBatch(WorkerCase):
    worker_config = {"pause_ms": 0}

    def test_home_before_target_after(self):
        self.h.put_product("pkH")
        self.h.register("pkH", ["h-01", "h-02"])
        self.assertAnswer("pkH", "h-01", sh_answer("pkH"))
        bid = self.upload("pkH", ["h-01", "h-02"])
        # The api role applies nothing: the batch waits for a worker.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            b = self.h.get_batch(bid)
            self.assertEqual((b["status"], b["processed"]), ("initializing", 0), b)
            self.assertAnswer("pkH", "h-02", sh_answer("pkH"))
            time.sleep(0.1)
        w = self.h.start_worker()
        for path in ("/healthz", "/readyz", "/metrics"):
            self.assertEqual(w.request(path).status, 200, path)
        b = self.h.wait_batch(bid, FINISH_S)
        self.assertEqual((b["status"], b["succeeded"]), ("completed", 2), b)
        self.assertAnswer("pkH", "h-01", EU_ANSWER)
        self.assertAnswer("pkH", "h-02", EU_ANSWER)
        self.assertEqual(self.h.device("pkH", "h-01")["status"], "active")
        self.assertCleanExit(w)


class WorkerKilled(WorkerCase):
    worker_config = {"chunk_size": 10, "pause_ms": 100, "claim_idle_ms": 1000}

    def test_sigkill_mid_batch(self):
        names = self.fleet("pkK")
        w1 = self.h.start_worker("w1")
        bid = self.upload("pkK", names)
        self.wait_mid_batch(bid, N)
        w1.kill()
        self.assertStalled(bid, N)
        w2 = self.h.start_worker("w2")
        self.assertAllOnce(bid, "pkK", names)
        self.assertCleanExit(w2)


class WorkerKilledBetweenParts(WorkerCase):
    """A step of 125 rows is applied in parts over some 110 device
    groups (docs/batches.md, "A step in parts"); a worker killed over and
    over at random moments stops between any two of them. Every row must
    still be counted exactly once, and the group counters follow each device
    once."""
    # Pauses between steps keep the batch going across the kills; most kills
    # still land inside a step (its parts take longer than the pause).
    worker_config = {"chunk_size": 125, "pause_ms": 40, "claim_idle_ms": 300}
    KILLS = 12
    DEVICES = 1000

    def test_sigkill_between_parts(self):
        import random
        rnd = random.Random(9)
        names = self.fleet("pkP", self.DEVICES)
        bid = self.upload("pkP", names)
        mid = 0
        for i in range(self.KILLS):
            w = self.h.start_worker("k%d" % i)
            # A step takes some tens of ms: most kills land inside one.
            time.sleep(rnd.uniform(0.005, 0.08))
            w.kill()
            b = self.h.get_batch(bid)
            if b["status"] == "completed":
                break
            mid += b["processed"] < self.DEVICES
        w = self.h.start_worker("last")
        self.assertAllOnce(bid, "pkP", names)
        st = self.h.stats()
        self.assertEqual(st["distributed"]["byRegion"], {"eu-central-1": self.DEVICES}, st)
        self.assertEqual(st["devices"]["total"], self.DEVICES, st)
        sys.stderr.write("kills mid-batch: %d of %d\n" % (mid, self.KILLS))
        self.assertGreater(mid, 2, "the batch finished before the kills: the test proved nothing")
        self.assertCleanExit(w)


class WorkerTerminated(WorkerCase):
    worker_config = {"chunk_size": 10, "pause_ms": 100, "claim_idle_ms": 1000}

    def test_sigterm_mid_batch(self):
        names = self.fleet("pkT")
        w1 = self.h.start_worker("w1")
        bid = self.upload("pkT", names)
        self.wait_mid_batch(bid, N)
        self.assertCleanExit(w1)
        self.assertStalled(bid, N)
        w2 = self.h.start_worker("w2")
        self.assertAllOnce(bid, "pkT", names)
        self.assertCleanExit(w2)


class TwoWorkers(WorkerCase):
    worker_config = {"chunk_size": 10, "pause_ms": 50}

    def test_share_one_batch(self):
        names = self.fleet("pkW")
        w1 = self.h.start_worker("w1")
        w2 = self.h.start_worker("w2")
        bid = self.upload("pkW", names)
        self.assertAllOnce(bid, "pkW", names)
        done = {}
        for w in (w1, w2):
            text = w.metrics()
            v = metric_sum(text, ITEMS_METRIC)
            self.assertIsNotNone(v, "worker %s /metrics has no %s" % (w.name, ITEMS_METRIC))
            done[w.name] = v
        self.assertGreater(done["w1"], 0, "w1 applied nothing: %r" % done)
        self.assertGreater(done["w2"], 0, "w2 applied nothing: %r" % done)
        self.assertEqual(done["w1"] + done["w2"], N, "items applied by the two workers: %r" % done)
        self.assertCleanExit(w1)
        self.assertCleanExit(w2)


if __name__ == "__main__":
    harness.main()
