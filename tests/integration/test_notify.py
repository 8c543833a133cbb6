"""Bootstrap notify (SPEC §7; §3 "notify" of an instance; docs/batches.md, the
`notify` column of the results): when a batch distributes a device, the
worker publishes through the broker of the instance the device was in
before, at QoS 1, the exact compact payload with id batchId + row (6 digits);
records "pending" / "sent" (PUBACK) / "acked" (the device's code 200 reply) /
"none" (no broker); loses nothing when a broker is down, a worker is killed
or its credentials are wrong; and counts it all in /metrics.

Real mosquitto brokers on free loopback ports (the harness starts them before
the daemon so that their URLs go into the catalog); the devices are
harness.MqttClient, a small MQTT 3.1.1 client over a socket."""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import MqttClient, csv_body, metric_sum, metric_value, wait_until  # noqa: E402

PW_ENV = "BOOTSTRAPD_TEST_NOTIFY_PW"
ALL_NOTIFY = "/sys/+/+/thing/bootstrap/notify"
DELIVER_S = 15   # a notify reaches a subscribed device
RECOVER_S = 20   # after a broker comes back (the worker's reconnect backoff is at most 5 s)
BATCH_CONFIG = {"worker": {"pause_ms": 0}, "redis": {"timeout_ms": 2000},
                "limits": {"batch_max_devices": 1000}}
SH, EU, US1, US2 = "iot-cn-sh-public", "iot-eu-1", "iot-us-1", "iot-us-2"
TO_EU = "targetRegion=eu-central-1"
TO_US1 = "targetRegion=us-east-1&targetInstance=iot-us-1"
TO_US2 = "targetRegion=us-east-1&targetInstance=iot-us-2"
TO_SH = "targetRegion=cn-shanghai"
NOTIFY_TOTALS = ("bootstrapd_notify_queued_total", "bootstrapd_notify_published_total",
                 "bootstrapd_notify_sent_total", "bootstrapd_notify_acked_total",
                 "bootstrapd_notify_retried_total")
BROKER_MESSAGES = "bootstrapd_notify_broker_messages_total"
BROKER_UP = "bootstrapd_notify_broker_up"


def notify_topic(pk, dn):
    return "/sys/%s/%s/thing/bootstrap/notify" % (pk, dn)


def reply_topic(pk, dn):
    return "/sys/%s/%s/thing/bootstrap/notify_reply" % (pk, dn)


def notify_id(batch_id, row):
    return "%s%06d" % (batch_id, row)


def notify_payload(nid):
    return ('{"id":"%s","version":"1.0","method":"thing.bootstrap.notify","params":{"cmd":0}}' % nid).encode()


def reply(nid, code=200):
    return json.dumps({"id": nid, "code": code, "data": {}}, separators=(",", ":"))


def notify_regions(notify):
    """default_regions() with NOTIFY[instance id] (a dict) as the instance's
    "notify"; instances not in NOTIFY get none."""
    regions = harness.default_regions()
    for r in regions["regions"]:
        for inst in r["instances"]:
            if notify.get(inst["id"]):
                inst["notify"] = notify[inst["id"]]
    return regions


