"""Redis Cluster (SPEC §2 redis.cluster): bootstrapd finds the slots from its
seed nodes, sends each command to the node of its key's slot, follows MOVED
and ASK, and follows a failover. A real cluster on loopback ports: three
masters with one replica each (`redis-cli --cluster create`,
cluster-node-timeout 1000). The figures of the longer form (BOOTSTRAPD_LONG=1)
go into docs/redis-topologies.md."""

import json
import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body  # noqa: E402
from test_notify import ALL_NOTIFY, SH as SH_INSTANCE, notify_regions, notify_topic  # noqa: E402

SH = success_body([("mqtt", "a1C.iot-as-mqtt.cn-shanghai.example.com", 1883, None)])
EU = success_body([("mqtt", "mqtt.eu-central-1.example.com", 8883, "192.0.2.10")])
US1 = success_body([("mqtt", "mqtt.iot-us-1.us-east-1.example.com", 8883, None)])
FAILOVER_S = 30       # generous: elections and ASan
RECOVERY_BOUND_S = 3  # first 200 after the cluster promoted a replica (figure printed)
LONG = os.environ.get("BOOTSTRAPD_LONG") == "1"


def cluster_port():
    """A free port P below 55536 whose cluster bus port P + 10000 is free too
    (Redis needs both)."""
    import random
    import socket
    for _ in range(200):
        p = random.randint(20000, 30000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class Node(harness.RedisNode):
    """A cluster node: its port below 55536, its bus port free too."""

    def __init__(self, h, name):
        super().__init__(h, name, port=cluster_port())

    def start(self, lines=()):
        super().start(["cluster-enabled yes", "cluster-config-file nodes-%s.conf" % self.name,
                       "cluster-node-timeout 1000", "cluster-replica-validity-factor 0",
                       # The other masters go on serving their slots
                       # while one is down (docs/redis-topologies.md).
                       "cluster-require-full-coverage no"] + list(lines))

    def node_id(self):
        return self.cli("CLUSTER", "MYID")


class ClusterHarness(harness.Harness):
    """A Harness whose Redis is a cluster of three masters and three
    replicas; redis() talks to the cluster (redis-cli -c)."""

    def start_redis(self, same_port=False):
        self.nodes = [Node(self, "node-%d" % i) for i in range(6)]
        for n in self.nodes:
            n.start()
        r = subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % n.port for n in self.nodes] +
                           ["--cluster-replicas", "1", "--cluster-yes"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("redis-cli --cluster create: %s" % r.stdout.decode(errors="replace"))
        self.wait_healthy()
        self.redis_proc = self.nodes[0].proc
        self.redis_port = self.nodes[0].port

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def masters(self):
        """The live nodes that are masters with slots, as they see themselves."""
        out = []
        for n in self.live():
            info = n.cli("INFO", "replication", check=False)
            if "role:master" in info and n.cli("CLUSTER", "COUNTKEYSINSLOT", "0", check=False) is not None:
                if any(line.startswith(n.node_id()) and "master" in line and len(line.split()) > 8
                       for line in n.cli("CLUSTER", "NODES").splitlines()):
                    out.append(n)
        return out

    def wait_healthy(self, timeout=FAILOVER_S):
        """Every live node says cluster_state:ok and every slot is served by a
        live master with a replica in sync (when the cluster has one)."""
        def ok():
            for n in self.live():
                if "cluster_state:ok" not in n.cli("CLUSTER", "INFO", check=False):
                    return False
            return len(self.masters()) == 3
        harness.wait_until(ok, timeout, "the cluster healthy", interval=0.1)

    def node_of_key(self, key):
        slot = int(self.live()[0].cli("CLUSTER", "KEYSLOT", key))
        for n in self.masters():
            for line in n.cli("CLUSTER", "NODES").splitlines():
                f = line.split()
                if f[0] != n.node_id():
                    continue
                for rng in f[8:]:
                    if rng.startswith("["):
                        continue
                    lo, _, hi = rng.partition("-")
                    if int(lo) <= slot <= int(hi or lo):
                        return n
        return None

    def redis(self, *args, check=True):
        node = self.live()[0]
        r = subprocess.run(["redis-cli", "-c", "-p", str(node.port), *[str(a) for a in args]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out = r.stdout.decode(errors="replace")
        if check and (r.returncode != 0 or out.startswith("ERR") or out.startswith("(error)")):
            raise RuntimeError("redis-cli -c %s: rc=%d %s" % (args, r.returncode, out))
        return out[:-1] if out.endswith("\n") else out

    def config(self):
        cfg = super().config()
        del cfg["redis"]["url"]
        # Two seeds, the first one a free port: discovery must step over it.
        if not hasattr(self, "dead_seed"):
            self.dead_seed = harness.free_port()
        cfg["redis"]["cluster"] = ["127.0.0.1:%d" % self.dead_seed, "127.0.0.1:%d" % self.nodes[1].port]
        return cfg

    def close(self):
        if not self.closed:
            for n in getattr(self, "nodes", []):
                if n.proc is not None:
                    harness._kill(n.proc)
        super().close()

    def _read_logs(self):
        out = [x for x in super()._read_logs() if x[0] != "redis-server"]
        for n in getattr(self, "nodes", []):
            try:
                with open(n.log_path, "rb") as f:
                    out.append((n.name, f.read().decode(errors="replace")[-20000:]))
            except OSError:
                pass
        return out


class ClusterCase(HarnessCase):
    harness_args = {"config": {"redis": {"timeout_ms": 1000}}}
    DEVICES = 60

    notify = False  # the home instance gets a notify broker

    @classmethod
    def make_harness(cls):
        if subprocess.run(["redis-server", "--version"], stdout=subprocess.DEVNULL).returncode != 0:
            raise AssertionError("redis-server missing")
        h = ClusterHarness(name=cls.__name__, **cls.harness_args)
        try:
            if cls.notify:
                cls.broker = h.start_broker("a")
                h.regions = notify_regions({SH_INSTANCE: {"broker": cls.broker.url}})
            return h.start()
        except BaseException:
            h.close()
            raise

    @classmethod
    def prepare(cls):
        harness.wait_until(lambda: cls.h.admin("GET", "/readyz", token=None).status == 200, 20,
                           "bootstrapd ready on the cluster")
        cls.h.put_product("a1C")
        cls.names = ["cc-%03d" % i for i in range(cls.DEVICES)]
        cls.h.register("a1C", cls.names)

    def answers(self, dn, body, n=3):
        self.assertAnswers("a1C", dn, body, n)

    def metric(self, name):
        return harness.metric_sum(self.h.metrics(), name) or 0

    def load(self, names, body_of, results, stop, limit=40000):
        i = 0
        while not stop.is_set() and len(results) < limit:
            dn = names[i % len(names)]
            i += 1
            try:
                r = self.h.bootstrap("a1C", dn, timeout=10)
                results.append((time.monotonic(), dn, r.status, r.body))
            except (OSError, harness.ConnectionClosed) as e:
                results.append((time.monotonic(), dn, "error", repr(e)))
            time.sleep(0.002)

    def wrong(self, results, body_of):
        return [(dn, st, b) for _, dn, st, b in results
                if st not in (200, 503) or (st == 200 and b not in body_of(dn))]


class ClusterBasics(ClusterCase):
    def test_spread_over_the_nodes(self):
        for dn in self.names[:10]:
            self.answers(dn, SH, n=2)
        # Devices of different groups live on different masters.
        owners = {self.h.node_of_key(harness.key("device", "a1C", dn)).port for dn in self.names}
        self.assertEqual(len(owners), 3, "the devices should span the three masters")
        # Every master has our data and tracking connections.
        for n in self.h.masters():
            clients = n.cli("CLIENT", "LIST")
            self.assertIn("name=bootstrapd ", clients, n.name)
            self.assertIn("name=bootstrapd-tracking ", clients, n.name)
        st = self.h.stats()
        # (Other tests of the class may have registered more meanwhile.)
        self.assertGreaterEqual(st["devices"]["total"], self.DEVICES, st)
        self.assertEqual(self.h.admin("GET", "/v1/devices/a1C/%s" % self.names[-1]).status, 200)

    def test_cache_is_exact_per_node(self):
        dn = self.names[11]
        self.answers(dn, SH, n=2)
        hits = self.metric("bootstrapd_cache_requests_total")
        self.answers(dn, SH, n=3)
        self.assertGreater(self.metric("bootstrapd_cache_requests_total"), hits)
        # A write through the API on whichever node is seen at once.
        self.h.put_product("a1C", region="eu-central-1", instance="iot-eu-1")
        try:
            self.answers(dn, EU, n=2)
        finally:
            self.h.put_product("a1C")
        self.answers(dn, SH, n=2)

    def test_batch_over_every_group(self):
        # Rows in many device groups, so many slots and all three nodes.
        names = self.names[20:60]
        b = self.h.distribute("productKey,deviceName\n" + "".join("a1C,%s\n" % n for n in names),
                              "targetRegion=us-east-1")
        self.assertEqual((b["status"], b["processed"], b["succeeded"], b["failed"]),
                         ("completed", len(names), len(names), 0), b)
        for n in names[::7]:
            self.answers(n, US1, n=1)
        st = self.h.stats()
        self.assertEqual(st["distributed"]["byRegion"].get("us-east-1"), len(names), st)
        # The batch and its rows are on one slot; listing finds it.
        self.assertIn(b["batchId"], self.h.all_batch_ids())

    def test_failed_registration_leaves_nothing(self):
        # One master refuses writes (maxmemory): the groups on the others
        # were written, and must be taken back, as one server's single
        # script would have written nothing.
        names = ["cr-%03d" % i for i in range(30)]
        victim = self.h.node_of_key(harness.key("device", "a1C", names[0]))
        self.assertNotEqual({self.h.node_of_key(harness.key("device", "a1C", n)).port for n in names},
                            {victim.port}, "test set-up: the devices should span several masters")
        total = self.h.stats()["devices"]["total"]
        victim.cli("CONFIG", "SET", "maxmemory", "1")
        try:
            body = "deviceName\r\n" + "".join(n + "\r\n" for n in names)
            r = self.h.admin("POST", "/v1/products/a1C/devices", body, content_type="text/csv")
            self.assertEqual((r.status, r.json()["error"]["code"]), (503, "out_of_memory"), r)
        finally:
            victim.cli("CONFIG", "SET", "maxmemory", "0")
        harness.wait_until(lambda: self.h.stats()["devices"]["total"] == total, 10, "the counts taken back")
        for n in names:
            self.assertEqual(self.h.admin("GET", "/v1/devices/a1C/%s" % n).status, 404, n)
        # And the same upload goes through whole now.
        self.assertEqual(len(self.h.register("a1C", names)), len(names))
        self.assertEqual(self.h.stats()["devices"]["total"], total + len(names))

    def test_both_topologies_refused(self):
        cfg = self.h.config()
        cfg["redis"]["url"] = "redis://127.0.0.1:%d/0" % self.h.nodes[0].port
        path = os.path.join(self.h.dir, "both.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([harness.daemon_path(), "--config", path, "--check-config"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20, env=harness.daemon_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"exactly one Redis topology", r.stdout)


class ClusterFailover(ClusterCase):
    # Small steps with pauses: the batch is still running when the master dies.
    harness_args = {"config": {"redis": {"timeout_ms": 1000}, "worker": {"chunk_size": 10, "pause_ms": 100}}}
    DEVICES = 300
    notify = True

    def test_master_killed_under_load(self):
        victim = self.h.node_of_key(harness.key("device", "a1C", self.names[0]))
        load_names = self.names[:40]
        on_victim = [dn for dn in load_names if self.h.node_of_key(harness.key("device", "a1C", dn)) is victim]
        self.assertTrue(on_victim, "no load device on the master to kill")
        batch_names = self.names[100:300]
        # Every device the batch moves is told through its old instance's broker.
        spy = harness.MqttClient(self.broker.port)
        spy.connect_ok()
        self.addCleanup(spy.close)
        spy.subscribe(ALL_NOTIFY)
        results = []
        stop = threading.Event()
        t = threading.Thread(target=self.load, args=(load_names, lambda dn: (SH,), results, stop), daemon=True)
        t.start()
        try:
            harness.wait_until(lambda: sum(1 for r in results if r[2] == 200) >= 50, 20,
                               "the load answered before the kill")
            bid = self.h.create_batch("productKey,deviceName\n" + "".join("a1C,%s\n" % n for n in batch_names),
                                      "targetRegion=eu-central-1")["batchId"]
            harness.wait_until(lambda: self.h.get_batch(bid)["processed"] > 0, 20, "the batch under way")
            product_on_victim = self.h.node_of_key(harness.key("product", "a1C")) is victim
            killed = time.monotonic()
            victim.kill()
            self.h.wait_healthy()
            promoted = time.monotonic()
            harness.wait_until(lambda: any(ts > promoted and dn in on_victim and st == 200
                                           for ts, dn, st, _ in results), FAILOVER_S,
                               "a 200 for a device of the killed master after the failover")
            time.sleep(3.0 if LONG else 1.0)
        finally:
            stop.set()
            t.join(20)
        self.assertEqual(self.wrong(results, lambda dn: (SH,)), [], "wrong answers during the failover")
        first = min(ts for ts, dn, st, _ in results if ts > promoted and dn in on_victim and st == 200)
        n503 = sum(1 for r in results if r[2] == 503)
        n503_victim = sum(1 for r in results if r[2] == 503 and r[1] in on_victim)
        late503 = sum(1 for ts, _, st, _ in results if st == 503 and ts > first + 1.0)
        sys.stderr.write("cluster failover: %d requests, %d answered 503 (%d of them for devices of the killed "
                         "master; its product's slot %s), master killed to promoted %.2f s, promoted to first 200 "
                         "%.3f s, 503s later than 1 s after that: %d\n"
                         % (len(results), n503, n503_victim, "was there too" if product_on_victim else "elsewhere",
                            promoted - killed, first - promoted, late503))
        self.assertLess(first - promoted, RECOVERY_BOUND_S)
        self.assertEqual(late503, 0, "503s more than a second after the first answer")
        if not product_on_victim:
            # Devices on the other masters never noticed.
            self.assertEqual(n503 - n503_victim, 0, "503s for devices whose slots were on live masters")
        # The batch completes with every row applied once.
        b = self.h.wait_batch(bid, 90)
        self.assertEqual((b["status"], b["total"], b["processed"], b["succeeded"], b["failed"]),
                         ("completed", len(batch_names), len(batch_names), len(batch_names), 0), b)
        _, rows = self.h.batch_results(bid)
        self.assertEqual(sorted(r[1] for r in rows), sorted(batch_names))
        for n in batch_names[::25]:
            self.answers(n, EU, n=1)
        # No notify lost: each moved device got its own (maybe twice, never none).
        want = {notify_topic("a1C", n) for n in batch_names}
        got = spy.wait_messages(lambda ms: want <= {m.topic for m in ms}, 30, "a notify for every moved device")
        self.assertEqual(want - {m.topic for m in got}, set())
        harness.wait_until(lambda: {r[5] for r in self.h.batch_results(bid)[1]} == {"sent"}, 30,
                           "every row's notify recorded sent")


class ClusterReshard(ClusterCase):
    DEVICES = 120

    def move_slot(self, key, dst=None):
        """Moves the slot of KEY to another master by hand, as redis-cli
        --cluster reshard does: IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE."""
        src = self.h.node_of_key(key)
        dst = dst or next(n for n in self.h.masters() if n is not src)
        slot = src.cli("CLUSTER", "KEYSLOT", key)
        dst.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
        src.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id())
        keys = [k for k in src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1000).split("\n") if k]
        if keys:
            src.cli("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
        for n in self.h.masters():
            n.cli("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id())
        harness.wait_until(lambda: self.h.node_of_key(key) is dst, 10, "slot %s on its new node" % slot)
        return src, dst

    def test_cache_follows_a_moved_slot(self):
        # Cached product and device records, then their slots move: the
        # node they leave reports the keys gone, and writes on the new node
        # are seen at once.
        dn = "cc-mv-1"  # its own device: the other test's load keeps to self.names
        self.h.register("a1C", [dn])
        self.answers(dn, SH, n=3)
        hits = self.metric("bootstrapd_cache_requests_total")
        self.answers(dn, SH, n=2)
        self.assertGreater(self.metric("bootstrapd_cache_requests_total"), hits, "the records are cached")
        self.move_slot(harness.key("product", "a1C"))
        self.move_slot(harness.key("device", "a1C", dn))
        self.answers(dn, SH, n=2)
        self.h.put_product("a1C", region="eu-central-1", instance="iot-eu-1")
        try:
            self.answers(dn, EU, n=3)
        finally:
            self.h.put_product("a1C")
        b = self.h.distribute("productKey,deviceName\na1C,%s\n" % dn, "targetRegion=us-east-1")
        self.assertEqual(b["status"], "completed", b)
        self.answers(dn, US1, n=3)
        # A device that does not exist yet, asked for, then registered
        # after its slot moved: never answered from a stale "absent".
        new = "cc-new-1"
        r = self.h.bootstrap("a1C", new)
        self.assertEqual(r.status, 404, r)
        self.move_slot(harness.key("device", "a1C", new))
        self.h.register("a1C", [new])
        self.answers(new, SH, n=2)

    def test_slots_move_under_load(self):
        src = self.h.node_of_key(harness.key("device", "a1C", self.names[0]))
        dst = next(n for n in self.h.masters() if n is not src)
        results = []
        stop = threading.Event()
        t = threading.Thread(target=self.load, args=(self.names, lambda dn: (SH,), results, stop), daemon=True)
        t.start()
        moved = 0
        try:
            harness.wait_until(lambda: sum(1 for r in results if r[2] == 200) >= 50, 20, "the load answering")
            before = self.metric("bootstrapd_redis_redirects_total")
            for _ in range(3 if LONG else 1):
                r = subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src.port,
                                    "--cluster-from", src.node_id(), "--cluster-to", dst.node_id(),
                                    "--cluster-slots", "1500", "--cluster-yes", "--cluster-pipeline", "10"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
                self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace")[-2000:])
                moved += 1
                src, dst = dst, src
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(20)
        bad = [(dn, st, b) for _, dn, st, b in results if (st, b) != (200, SH)]
        redirects = self.metric("bootstrapd_redis_redirects_total") - before
        sys.stderr.write("cluster reshard: %d moves of 1500 slots, %d requests, %d not 200, %d redirects\n"
                         % (moved, len(results), len(bad), redirects))
        self.assertEqual(bad, [], "answers other than 200 while slots moved")
        self.assertGreater(redirects, 0, "no MOVED or ASK followed: the test moved nothing bootstrapd used")
        # Writes land where the slots are now.
        self.h.put_product("a1C", region="eu-central-1", instance="iot-eu-1")
        self.answers(self.names[0], EU, n=2)
        self.h.put_product("a1C")


class ClusterMigrations(ClusterCase):
    """Slots caught half-way through a migration, as an operator's resharding
    leaves them for a while."""
    DEVICES = 10
    harness_args = {"config": {"redis": {"timeout_ms": 1000}, "worker": {"claim_idle_ms": 300, "pause_ms": 0}}}

    def test_ask_to_a_master_with_no_slot_yet(self):
        # A new master joins and imports one slot: until the slot is its,
        # the old owner answers ASK naming a node bootstrapd knows nothing of.
        h = self.h
        new = Node(h, "node-new")
        new.start()
        h.nodes.append(new)
        h.nodes[0].cli("CLUSTER", "MEET", "127.0.0.1", new.port)
        harness.wait_until(lambda: all(new.node_id() in n.cli("CLUSTER", "NODES") for n in h.live()), 20,
                           "the new master met")
        harness.wait_until(lambda: "cluster_state:ok" in new.cli("CLUSTER", "INFO"), 20, "the new master ok")
        dn = self.names[0]
        self.answers(dn, SH, n=2)
        key = harness.key("device", "a1C", dn)
        src = h.node_of_key(key)
        slot = src.cli("CLUSTER", "KEYSLOT", key)
        new.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
        src.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", new.node_id())
        keys = [k for k in src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1000).split("\n") if k]
        src.cli("MIGRATE", "127.0.0.1", new.port, "", 0, 5000, "KEYS", *keys)
        before = self.metric("bootstrapd_redis_redirects_total")
        self.answers(dn, SH, n=3)
        self.assertGreater(self.metric("bootstrapd_redis_redirects_total"), before, "no ASK followed")
        for n in h.live():
            n.cli("CLUSTER", "SETSLOT", slot, "NODE", new.node_id(), check=False)
        self.answers(dn, SH, n=3)

    def test_batch_during_a_migration(self):
        # The group's counters moved, its bucket not yet: the step's script
        # on that group gets TRYAGAIN, and must wait rather than fail.
        h = self.h
        dn = self.names[5]
        key = harness.key("device", "a1C", dn)
        src = h.node_of_key(key)
        dst = next(n for n in h.masters() if n is not src)
        slot = src.cli("CLUSTER", "KEYSLOT", key)
        dst.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id())
        src.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id())
        src.cli("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", harness.key("counters", "a1C", dn))
        bid = h.create_batch("productKey,deviceName\na1C,%s\n" % dn, "targetRegion=us-east-1")["batchId"]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            b = h.get_batch(bid)
            self.assertNotEqual(b["status"], "failed", b)
            time.sleep(0.2)
        # The migration finishes: the batch completes, its row counted once.
        rest = [k for k in src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1000).split("\n") if k]
        if rest:
            src.cli("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *rest)
        for n in h.masters():
            n.cli("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id(), check=False)
        b = h.wait_batch(bid, 30)
        self.assertEqual((b["status"], b["processed"], b["succeeded"]), ("completed", 1, 1), b)
        self.answers(dn, US1, n=2)
        self.assertEqual(h.stats()["distributed"]["byRegion"].get("us-east-1"), 1)


if __name__ == "__main__":
    harness.main()
