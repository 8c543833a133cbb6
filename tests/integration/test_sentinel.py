"""Redis Sentinel (SPEC §2 redis.sentinels, redis.master_name): bootstrapd
finds the master through the sentinels, follows a failover, and never writes
to a demoted master. A real set on loopback ports: one master, one replica,
three sentinels (down-after-milliseconds 1000)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body  # noqa: E402

MASTER = "bdmaster"
SH = success_body([("mqtt", "a1F.iot-as-mqtt.cn-shanghai.example.com", 1883, None)])
US1 = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
EU = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
FAILOVER_S = 30      # generous: sentinels, elections and ASan
RECOVERY_BOUND_S = 3  # first 200 after the sentinels named the new master (figure printed)


Node = harness.RedisNode


class SentinelHarness(harness.Harness):
    """A Harness whose Redis is a Sentinel set; redis() talks to whichever
    node the sentinels name master."""

    def start_redis(self, same_port=False):
        self.data = [Node(self, "redis-a"), Node(self, "redis-b")]
        self.sentinels = [Node(self, "sentinel-%d" % i, sentinel=True) for i in range(3)]
        a, b = self.data
        a.start([])
        b.start(["replicaof 127.0.0.1 %d" % a.port])
        harness.wait_until(lambda: "master_link_status:up" in b.cli("INFO", "replication"), 15,
                           "the replica in sync")
        for s in self.sentinels:
            s.start(["sentinel monitor %s 127.0.0.1 %d 2" % (MASTER, a.port),
                     "sentinel down-after-milliseconds %s 1000" % MASTER,
                     "sentinel failover-timeout %s 5000" % MASTER])
        harness.wait_until(lambda: all(s.cli("SENTINEL", "ckquorum", MASTER, check=False).startswith("OK")
                                       and "num-other-sentinels\n2" in s.cli("SENTINEL", "master", MASTER)
                                       for s in self.sentinels), 20, "three sentinels that see each other")
        harness.wait_until(lambda: all(str(b.port) in s.cli("SENTINEL", "replicas", MASTER) for s in self.sentinels),
                           20, "the sentinels to know the replica")
        self.redis_proc = a.proc
        self.redis_port = a.port

    def master_port(self):
        for s in self.sentinels:
            if s.proc.poll() is None:
                out = s.cli("SENTINEL", "get-master-addr-by-name", MASTER, check=False).split("\n")
                if len(out) == 2 and out[1].isdigit():
                    return int(out[1])
        return None

    def master(self):
        port = self.master_port()
        return next(n for n in self.data if n.port == port)

    def redis(self, *args, check=True):
        self.redis_port = self.master_port()
        return super().redis(*args, check=check)

    def replicated(self):
        """Waits until the replica has every write the master took."""
        m = self.master()
        self.assert_ok(int(m.cli("WAIT", 1, 5000)) >= 1, "a write not replicated in 5 s")

    @staticmethod
    def assert_ok(cond, what):
        if not cond:
            raise AssertionError(what)

    def config(self):
        cfg = super().config()
        del cfg["redis"]["url"]
        # The first one listed is down (a free port): asking and following
        # must step over it.
        if not hasattr(self, "dead_sentinel"):
            self.dead_sentinel = harness.free_port()
        cfg["redis"]["sentinels"] = (["127.0.0.1:%d" % self.dead_sentinel] +
                                     ["127.0.0.1:%d" % s.port for s in self.sentinels])
        cfg["redis"]["master_name"] = MASTER
        return cfg

    def close(self):
        if not self.closed:
            for n in getattr(self, "data", []) + getattr(self, "sentinels", []):
                if n.proc is not None:
                    harness._kill(n.proc)
        super().close()

    def _read_logs(self):
        out = [x for x in super()._read_logs() if x[0] != "redis-server"]
        for n in getattr(self, "data", []) + getattr(self, "sentinels", []):
            try:
                with open(n.log_path, "rb") as f:
                    out.append((n.name, f.read().decode(errors="replace")))
            except OSError:
                pass
        return out


class SentinelCase(HarnessCase):
    harness_args = {"config": {"redis": {"timeout_ms": 1000}}}

    @classmethod
    def make_harness(cls):
        return SentinelHarness(name=cls.__name__, **cls.harness_args).start()

    @classmethod
    def prepare(cls):
        cls.h.put_product("a1F")
        cls.h.register("a1F", ["ff-%d" % i for i in range(4)])
        cls.h.replicated()

    def answers(self, dn, body, n=10):
        self.assertAnswers("a1F", dn, body, n)

    def wait_serving(self, dn, body):
        def ok():
            r = self.h.bootstrap("a1F", dn, timeout=10)
            if r.status == 200:
                self.assertEqual(r.body, body, "a wrong answer: %r" % r)
                return True
            self.assertEqual(r.status, 503, r)
            return False
        harness.wait_until(ok, FAILOVER_S, "%s answered 200" % dn, interval=0.05)
        harness.wait_until(lambda: self.metric_down() == 0, FAILOVER_S, "every Redis connection up")

    def metric_down(self):
        for line in self.h.metrics().splitlines():
            if line.startswith("bootstrapd_redis_connections_down "):
                return float(line.split()[1])
        raise AssertionError("bootstrapd_redis_connections_down missing")


class SentinelBasics(SentinelCase):
    def test_found_through_the_sentinels(self):
        self.answers("ff-0", SH)
        r = self.h.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, r)
        # The data and tracking connections are on the master only.
        replica = next(n for n in self.h.data if n.port != self.h.master_port())
        self.assertNotIn("name=bootstrapd", replica.cli("CLIENT", "LIST"))
        on_master = self.h.redis("CLIENT", "LIST")
        self.assertIn("name=bootstrapd ", on_master)
        self.assertIn("name=bootstrapd-tracking ", on_master)

    def test_parse_errors_reach_no_node(self):
        # A config naming both topologies is refused at start (SPEC §2).
        cfg = self.h.config()
        cfg["redis"]["url"] = "redis://127.0.0.1:%d/0" % self.h.master_port()
        path = os.path.join(self.h.dir, "both.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([harness.daemon_path(), "--config", path, "--check-config"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20, env=harness.daemon_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"exactly one Redis topology", r.stdout)


class ReplicaNamedMaster(harness.Harness):
    """A bootstrapd whose sentinel names a replica as the master."""

    def __init__(self, sentinel_port, **kw):
        super().__init__(**kw)
        self.sentinel_port = sentinel_port
        self.redis_port = 1  # for the base configuration only; replaced below

    def config(self):
        cfg = super().config()
        del cfg["redis"]["url"]
        cfg["redis"]["sentinels"] = ["127.0.0.1:%d" % self.sentinel_port]
        cfg["redis"]["master_name"] = "wrong"
        return cfg


class SentinelRole(SentinelCase):
    def test_replica_is_never_used(self):
        # A sentinel told to monitor the replica names it as master of
        # "wrong" until it learns better: ROLE must keep bootstrapd off it.
        replica = next(n for n in self.h.data if n.port != self.h.master_port())
        s = self.h.sentinels[0]
        s.cli("SENTINEL", "MONITOR", "wrong", "127.0.0.1", replica.port, 2)
        self.addCleanup(s.cli, "SENTINEL", "REMOVE", "wrong", check=False)
        h2 = ReplicaNamedMaster(s.port, name="ReplicaNamedMaster")
        self.addCleanup(h2.close)
        h2.start_daemon()
        harness.wait_until(lambda: "is not the master" in h2.daemon_log(), 10, "the replica refused")
        r = h2.bootstrap("a1F", "ff-0")
        self.assertEqual(r.status, 503, r)
        r = h2.admin("GET", "/readyz", token=None)
        self.assertEqual(r.status, 503, r)
        # Reads are never replicated: any on the replica came from a client.
        stats = replica.cli("INFO", "commandstats")
        for cmd in ("cmdstat_hget:", "cmdstat_hmget:", "cmdstat_evalsha:", "cmdstat_client|tracking:"):
            self.assertNotIn(cmd, stats)
        h2.stop_daemon()


class SentinelFailover(SentinelCase):
    def test_master_killed_under_load(self):
        self.answers("ff-1", SH)
        results = []
        stop = threading.Event()

        def load():
            while not stop.is_set() and len(results) < 20000:
                try:
                    r = self.h.bootstrap("a1F", "ff-1", timeout=10)
                    results.append((time.monotonic(), r.status, r.body))
                except (OSError, harness.ConnectionClosed) as e:
                    results.append((time.monotonic(), "error", repr(e)))
                time.sleep(0.01)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            harness.wait_until(lambda: sum(1 for _, st, _ in results if st == 200) >= 20, 10,
                               "the load answered before the kill")
            old = self.h.master()
            killed = time.monotonic()
            old.kill()
            harness.wait_until(lambda: self.h.master_port() not in (None, old.port), FAILOVER_S,
                               "the sentinels to name a new master")
            switched = time.monotonic()
            harness.wait_until(lambda: any(ts > switched and st == 200 for ts, st, _ in results),
                               FAILOVER_S, "a 200 after the failover")
            time.sleep(1.0)
        finally:
            stop.set()
            t.join(20)
        wrong = [(st, b) for _, st, b in results if st not in (200, 503) or (st == 200 and b != SH)]
        self.assertEqual(wrong, [], "wrong answers during the failover")
        first = min(ts for ts, st, _ in results if ts > switched and st == 200)
        n503 = sum(1 for _, st, _ in results if st == 503)
        sys.stderr.write("failover: %d requests, %d answered 503, master killed to switch %.2f s, "
                         "switch to first 200 %.3f s\n" % (len(results), n503, switched - killed, first - switched))
        self.assertLess(first - switched, RECOVERY_BOUND_S)
        # The last second is all 200: every thread found the new master.
        tail = [st for ts, st, _ in results if ts > results[-1][0] - 0.5]
        self.assertTrue(tail and all(st == 200 for st in tail), tail)

        # Writes go to the new master and the cache follows them.
        self.wait_serving("ff-2", SH)
        self.answers("ff-2", SH, n=4)
        self.h.put_product("a1F", region="eu-central-1", instance="iot-eu-1")
        self.answers("ff-2", EU, n=4)
        # So do the worker's: a batch runs to completion on the new master.
        b = self.h.distribute("productKey,deviceName\na1F,ff-3\n", "targetRegion=us-east-1")
        self.assertEqual(b["status"], "completed")
        self.answers("ff-3", US1, n=4)

        # The old master comes back as it was: a master with old data, until
        # the sentinels make it a replica. bootstrapd must not follow it.
        old.start([])
        harness.wait_until(lambda: "role:slave" in old.cli("INFO", "replication"), FAILOVER_S,
                           "the old master demoted by the sentinels")
        self.answers("ff-2", EU, n=10)
        self.h.put_product("a1F")
        self.answers("ff-2", SH, n=4)


class SentinelBatchFailover(SentinelCase):
    # Small steps with pauses: the batch is still running when the master dies.
    harness_args = {"config": {"redis": {"timeout_ms": 1000}, "worker": {"chunk_size": 10, "pause_ms": 150}}}
    N = 200

    def batch_if_done(self, bid):
        r = self.h.admin("GET", "/v1/batches/%s" % bid)
        if r.status == 503:  # the admin's connection is still on its way
            return None
        self.assertEqual(r.status, 200, r)
        b = r.json()
        return b if b["status"] in ("completed", "failed") else None

    def test_batch_survives_the_failover(self):
        names = ["fb-%03d" % i for i in range(self.N)]
        self.h.register("a1F", names)
        self.h.replicated()
        bid = self.h.create_batch("productKey,deviceName\n" + "".join("a1F,%s\n" % n for n in names),
                                  "targetRegion=us-east-1")["batchId"]
        harness.wait_until(lambda: self.h.get_batch(bid)["processed"] > 0, 10, "the batch under way")
        old = self.h.master()
        old.kill()
        harness.wait_until(lambda: self.h.master_port() not in (None, old.port), FAILOVER_S,
                           "the sentinels to name a new master")
        b = harness.wait_until(lambda: self.batch_if_done(bid), 90, "the batch completed")
        self.assertEqual(b["status"], "completed", b)
        # Writes the old master took but never passed on are gone with it;
        # the worker applies those rows again on the new one, each once.
        self.assertEqual((b["total"], b["processed"], b["succeeded"], b["failed"]),
                         (self.N, self.N, self.N, 0), b)
        _, rows = self.h.batch_results(bid)
        self.assertEqual(sorted(r[1] for r in rows), names)
        self.assertTrue(all(r[2] == "success" for r in rows), rows[:5])
        self.wait_serving("fb-000", US1)
        for n in names[::20]:
            self.answers(n, US1, n=1)


class SentinelDurable(SentinelCase):
    # redis.wait_replicas 1: an operator's write is acknowledged only once the
    # replica has it, so a failover cannot take it back.
    harness_args = {"config": {"redis": {"timeout_ms": 1000, "wait_replicas": 1}}}

    def test_acknowledged_means_replicated(self):
        replica = next(n for n in self.h.data if n.port != self.h.master_port())
        r = self.h.admin("PUT", "/v1/products/a1D", {"homeRegion": "cn-shanghai", "homeInstance": "iot-cn-sh-public",
                                                    "account": "acct-a"})
        self.assertIn(r.status, (200, 201), r)
        self.assertIn("hr", replica.cli("HGETALL", harness.key("product", "a1D")))
        # A replica that does not answer: the write cannot be confirmed, and
        # is not reported done. Reads still answer.
        replica.kill(signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = self.h.admin("PUT", "/v1/products/a1D", {"homeRegion": "eu-central-1", "homeInstance": "iot-eu-1",
                                                        "account": "acct-a"})
            self.assertEqual(r.status, 503, r)
            self.assertLess(time.monotonic() - started, 3)
            r = self.h.admin("GET", "/v1/products/a1D")
            self.assertEqual(r.status, 200, r)
            self.answers("ff-0", SH, n=2)
        finally:
            replica.kill(signal.SIGCONT)
        # Redis refusing a write (maxmemory) is an answer, not something to
        # WAIT for: its reason reaches the operator.
        master = self.h.master()
        master.cli("CONFIG", "SET", "maxmemory", "1")
        try:
            r = self.h.admin("PUT", "/v1/products/a1D", {"homeRegion": "eu-central-1", "homeInstance": "iot-eu-1",
                                                        "account": "acct-a"})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["error"]["code"], "out_of_memory", r)
        finally:
            master.cli("CONFIG", "SET", "maxmemory", "0")
        # Back: writes are confirmed again.
        harness.wait_until(lambda: self.h.admin("PUT", "/v1/products/a1D", {
            "homeRegion": "cn-shanghai", "homeInstance": "iot-cn-sh-public", "account": "acct-a"}).status == 200,
            10, "a confirmed write after the replica came back", interval=0.2)


if __name__ == "__main__":
    harness.main()