class NotifyCase(harness.HarnessCase):
    """A HarnessCase whose mosquitto brokers (BROKERS: name -> keyword
    arguments of Harness.start_broker) start first, then redis-server and
    bootstrapd with the catalog from catalog(brokers)."""

    brokers = {"a": {}}
    daemon_args = ()
    config = BATCH_CONFIG
    env = None

    @classmethod
    def catalog(cls, b):
        return notify_regions({SH: {"broker": b["a"].url}})

    @classmethod
    def setUpClass(cls):
        cls.h = harness.Harness(name=cls.__name__, config=cls.config, args=cls.daemon_args, env=cls.env)
        try:
            cls.b = {name: cls.h.start_broker(name, **kw) for name, kw in cls.brokers.items()}
            cls.h.regions = cls.catalog(cls.b)
            cls.h.start()
            cls.prepare()
        except BaseException:
            if not cls.h.closed:
                cls.h.print_logs()
            cls.h.close()
            raise

    # -- devices

    def client(self, broker, **kw):
        """A connected MqttClient on BROKER, closed after the test."""
        c = MqttClient(broker.port, **kw)
        c.connect_ok()
        self.addCleanup(c.close)
        return c

    def device(self, broker, pk, dn, **kw):
        """A device subscribed (QoS 1) to its notify topic on BROKER."""
        return self.client(broker, client_id="dev-%s-%s" % (pk, dn), **kw).subscribe(notify_topic(pk, dn))

    def spy(self, broker, **kw):
        """A client subscribed to every device's notify topic on BROKER."""
        return self.client(broker, **kw).subscribe(ALL_NOTIFY)

    def assertReceives(self, c, pk, dn, nid, timeout=DELIVER_S):
        """C receives the notify NID of PK/DN: the exact payload, at QoS 1."""
        topic, want, quoted = notify_topic(pk, dn), notify_payload(nid), ('"%s"' % nid).encode()
        msgs = c.wait_messages(lambda ms: any(m.topic == topic and quoted in m.payload for m in ms), timeout,
                               "notify %s on %s" % (nid, topic))
        got = [m for m in msgs if m.topic == topic and quoted in m.payload]
        for m in got:
            self.assertEqual(m.payload, want, "the notify payload, byte for byte")
            self.assertEqual(m.qos, 1, "the notify is published at QoS 1: %r" % m)
        return got

    def assertNotReceived(self, c, nids, what):
        """C has received no notify with an id in NIDS (a string or a list)."""
        payloads = {notify_payload(n) for n in ([nids] if isinstance(nids, str) else nids)}
        bad = [m for m in c.messages() if m.payload in payloads]
        self.assertEqual(bad, [], what)

    def fleet(self, pk, names, region="cn-shanghai", instance=SH):
        self.h.put_product(pk, region=region, instance=instance)
        self.h.register(pk, names)

    def distribute(self, rows, query):
        """Uploads ROWS ([pk, dn]) and waits until the batch is completed;
        returns its id."""
        return self.h.distribute(csv_body(rows), query, timeout=60)["batchId"]

    # -- states

    def notify_of(self, pk, dn):
        d = self.h.device(pk, dn)
        self.assertIn("notify", d, "GET /v1/devices/%s/%s has no \"notify\": %r" % (pk, dn, d))
        return d["notify"]

    def wait_notify(self, pk, dn, state, batch_id, row, timeout=DELIVER_S):
        """Waits until the device entry says notify {state, batchId, id}."""
        want = {"state": state, "batchId": batch_id, "id": notify_id(batch_id, row)}
        last = {}

        def ok():
            last["n"] = self.notify_of(pk, dn)
            return last["n"] == want

        try:
            wait_until(ok, timeout, "notify of %s/%s to be %r" % (pk, dn, want), interval=0.05)
        except TimeoutError as e:
            raise AssertionError("%s; last seen %r" % (e, last.get("n")))

    def notify_column(self, batch_id):
        r, rows = self.h.batch_results(batch_id)
        first = r.body.split(b"\n", 1)[0].rstrip(b"\r")
        self.assertEqual(first, b"productKey,deviceName,result,code,message,notify")
        for row in rows:
            self.assertEqual(len(row), 6, row)
        return [row[5] for row in rows]

    def wait_column(self, batch_id, want, timeout=DELIVER_S):
        """Waits until the results' notify column is WANT (a list, upload order)."""
        last = {}

        def ok():
            last["c"] = self.notify_column(batch_id)
            return last["c"] == want

        try:
            wait_until(ok, timeout, "notify column of batch %s to be %r" % (batch_id, want), interval=0.05)
        except TimeoutError as e:
            raise AssertionError("%s; last seen %r" % (e, last.get("c")))

    def assertStays(self, check, seconds=1.5):
        """CHECK() (which asserts) keeps holding for SECONDS."""
        deadline = time.monotonic() + seconds
        while True:
            check()
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)

    # -- operations endpoints

    def metrics(self):
        return self.h.metrics()

    def readyz_brokers(self, r=None):
        r = r or self.h.readyz()
        self.assertIn(r.status, (200, 503), r)
        j = r.json()
        self.assertIsInstance(j.get("brokers"), dict, "/readyz has no \"brokers\" object: %r" % r.body)
        return j["brokers"]

    def wait_up(self, key, up=True, metrics=None, timeout=RECOVER_S):
        """Waits until bootstrapd_notify_broker_up{broker=KEY} is 1 (UP) or 0."""
        metrics = metrics or self.metrics
        want = 1.0 if up else 0.0
        last = {}

        def ok():
            last["v"] = metric_value(metrics(), BROKER_UP, broker=key)
            return last["v"] == want

        try:
            wait_until(ok, timeout, "%s{broker=%r} == %d" % (BROKER_UP, key, want), interval=0.1)
        except TimeoutError as e:
            raise AssertionError("%s; last value %r" % (e, last.get("v")))

    def broker_count(self, text, key, event):
        return metric_value(text, BROKER_MESSAGES, broker=key, event=event) or 0.0

    def assertLogsFree(self, *secrets):
        logs = self.h.logs_text()
        for s in secrets:
            leaks = [ln.replace(s, "<PASSWORD>") for ln in logs.splitlines() if s in ln]
            self.assertEqual(leaks, [], "a notify password appears in a log (shown as <PASSWORD>)")


# ------------------------------------------------------------ normal paths

