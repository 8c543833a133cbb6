"""docs/alerts.yaml and docs/runbook.md against the metrics the source
renders: every alert is a well-formed Prometheus rule on metrics that exist,
and the runbook describes every metric."""

import os
import re
import sys
import unittest

import yaml

ROOT = os.environ.get("BOOTSTRAPD_SOURCE_ROOT",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def source_metrics():
    """Every metric family named in a string of src/*.c."""
    names = set()
    for n in os.listdir(os.path.join(ROOT, "src")):
        if n.endswith(".c"):
            for m in re.finditer(r'"(?:# (?:HELP|TYPE) )?((?:bootstrapd|process)_[a-z0-9_]+)', read("src", n)):
                names.add(family(m.group(1)))
    return names


def family(name):
    for part in HISTOGRAM_PARTS:
        if name.endswith(part) and not name.endswith("_total"):
            return name[: -len(part)]
    return name


class Alerts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.metrics = source_metrics()
        cls.doc = yaml.safe_load(read("docs", "alerts.yaml"))

    def test_the_source_names_metrics(self):
        # The extraction works: the families this test knows are all found.
        for m in ("bootstrapd_http_requests_total", "bootstrapd_http_request_duration_seconds",
                  "bootstrapd_redis_command_duration_seconds", "process_start_time_seconds", "bootstrapd_batches"):
            self.assertIn(m, self.metrics)
        self.assertGreater(len(self.metrics), 40)

    def test_rules_are_well_formed(self):
        self.assertIsInstance(self.doc.get("groups"), list)
        seen = set()
        for g in self.doc["groups"]:
            self.assertTrue(g.get("name"))
            self.assertTrue(g.get("rules"), g.get("name"))
            for r in g["rules"]:
                self.assertIn("alert", r)
                self.assertNotIn(r["alert"], seen, "alert %s twice" % r["alert"])
                seen.add(r["alert"])
                self.assertIsInstance(r.get("expr"), str, r["alert"])
                self.assertIn(r.get("labels", {}).get("severity"), ("critical", "warning", "info"), r["alert"])
                self.assertTrue(r.get("annotations", {}).get("summary"), r["alert"])
                if "for" in r:
                    self.assertRegex(str(r["for"]), r"^\d+[smh]$", r["alert"])
        self.assertGreaterEqual(len(seen), 10)

    def test_every_alert_uses_metrics_that_exist(self):
        missing = []
        for g in self.doc["groups"]:
            for r in g["rules"]:
                for m in re.findall(r"\b((?:bootstrapd|process)_[a-z0-9_]+)", r["expr"]):
                    if family(m) not in self.metrics:
                        missing.append("%s: %s" % (r["alert"], m))
        self.assertEqual(missing, [])

    def test_the_runbook_describes_every_metric(self):
        runbook = read("docs", "runbook.md")
        self.assertEqual(sorted(m for m in self.metrics if "`%s`" % m not in runbook), [])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    bad = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - bad, bad))
    sys.exit(1 if bad else 0)