class Notify(NotifyCase):
    """Two brokers: a serves cn-shanghai and iot-us-1, b serves eu-central-1;
    iot-us-2 has no notify broker."""

    brokers = {"a": {}, "b": {}}

    @classmethod
    def catalog(cls, b):
        return notify_regions({SH: {"broker": b["a"].url}, US1: {"broker": b["a"].url},
                               EU: {"broker": b["b"].url}})

    def setUp(self):
        for name in ("a", "b"):
            self.wait_up(self.b[name].key(), timeout=10)

    def test_message_ids_and_states(self):
        a = self.b["a"]
        pk = "pkNs"
        names = ["s-0000", "s-0001", "s-0002", "s-0003", "s-0004"]
        self.fleet(pk, names)
        devs = {dn: self.device(a, pk, dn) for dn in names}
        self.assertIsNone(self.notify_of(pk, "s-0000"), "no notify before any distribution")
        rows = [[pk, "s-0000"], [pk, "s-nosuch"], [pk, "s-0001"], [pk, "s-0002"], [pk, "s-0000"],
                [pk, "s-0003"]]
        bid = self.distribute(rows, TO_EU)
        _, res = self.h.batch_results(bid)
        self.assertEqual([r[3] for r in res], ["", "device_not_found", "", "", "duplicate_row", ""], res)
        # ids: batch id + upload row (0-based, failed rows count), 6 digits
        sent = {"s-0000": 0, "s-0001": 2, "s-0002": 3, "s-0003": 5}
        for dn, row in sent.items():
            got = self.assertReceives(devs[dn], pk, dn, notify_id(bid, row))
            self.assertEqual(got[0].payload, notify_payload(notify_id(bid, row)))
        for dn in sent:
            for m in devs[dn].messages():
                self.assertEqual(m.payload, notify_payload(notify_id(bid, sent[dn])),
                                 "%s got a notify that is not its own: %r" % (dn, m))
        self.assertEqual(devs["s-0004"].messages(), [], "s-0004 was not in the batch")
        self.wait_column(bid, ["sent", "", "sent", "sent", "", "sent"])
        for dn, row in sent.items():
            self.wait_notify(pk, dn, "sent", bid, row)
        self.assertIsNone(self.notify_of(pk, "s-0004"))

        # Replies (from one client, so that they arrive in this order):
        # code 500 does not ack; the exact id, a re-quoted id and a number do.
        r = self.client(a)
        r.publish(reply_topic(pk, "s-0003"), reply(notify_id(bid, 5), code=500))
        r.publish(reply_topic(pk, "s-0000"), reply(notify_id(bid, 0)))
        self.wait_notify(pk, "s-0000", "acked", bid, 0)
        self.assertEqual(self.notify_of(pk, "s-0003")["state"], "sent", "a code 500 reply acknowledged the notify")
        r.publish(reply_topic(pk, "s-0001"), reply('"%s"' % notify_id(bid, 2)))
        self.wait_notify(pk, "s-0001", "acked", bid, 2)
        r.publish(reply_topic(pk, "s-0002"),
                  '{"id":%s,"code":200,"data":{}}' % int(notify_id(bid, 3)))
        self.wait_notify(pk, "s-0002", "acked", bid, 3)
        self.wait_column(bid, ["acked", "", "acked", "acked", "", "sent"])
        self.assertEqual(self.notify_of(pk, "s-0003")["state"], "sent")

    def test_device_own_id(self):
        a = self.b["a"]
        pk = "pkNo"
        self.fleet(pk, ["o-0000", "o-0001", "o-0002"])
        d0, d1 = self.device(a, pk, "o-0000"), self.device(a, pk, "o-0001")
        bid = self.distribute([[pk, "o-0000"], [pk, "o-0001"]], TO_EU)
        self.assertReceives(d0, pk, "o-0000", notify_id(bid, 0))
        self.assertReceives(d1, pk, "o-0001", notify_id(bid, 1))
        self.wait_column(bid, ["sent", "sent"])
        r = self.client(a)
        # A device never notified answering something: nothing to acknowledge.
        r.publish(reply_topic(pk, "o-0002"), reply("abc"))
        r.publish(reply_topic(pk, "o-0000"), reply("abc"))
        self.wait_notify(pk, "o-0000", "acked", bid, 0)
        self.assertIsNone(self.notify_of(pk, "o-0002"), "a reply with no notify before it made a notify state")
        r.publish(reply_topic(pk, "o-0001"), reply("1"))
        self.wait_notify(pk, "o-0001", "acked", bid, 1)
        self.wait_column(bid, ["acked", "acked"])

    def test_older_id_does_not_ack_the_latest(self):
        a, b = self.b["a"], self.b["b"]
        pk = "pkNr"
        self.fleet(pk, ["r-0000", "r-0001"])
        da, db = self.device(a, pk, "r-0000"), self.device(b, pk, "r-0000")
        x = self.distribute([[pk, "r-0001"], [pk, "r-0000"]], TO_EU)       # via a (home)
        self.assertReceives(da, pk, "r-0000", notify_id(x, 1))
        self.wait_notify(pk, "r-0000", "sent", x, 1)
        self.assertEqual(self.h.bootstrap(pk, "r-0000").status, 200)        # now in eu-central-1
        y = self.distribute([[pk, "r-0000"]], TO_US1)                       # via b (eu)
        self.assertReceives(db, pk, "r-0000", notify_id(y, 0))
        self.wait_notify(pk, "r-0000", "sent", y, 0)
        rb = self.client(b)
        rb.publish(reply_topic(pk, "r-0000"), reply(notify_id(x, 1)))    # late answer to x
        rb.publish(reply_topic(pk, "r-0001"), reply(notify_id(x, 0)))    # sentinel, processed after it
        self.wait_notify(pk, "r-0001", "acked", x, 0)
        self.assertEqual(self.notify_of(pk, "r-0000"),
                         {"state": "sent", "batchId": y, "id": notify_id(y, 0)},
                         "an answer to an older notify acknowledged the latest")
        self.assertEqual(self.notify_column(y), ["sent"])
        rb.publish(reply_topic(pk, "r-0000"), reply(notify_id(y, 0)))
        self.wait_notify(pk, "r-0000", "acked", y, 0)
        self.wait_column(y, ["acked"])

    def test_through_the_instance_the_device_was_in(self):
        a, b = self.b["a"], self.b["b"]
        ka, kb = a.key(), b.key()
        sa, sb = self.spy(a), self.spy(b)
        self.fleet("pkRa", ["ra-0000"])                                   # home cn-shanghai: a
        self.fleet("pkRb", ["rb-0000"], region="eu-central-1", instance=EU)  # home eu-central-1: b
        self.fleet("pkRn", ["rn-0000"], region="us-east-1", instance=US2)  # home iot-us-2: none
        rows = [["pkRa", "ra-0000"], ["pkRb", "rb-0000"]]
        before = self.metrics()

        # 1. never distributed: through the product's home instance
        b1 = self.distribute(rows, TO_US1)
        self.assertReceives(sa, "pkRa", "ra-0000", notify_id(b1, 0))
        self.assertReceives(sb, "pkRb", "rb-0000", notify_id(b1, 1))
        self.wait_column(b1, ["sent", "sent"])
        after = self.metrics()
        self.assertNotReceived(sb, notify_id(b1, 0), "ra-0000 (home cn-shanghai) notified through eu's broker")
        self.assertNotReceived(sa, notify_id(b1, 1), "rb-0000 (home eu-central-1) notified through cn's broker")
        for key in (ka, kb):
            self.assertEqual(self.broker_count(after, key, "published") - self.broker_count(before, key, "published"),
                             1, "messages published through %s for one device each" % key)
            self.assertEqual(self.broker_count(after, key, "sent") - self.broker_count(before, key, "sent"), 1, key)

        # The devices bootstrap: now they are in iot-us-1 (broker a).
        for pk, dn in rows:
            self.assertEqual(self.h.bootstrap(pk, dn).status, 200)

        # 2. distributed by a region batch: through that batch's target (iot-us-1: a)
        b2 = self.distribute(rows, TO_EU)
        self.assertReceives(sa, "pkRa", "ra-0000", notify_id(b2, 0))
        self.assertReceives(sa, "pkRb", "rb-0000", notify_id(b2, 1))
        self.wait_column(b2, ["sent", "sent"])
        self.assertNotReceived(sb, [notify_id(b2, 0), notify_id(b2, 1)], "b2 notified through eu's broker (the devices were in iot-us-1)")

        for pk, dn in rows:
            self.assertEqual(self.h.bootstrap(pk, dn).status, 200)

        # 3. from eu-central-1 (b) to iot-us-2
        b3 = self.distribute(rows, TO_US2)
        self.assertReceives(sb, "pkRa", "ra-0000", notify_id(b3, 0))
        self.assertReceives(sb, "pkRb", "rb-0000", notify_id(b3, 1))
        self.wait_column(b3, ["sent", "sent"])
        self.assertNotReceived(sa, [notify_id(b3, 0), notify_id(b3, 1)], "b3 notified through a (the devices were in eu-central-1)")

        for pk, dn in rows:
            self.assertEqual(self.h.bootstrap(pk, dn).status, 200)
        self.h.bootstrap("pkRn", "rn-0000")

        # 4. from iot-us-2, which has no broker: "none", nothing queued
        m4 = self.metrics()
        b4 = self.distribute(rows + [["pkRn", "rn-0000"]], TO_SH)
        self.assertEqual(self.notify_column(b4), ["none", "none", "none"])
        n = self.notify_of("pkRn", "rn-0000")
        self.assertEqual(n, {"state": "none", "batchId": b4, "id": notify_id(b4, 2)})
        self.assertEqual(metric_sum(self.metrics(), "bootstrapd_notify_queued_total"),
                         metric_sum(m4, "bootstrapd_notify_queued_total"), "a notify queued for \"none\"")
        # b4's ids never go out (a later batch is the sentinel: b5 comes after it)
        self.assertEqual(self.h.bootstrap("pkRa", "ra-0000").status, 200)   # now in cn-shanghai
        b5 = self.distribute([["pkRa", "ra-0000"]], TO_EU)                  # from cn-shanghai: a
        self.assertReceives(sa, "pkRa", "ra-0000", notify_id(b5, 0))
        for c in (sa, sb):
            self.assertNotReceived(c, [notify_id(b4, i) for i in range(3)], "a notify was published for an instance without a broker")
        self.assertEqual(self.notify_column(b4), ["none", "none", "none"])

        # 5. moved twice without bootstrapping in between: still connected where
        # the last notify found it, so the next notify goes the same way.
        self.assertEqual(self.h.bootstrap("pkRb", "rb-0000").status, 200)   # now in cn-shanghai (b4)
        b6 = self.distribute([["pkRb", "rb-0000"]], TO_EU)                  # from cn-shanghai: a
        self.assertReceives(sa, "pkRb", "rb-0000", notify_id(b6, 0))
        b7 = self.distribute([["pkRb", "rb-0000"]], TO_US1)                 # not bootstrapped: still a
        self.assertReceives(sa, "pkRb", "rb-0000", notify_id(b7, 0))
        self.assertNotReceived(sb, notify_id(b7, 0), "b7 went through eu-central-1's broker though the device never moved there")

    def test_metrics_and_readyz(self):
        a, b = self.b["a"], self.b["b"]
        pk = "pkNm"
        self.fleet(pk, ["m-0000", "m-0001", "m-0002"])
        spy = self.spy(a)
        before = self.metrics()
        for name in NOTIFY_TOTALS:
            self.assertIsNotNone(metric_sum(before, name), "/metrics has no %s" % name)
        for key in (a.key(), b.key()):
            self.assertEqual(metric_value(before, BROKER_UP, broker=key), 1.0, "%s{broker=%r}" % (BROKER_UP, key))
            for event in ("published", "sent", "acked", "retried", "malformed"):
                self.assertIsNotNone(metric_value(before, BROKER_MESSAGES, broker=key, event=event),
                                     "/metrics has no %s{broker=%r,event=%r}" % (BROKER_MESSAGES, key, event))
        brokers = self.readyz_brokers()
        for key in (a.key(), b.key()):
            self.assertIn(key, brokers, "/readyz brokers: %r" % brokers)
            self.assertFalse(brokers[key].startswith("down"), brokers)

        bid = self.distribute([[pk, "m-0000"], [pk, "m-0001"], [pk, "m-0002"]], TO_EU)
        for row, dn in enumerate(("m-0000", "m-0001", "m-0002")):
            self.assertReceives(spy, pk, dn, notify_id(bid, row))
        self.wait_column(bid, ["sent", "sent", "sent"])
        self.client(a).publish(reply_topic(pk, "m-0001"), reply(notify_id(bid, 1)))
        self.wait_column(bid, ["sent", "acked", "sent"])
        after = self.metrics()

        def delta(name):
            return (metric_sum(after, name) or 0) - (metric_sum(before, name) or 0)

        self.assertEqual(delta("bootstrapd_notify_queued_total"), 3)
        self.assertEqual(delta("bootstrapd_notify_published_total"), 3)
        self.assertEqual(delta("bootstrapd_notify_sent_total"), 3)
        self.assertEqual(delta("bootstrapd_notify_acked_total"), 1)
        self.assertEqual(delta("bootstrapd_notify_retried_total"), 0)
        ka = a.key()
        for event, n in (("published", 3), ("sent", 3), ("acked", 1), ("retried", 0), ("malformed", 0)):
            self.assertEqual(self.broker_count(after, ka, event) - self.broker_count(before, ka, event), n,
                             "%s{broker=%r,event=%r}" % (BROKER_MESSAGES, ka, event))
        self.assertEqual(self.broker_count(after, b.key(), "published"),
                         self.broker_count(before, b.key(), "published"))


class Malformed(NotifyCase):
    """Malformed replies are ignored, counted, and logged once."""

    def test_malformed_replies(self):
        a = self.b["a"]
        ka = a.key()
        self.wait_up(ka, timeout=10)
        pk = "pkMf"
        self.fleet(pk, ["f-0000", "f-0001"])
        d = self.device(a, pk, "f-0000")
        bid = self.distribute([[pk, "f-0000"], [pk, "f-0001"]], TO_EU)
        nid = notify_id(bid, 0)
        self.assertReceives(d, pk, "f-0000", nid)
        self.wait_column(bid, ["sent", "sent"])
        r = self.client(a)
        bad = ["this is not json", '{"id":"%s","data":{}}' % nid, '{"id":"%s","code":20' % nid]
        for p in bad:
            r.publish(reply_topic(pk, "f-0000"), p)
        r.publish(reply_topic(pk, "f-0001"), reply(notify_id(bid, 1)))   # processed after them
        self.wait_notify(pk, "f-0001", "acked", bid, 1)
        self.assertEqual(self.notify_of(pk, "f-0000")["state"], "sent", "a malformed reply acknowledged")
        for p in bad:  # several more
            r.publish(reply_topic(pk, "f-0000"), p)
        wait_until(lambda: self.broker_count(self.metrics(), ka, "malformed") >= 2 * len(bad), 10,
                   "%s{event=\"malformed\"} to count the %d malformed replies" % (BROKER_MESSAGES, 2 * len(bad)))
        self.assertEqual(self.broker_count(self.metrics(), ka, "malformed"), 2 * len(bad))
        self.assertEqual(self.notify_of(pk, "f-0000")["state"], "sent")
        lines = [ln for ln in self.h.daemon_log().splitlines() if "malformed" in ln.lower()]
        self.assertEqual(len(lines), 1, "the worker should log malformed replies once: %r" % lines)
        # still listening: a good reply acknowledges
        r.publish(reply_topic(pk, "f-0000"), reply(nid))
        self.wait_notify(pk, "f-0000", "acked", bid, 0)
        self.wait_column(bid, ["acked", "acked"])


# ------------------------------------------------------------ nothing lost

class BrokerDown(NotifyCase):
    """The broker is stopped before the batch and started again on the same
    port. The device keeps a persistent session (mosquitto persistence on,
    stopped with SIGTERM) so that it gets the notify whether the worker or
    the device reconnects first."""

    brokers = {"a": {"persistence": True}}

    def test_broker_down_then_back(self):
        a = self.b["a"]
        ka = a.key()
        self.wait_up(ka, timeout=10)
        pk = "pkDn"
        self.fleet(pk, ["d-0000", "d-0001"])
        spy_id = "dev-down-spy"
        self.client(a, client_id=spy_id, clean=False).subscribe(ALL_NOTIFY).close()
        a.stop()
        self.wait_up(ka, up=False)
        brokers = self.readyz_brokers()
        self.assertIn(ka, brokers, brokers)
        self.assertTrue(brokers[ka].startswith("down: "), "/readyz brokers: %r" % brokers)

        bid = self.distribute([[pk, "d-0000"], [pk, "d-0001"]], TO_EU)

        def pending():
            self.assertEqual(self.notify_column(bid), ["pending", "pending"])
            for row, dn in enumerate(("d-0000", "d-0001")):
                self.assertEqual(self.notify_of(pk, dn),
                                 {"state": "pending", "batchId": bid, "id": notify_id(bid, row)})

        self.assertStays(pending)

        a.start(same_port=True)
        dev = MqttClient(a.port, client_id=spy_id, clean=False)
        self.assertEqual(dev.connect(), 0)
        self.addCleanup(dev.close)
        self.assertTrue(dev.session_present, "mosquitto did not keep the device's session (test set-up)")
        for row, dn in enumerate(("d-0000", "d-0001")):
            self.assertReceives(dev, pk, dn, notify_id(bid, row), timeout=RECOVER_S)
        self.wait_column(bid, ["sent", "sent"])
        self.wait_up(ka)
        self.assertFalse(self.readyz_brokers()[ka].startswith("down"))
        self.client(a).publish(reply_topic(pk, "d-0001"), reply(notify_id(bid, 1)))
        self.wait_notify(pk, "d-0001", "acked", bid, 1)
        self.wait_column(bid, ["sent", "acked"])


class WorkerKilled(NotifyCase):
    """`--role api` serves the admin API; `--role worker` processes notify
    (2 a second) and are SIGKILLed with notifications in flight and queued."""

    daemon_args = ("--role", "api")
    N = 20
    WORKER = {"worker": {"claim_idle_ms": 1000, "pause_ms": 0}, "notify": {"rate_per_broker": 2}}

    def test_sigkill_with_notifications_in_flight(self):
        a = self.b["a"]
        ka = a.key()
        pk = "pkWk"
        names = ["k-%04d" % i for i in range(self.N)]
        self.fleet(pk, names)
        spy = self.spy(a)
        w1 = self.h.start_worker("w1", self.WORKER)
        self.wait_up(ka, metrics=w1.metrics, timeout=10)
        brokers = self.readyz_brokers(w1.readyz())
        self.assertIn(ka, brokers, "worker /readyz brokers: %r" % brokers)
        self.assertFalse(brokers[ka].startswith("down"), brokers)

        bid = self.distribute([[pk, n] for n in names], TO_EU)
        spy.wait_messages(lambda ms: len(ms) >= 2, DELIVER_S, "the first notifications")
        # Hold the broker so that what w1 publishes now is not acknowledged.
        a.pause()
        try:
            def in_flight():
                t = w1.metrics()
                return (metric_sum(t, "bootstrapd_notify_published_total") or 0) - \
                       (metric_sum(t, "bootstrapd_notify_sent_total") or 0) >= 1
            wait_until(in_flight, 10, "w1 to have a notify published and not acknowledged")
            column = self.notify_column(bid)
            w1.kill()
        finally:
            a.resume()
        self.assertIn("pending", column, "every notify went out before the kill (rate_per_broker not honoured?)")
        self.assertLess(len({m.topic for m in spy.messages()}), self.N)

        w2 = self.h.start_worker("w2", self.WORKER)
        want = {notify_topic(pk, n): notify_payload(notify_id(bid, i)) for i, n in enumerate(names)}
        spy.wait_messages(lambda ms: set(want) <= {m.topic for m in ms}, 60,
                          "every device to receive its notify after the new worker started")
        for m in spy.messages():
            self.assertEqual(m.payload, want.get(m.topic), "unexpected message %r" % m)
        self.wait_column(bid, ["sent"] * self.N, timeout=30)
        for i, n in enumerate(names):
            self.wait_notify(pk, n, "sent", bid, i, timeout=5)
        t = w2.metrics()
        self.assertGreaterEqual(metric_sum(t, "bootstrapd_notify_retried_total") or 0, 1,
                                "w2 took over w1's unacknowledged notifications: retried")
        self.assertGreaterEqual(self.broker_count(t, ka, "retried"), 1)
        self.assertEqual(metric_value(t, BROKER_UP, broker=ka), 1.0)
        rc, _ = w2.terminate()
        self.assertEqual(rc, 0, "worker w2 exit status after SIGTERM")


# ------------------------------------------------------------ credentials

PW = "Nt-pw-%s" % os.urandom(6).hex()
WRONG_PW = "Nt-wrong-%s" % os.urandom(6).hex()
DEVICE_PW = "Nt-dev-%s" % os.urandom(6).hex()


def plugin_path():
    """The mosquitto plugin beside the daemon that meson built."""
    return os.environ.get("BOOTSTRAPD_TEST_MOSQUITTO_PLUGIN") or os.path.join(
        os.path.dirname(harness.daemon_path()), "bootstrapd_mosquitto.so")


def sdk_client_id(pk, dn, ts="1700000000000"):
    """The client id the vendor SDK 4.x connects with."""
    return "%s.%s|securemode=2,signmethod=hmacsha256,timestamp=%s|" % (pk, dn, ts)


class Plugin(NotifyCase):
    """SPEC §7: devices on the SDK 4.x never subscribe to their notify
    topic. Broker "a" loads the plugin (plugin/mosquitto_notify.c), which
    hands bootstrapd's messages to the device's session; broker "b" is a
    plain mosquitto, where such a device never hears of its notify."""
    users = dict({"bootstrapd": PW, "other": DEVICE_PW},
                 **{u: DEVICE_PW for u in ("pl-0001&pkPl", "pl-0002&pkPl", "pl-0003&pkPl", "pl-0001&pkPr",
                                           "pl-0001&pkPn")})
    brokers = {"a": {"users": users, "extra": ["plugin %s" % plugin_path()]},
               "b": {"users": users}}
    env = {PW_ENV: PW}

    @classmethod
    def catalog(cls, b):
        return notify_regions({
            SH: {"broker": b["a"].url, "username": "bootstrapd", "password_env": PW_ENV},
            US1: {"broker": b["b"].url, "username": "bootstrapd", "password_env": PW_ENV}})

    def unacked(self):
        """bootstrapd_notify_unacked: delivered, never answered, over every batch."""
        return metric_value(self.h.metrics(), "bootstrapd_notify_unacked")

    def sdk_device(self, broker, pk, dn, ts="1700000000000"):
        """A device as the SDK connects: its client id and username, no SUBSCRIBE."""
        return self.client(broker, client_id=sdk_client_id(pk, dn, ts), username="%s&%s" % (dn, pk),
                           password=DEVICE_PW)

    def test_notify_reaches_a_device_that_never_subscribed(self):
        pk = "pkPl"
        self.fleet(pk, ["pl-0001", "pl-0002"])
        d = self.sdk_device(self.b["a"], pk, "pl-0001")
        bystander = self.sdk_device(self.b["a"], pk, "pl-0002")
        self.wait_up(self.b["a"].key("bootstrapd"), timeout=10)
        unacked = self.unacked()
        bid = self.distribute([[pk, "pl-0001"]], TO_EU)
        nid = notify_id(bid, 0)
        self.assertReceives(d, pk, "pl-0001", nid)
        self.wait_column(bid, ["sent"])
        self.assertEqual(self.h.get_batch(bid)["notify"], {"pending": 0, "sent": 1, "acked": 0, "none": 0})
        self.assertEqual(self.unacked(), unacked + 1)
        # The device answers as the SDK does: the notify is acknowledged.
        d.publish(reply_topic(pk, "pl-0001"), reply(nid))
        self.wait_column(bid, ["acked"])
        self.assertEqual(self.h.get_batch(bid)["notify"], {"pending": 0, "sent": 0, "acked": 1, "none": 0})
        self.assertEqual(self.unacked(), unacked)
        self.assertEqual(self.notify_of(pk, "pl-0001")["state"], "acked")
        self.assertNotReceived(bystander, nid, "another device's session gets nothing")
        self.assertIn("bootstrapd: device notify hand-over on", open(self.b["a"].log_path).read())

    def test_only_bootstrapd_is_handed_over(self):
        pk = "pkPl"
        self.h.put_product(pk, region="cn-shanghai", instance=SH)
        d = self.sdk_device(self.b["a"], pk, "pl-0003")
        other = self.client(self.b["a"], username="other", password=DEVICE_PW)
        other.publish(notify_topic(pk, "pl-0003"), notify_payload("forged"))
        other.publish("/sys/%s/pl-0003/thing/bootstrap/notify" % pk, notify_payload("forged2"))
        import time
        time.sleep(0.5)
        self.assertNotReceived(d, ["forged", "forged2"], "a client other than bootstrapd reaches no session")

    def test_reconnect_with_a_new_client_id(self):
        pk = "pkPr"
        self.fleet(pk, ["pl-0001"])
        old = self.sdk_device(self.b["a"], pk, "pl-0001", ts="1700000000001")
        new = self.sdk_device(self.b["a"], pk, "pl-0001", ts="1700000000002")
        old.close()  # the old session goes after the new one came: the new one keeps its entry
        bid = self.distribute([[pk, "pl-0001"]], TO_EU)
        self.assertReceives(new, pk, "pl-0001", notify_id(bid, 0))

    def test_plain_broker_never_delivers(self):
        # The same device on a broker without the plugin: sent, never heard.
        pk = "pkPn"
        self.fleet(pk, ["pl-0001"], region="us-east-1", instance=US1)
        d = self.sdk_device(self.b["b"], pk, "pl-0001")
        self.wait_up(self.b["b"].key("bootstrapd"), timeout=10)
        unacked = self.unacked()
        bid = self.distribute([[pk, "pl-0001"]], TO_EU)
        self.wait_column(bid, ["sent"])
        import time
        time.sleep(0.5)
        self.assertNotReceived(d, notify_id(bid, 0), "no subscription, no plugin: nothing")
        # Delivered to the broker, never answered: the batch and the metric say so.
        self.assertEqual(self.h.get_batch(bid)["notify"]["sent"], 1)
        self.assertEqual(self.unacked(), unacked + 1)



class AuthCase(NotifyCase):
    brokers = {"a": {"users": {"bootstrapd": PW, "device": DEVICE_PW}}}

    @classmethod
    def catalog(cls, b):
        return notify_regions({SH: {"broker": b["a"].url, "username": "bootstrapd", "password_env": PW_ENV}})

    def key(self):
        return self.b["a"].key("bootstrapd")

    def dev(self, pk, dn):
        return self.device(self.b["a"], pk, dn, username="device", password=DEVICE_PW)


class AuthGood(AuthCase):
    env = {PW_ENV: PW}

    def test_with_credentials(self):
        key = self.key()
        self.wait_up(key, timeout=10)
        brokers = self.readyz_brokers()
        self.assertIn(key, brokers, "/readyz brokers (URL#username): %r" % brokers)
        self.assertFalse(brokers[key].startswith("down"), brokers)
        pk = "pkAg"
        self.fleet(pk, ["g-0000"])
        d = self.dev(pk, "g-0000")
        bid = self.distribute([[pk, "g-0000"]], TO_EU)
        self.assertReceives(d, pk, "g-0000", notify_id(bid, 0))
        self.wait_column(bid, ["sent"])
        self.assertEqual(self.broker_count(self.metrics(), key, "sent"), 1)
        self.assertLogsFree(PW)
        for r in (self.h.readyz(), self.h.admin("GET", "/metrics", token=None), self.h.admin("GET", "/v1/regions")):
            self.assertNotIn(PW.encode(), r.body)


class AuthWrong(AuthCase):
    env = {PW_ENV: WRONG_PW}

    def test_1_wrong_credentials(self):
        key, url = self.key(), self.b["a"].url
        last = {}

        def down():
            last["b"] = self.readyz_brokers()
            return last["b"].get(key, "").startswith("down: ")

        try:
            wait_until(down, 10, "/readyz brokers[%r] to be \"down: ...\"" % key, interval=0.1)
        except TimeoutError as e:
            raise AssertionError("%s; last %r" % (e, last.get("b")))
        self.assertEqual(metric_value(self.metrics(), BROKER_UP, broker=key), 0.0)
        wait_until(lambda: any(url in ln and re.search(r"(?i)auth|credential|password|user|denied|refused", ln)
                               for ln in self.h.daemon_log().splitlines()), 10,
                   "a log line naming %s and saying what is wrong (not authorised)" % url)
        pk = "pkAw"
        self.fleet(pk, ["w-0000"])
        bid = self.distribute([[pk, "w-0000"]], TO_EU)
        type(self).batch = bid

        def pending():
            self.assertEqual(self.notify_column(bid), ["pending"])
            self.assertEqual(self.notify_of(pk, "w-0000"), {"state": "pending", "batchId": bid,
                                                            "id": notify_id(bid, 0)})
        self.assertStays(pending, 2)
        # A `--role worker` process (same environment) says so on worker.listen.
        w = self.h.start_worker("w1")
        try:
            wait_until(lambda: self.readyz_brokers(w.readyz()).get(key, "").startswith("down: "), 10,
                       "worker /readyz brokers[%r] to be \"down: ...\"" % key, interval=0.1)
            self.assertEqual(metric_value(w.metrics(), BROKER_UP, broker=key), 0.0)
        finally:
            rc, _ = w.terminate()
        self.assertEqual(rc, 0, "worker exit status after SIGTERM")
        self.assertEqual(self.notify_column(bid), ["pending"])
        self.assertLogsFree(WRONG_PW, PW)
        for r in (self.h.readyz(), self.h.admin("GET", "/metrics", token=None), self.h.admin("GET", "/v1/regions")):
            self.assertNotIn(WRONG_PW.encode(), r.body)

    def test_2_fixed_at_the_broker(self):
        """Nothing lost: once the broker accepts the worker's password, the
        pending notify goes out without operator action on bootstrapd."""
        bid = getattr(type(self), "batch", None)
        if bid is None:
            self.skipTest("test_1 did not queue its notify")
        a = self.b["a"]
        d = self.dev("pkAw", "w-0000")
        a.set_users({"bootstrapd": WRONG_PW, "device": DEVICE_PW})
        a.reload()
        self.assertReceives(d, "pkAw", "w-0000", notify_id(bid, 0), timeout=RECOVER_S)
        self.wait_column(bid, ["sent"])
        self.wait_up(self.key())
        self.assertLogsFree(WRONG_PW, PW)


# ------------------------------------------------------------ configuration

class Config(unittest.TestCase):
    """notify.rate_per_broker, notify.inflight_per_broker, worker.claim_idle_ms
    and a catalog with notify sections pass --check-config; unknown keys do not."""

    def check(self, config, env=None, regions=None):
        h = harness.Harness(name="Config", config=config, regions=regions)
        try:
            h.public_port, h.admin_port, h.redis_port = harness.free_port(), harness.free_port(), harness.free_port()
            h.write_config()
            r = subprocess.run([harness.daemon_path(), "--config", h.config_path, "--check-config"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               timeout=30, env=harness.daemon_env(env))
            return r.returncode, (r.stdout + r.stderr).decode(errors="replace")
        finally:
            h.close()
            harness._harnesses.remove(h)

    def test_keys(self):
        regions = notify_regions({SH: {"broker": "mqtt://127.0.0.1:1883", "username": "bootstrapd",
                                       "password_env": PW_ENV}, EU: {"broker": "mqtt://127.0.0.1:1884"}})
        rc, out = self.check({"notify": {"rate_per_broker": 5, "inflight_per_broker": 10},
                              "worker": {"claim_idle_ms": 1000}}, env={PW_ENV: "x"}, regions=regions)
        self.assertEqual(rc, 0, out)
        rc, out = self.check({}, env={"BOOTSTRAPD_NOTIFY_RATE_PER_BROKER": "7",
                                      "BOOTSTRAPD_NOTIFY_INFLIGHT_PER_BROKER": "3"})
        self.assertEqual(rc, 0, out)
        rc, out = self.check({"notify": {"rate": 5}})
        self.assertEqual(rc, 1, out)
        self.assertIn("rate", out)


if __name__ == "__main__":
    harness.main(need=("mosquitto", "mosquitto_passwd"))
