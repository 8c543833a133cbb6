"""bootstrapctl, the operator's command line, against a live bootstrapd:
every command, its output checked against the API's own answers; flags
over the environment; the exit codes; --help of every command; an HTTPS
admin listener; and the token never in anything it prints."""

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase  # noqa: E402

# A second admin token, for bootstrapctl only: long and random, so that
# finding it in an output can only mean it was printed.
CTL_TOKEN = "ctl-" + os.urandom(16).hex()
TOKENS = ["sha256:" + harness.sha256_hex(harness.TOKEN), "sha256:" + harness.sha256_hex(CTL_TOKEN)]
CONFIG = {"admin": {"tokens": TOKENS}, "worker": {"pause_ms": 0}}

COMMANDS = ["regions", "product put", "product get", "devices register", "device get", "resolve",
            "batch template", "batch create", "batch status", "batch results", "batch list", "batch retry",
            "auth-code", "stats"]
LINE = re.compile(r"^batch (\d+): (initializing|running|completed|failed), (\d+)/(\d+) processed, "
                  r"(\d+) succeeded, (\d+) failed(; error: .*)?$")
LIST_LINE = re.compile(r"^(batch \d+: .*)  \(created (\S+)\)$")


def ctl_path():
    """bootstrapctl as meson built it (BOOTSTRAPCTL), else build/bootstrapctl."""
    path = os.environ.get("BOOTSTRAPCTL") or os.path.join(harness.source_root(), "build", "bootstrapctl")
    return os.path.abspath(path)


def run_ctl(args, env=None, stdin=None, timeout=60):
    """Runs bootstrapctl ARGS with our environment minus BOOTSTRAPCTL_*, plus
    ENV; STDIN: bytes or str to feed it. A run that outlives TIMEOUT is a
    failure. Returns (exit status, stdout, stderr)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BOOTSTRAPCTL_")}
    e.update(env or {})
    if isinstance(stdin, str):
        stdin = stdin.encode()
    p = subprocess.Popen([ctl_path(), *args], stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, start_new_session=True)
    harness._processes.append(p)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        raise AssertionError("bootstrapctl %s still running after %ds (stdout %r, stderr %r)"
                             % (" ".join(args), timeout, out[-500:], err[-500:]))
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def csv_rows(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def closed_port():
    """A loopback port nothing listens on (bound and released)."""
    return harness.free_port()


class CtlCase(HarnessCase):
    harness_args = {"config": CONFIG}

    def url(self):
        return "http://127.0.0.1:%d" % self.h.admin_port

    def ctl(self, *args, env=None, stdin=None, timeout=60, url=True, token=True):
        """bootstrapctl ARGS, this harness' URL and CTL_TOKEN in its
        environment (unless URL / TOKEN is false); the token must be in
        neither of its outputs."""
        e = {}
        if url:
            e["BOOTSTRAPCTL_URL"] = self.url()
        if token:
            e["BOOTSTRAPCTL_TOKEN"] = CTL_TOKEN
        e.update(env or {})
        rc, out, err = run_ctl(args, e, stdin, timeout)
        self.assertNotIn(CTL_TOKEN, out, "bootstrapctl %s printed the token on stdout" % " ".join(args))
        self.assertNotIn(CTL_TOKEN, err, "bootstrapctl %s printed the token on stderr" % " ".join(args))
        return rc, out, err

    def ok(self, *args, **kw):
        """Its stdout, after checking it exited 0."""
        rc, out, err = self.ctl(*args, **kw)
        self.assertEqual(rc, 0, "bootstrapctl %s: exit %d, stdout %r, stderr %r" % (" ".join(args), rc, out, err))
        return out

    def refused(self, *args, code, message=None, **kw):
        """Exit 1 with the API's error CODE (and MESSAGE) on stderr, nothing on stdout."""
        rc, out, err = self.ctl(*args, **kw)
        self.assertEqual(rc, 1, "bootstrapctl %s: exit %d, stderr %r" % (" ".join(args), rc, err))
        self.assertEqual(out, "")
        self.assertIn(code, err)
        if message:
            self.assertIn(message, err)
        return err

    def api(self, method, path, body=None, status=200, content_type=None):
        """The API's own answer (through the harness' token), JSON decoded."""
        r = self.h.admin(method, path, body, content_type=content_type)
        self.assertEqual(r.status, status, r)
        return r.json()

    def write(self, name, text):
        path = os.path.join(self.h.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class Commands(CtlCase):
    @classmethod
    def prepare(cls):
        cls.h.put_product("pkCtl", region="cn-shanghai", instance="iot-cn-sh-public", account="acct-a")
        cls.h.register("pkCtl", ["ctl-0001", "ctl-0002", "ctl@dev:03"])

    # -- help and version

    def test_version(self):
        with open(os.path.join(harness.source_root(), "meson.build")) as f:
            version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
        out = self.ok("--version", url=False, token=False)
        self.assertEqual(out, "bootstrapctl %s\n" % version)

    def test_help_lists_every_command(self):
        out = self.ok("--help", url=False, token=False)
        self.assertTrue(out.startswith("usage: bootstrapctl "), out)
        for name in COMMANDS:
            self.assertIn("\n  %s" % name, out)
        for word in ("BOOTSTRAPCTL_URL", "BOOTSTRAPCTL_TOKEN", "--cacert", "--insecure", "--json", "Exit status"):
            self.assertIn(word, out)
        self.assertEqual(self.ok("help", url=False, token=False), out)

    def test_help_of_every_command(self):
        for name in COMMANDS:
            with self.subTest(command=name):
                out = self.ok("help", *name.split(), url=False, token=False)
                self.assertTrue(out.startswith("usage: bootstrapctl %s" % name), out)
                self.assertEqual(self.ok(*name.split(), "--help", url=False, token=False), out)
                self.assertEqual(self.ok(*name.split(), "-h", url=False, token=False), out)
        out = self.ok("batch", "create", "--help", url=False, token=False)
        for opt in ("--strategy", "--target-region", "--target-instance", "--regions", "--target-account",
                    "--auth-code", "--wait"):
            self.assertIn(opt, out)
        out = self.ok("help", "product", "put", url=False, token=False)
        for opt in ("--home-region", "--home-instance", "--account", "--locked"):
            self.assertIn(opt, out)
        # A group's help lists its commands only.
        out = self.ok("help", "batch", url=False, token=False)
        self.assertIn("batch retry", out)
        self.assertNotIn("product put", out)
        self.assertEqual(self.ok("batch", "--help", url=False, token=False), out)

    # -- registry

    def test_regions(self):
        api = self.api("GET", "/v1/regions")
        out = self.ok("regions")
        lines = out.splitlines()
        self.assertEqual(len(lines), 1 + len(api["regions"]), out)
        for line, region in zip(lines[1:], api["regions"]):
            self.assertTrue(line.startswith(region["id"] + " "), (line, region))
            self.assertIn(region["name"], line)
            insts = ", ".join(i["id"] + ("*" if i.get("default") else "") for i in region["instances"])
            self.assertTrue(line.endswith(insts), (line, insts))
        self.assertEqual(json.loads(self.ok("regions", "--json")), api)

    def test_product_put_and_get(self):
        out = self.ok("product", "put", "pkCtlPut", "--home-region", "eu-central-1", "--account", "acct-p")
        printed = json.loads(out)
        self.assertIn("\n  \"homeRegion\": \"eu-central-1\",\n", out, "pretty-printed")
        api = self.api("GET", "/v1/products/pkCtlPut")
        self.assertEqual(printed, api)
        self.assertEqual((api["homeRegion"], api["homeInstance"], api["account"], api["locked"]),
                         ("eu-central-1", "iot-eu-1", "acct-p", False))

        # An update: every field as given, the rest back to defaults.
        self.ok("product", "put", "pkCtlPut", "--home-region", "us-east-1", "--home-instance", "iot-us-2", "--locked")
        api = self.api("GET", "/v1/products/pkCtlPut")
        self.assertEqual((api["homeRegion"], api["homeInstance"], api["account"], api["locked"]),
                         ("us-east-1", "iot-us-2", "default", True))
        self.assertEqual(json.loads(self.ok("product", "get", "pkCtlPut")), api)
        self.assertEqual(self.ok("product", "get", "pkCtlPut", "--json"),
                         self.h.admin("GET", "/v1/products/pkCtlPut").text() + "\n")

        self.refused("product", "put", "pkCtlPut", "--home-region", "mars-1", code="unknown_region")
        self.assertEqual(self.api("GET", "/v1/products/pkCtlPut"), api, "a refused put changed nothing")

    def test_unknown_product_is_exit_1_with_the_api_message(self):
        err = self.refused("product", "get", "pkNobody", code="product_not_found", message="no such product")
        self.assertIn("404", err)

    def test_devices_register_file_and_stdin(self):
        self.h.put_product("pkCtlReg")
        path = self.write("names.csv", "deviceName\nreg-0001\nreg-0002\n")
        rows = csv_rows(self.ok("devices", "register", "pkCtlReg", path))
        self.assertEqual(rows[0], ["productKey", "deviceName", "deviceSecret"])
        self.assertEqual([r[:2] for r in rows[1:]], [["pkCtlReg", "reg-0001"], ["pkCtlReg", "reg-0002"]])
        for r in rows[1:]:
            self.assertRegex(r[2], r"^[0-9a-f]{32}$")
        self.assertEqual(rows, self.registration_csv("pkCtlReg"), "the secrets printed are the ones in force")

        rows = csv_rows(self.ok("devices", "register", "pkCtlReg", "-",
                                stdin="deviceName,deviceSecret\nreg-0003,given-secret\n"))
        self.assertEqual(rows[1:], [["pkCtlReg", "reg-0003", "given-secret"]])
        self.assertEqual(self.api("GET", "/v1/devices/pkCtlReg/reg-0003")["status"], "inactive")

        self.refused("devices", "register", "pkCtlReg", path, code="device_exists")
        rc, out, err = self.ctl("devices", "register", "pkCtlReg", os.path.join(self.h.dir, "no-such.csv"))
        self.assertEqual((rc, out), (2, ""), err)
        self.assertIn("no-such.csv", err)

    def registration_csv(self, pk):
        """The newest registration record of PK, downloaded again, as rows."""
        reg = self.api("GET", "/v1/products/%s/registrations" % pk)["registrations"][0]
        r = self.h.admin("GET", "/v1/products/%s/registrations/%s.csv" % (pk, reg["id"]))
        self.assertEqual(r.status, 200, r)
        return csv_rows(r.text())

    def test_devices_register_count(self):
        self.h.put_product("pkCtlCnt")
        rows = csv_rows(self.ok("devices", "register", "pkCtlCnt", "--count", "5"))
        self.assertEqual(len(rows), 6, rows)
        names = [r[1] for r in rows[1:]]
        for n in names:
            self.assertRegex(n, r"^dev-[0-9a-f]{16}$")
            self.assertEqual(self.api("GET", "/v1/devices/pkCtlCnt/" + n)["deviceName"], n)
        self.assertEqual(len(set(names)), 5)
        reg = self.api("GET", "/v1/products/pkCtlCnt/registrations")["registrations"][0]
        self.assertEqual((reg["method"], reg["count"]), ("count", 5))
        self.assertEqual(rows, self.registration_csv("pkCtlCnt"))

    def test_device_get(self):
        out = self.ok("device", "get", "pkCtl", "ctl-0001")
        self.assertIn("\n  \"assignment\": {\n", out, "pretty-printed")
        self.assertEqual(json.loads(out), self.api("GET", "/v1/devices/pkCtl/ctl-0001"))
        # '@' and ':' are in device names: sent as they are.
        self.assertEqual(json.loads(self.ok("device", "get", "pkCtl", "ctl@dev:03"))["deviceName"], "ctl@dev:03")
        self.refused("device", "get", "pkCtl", "nobody-here", code="device_not_found")

    def test_resolve(self):
        # A device no batch here moves: it resolves to its product's home.
        out = self.ok("resolve", "pkCtl", "ctl@dev:03", "--ip", "192.0.2.7")
        api = self.api("GET", "/v1/devices/pkCtl/ctl@dev:03/resolve?ip=192.0.2.7")
        self.assertEqual(json.loads(out), api)
        self.assertEqual(api["address"], "192.0.2.7")
        self.assertEqual(api["chosen"]["region"], "cn-shanghai")
        self.assertEqual(api["reason"], "the product's home region")
        self.refused("resolve", "pkCtl", "ctl-0002", "--ip", "not-an-address", code="invalid_parameter")

    def test_auth_code(self):
        rc, out, err = self.ctl("auth-code", "acct-b")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^[0-9]{6}\n$")
        self.assertIn("300 s", err)
        self.assertIn("acct-b", err)
        # The code is real: it lets one batch move a device into acct-b, once.
        self.h.put_product("pkCtlX", account="acct-a")
        self.h.register("pkCtlX", ["x-0001", "x-0002"])
        path = self.write("cross.csv", "productKey,deviceName\npkCtlX,x-0001\n")
        code = out.strip()
        self.ok("batch", "create", path, "--target-region", "eu-central-1", "--target-account", "acct-b",
                "--auth-code", code, "--wait")
        self.assertEqual(self.api("GET", "/v1/devices/pkCtlX/x-0001")["assignment"]["account"], "acct-b")
        self.refused("batch", "create", path, "--target-region", "eu-central-1", "--target-account", "acct-b",
                     "--auth-code", code, code="invalid_auth_code")

    # -- batches

    def test_batch_from_upload_to_results(self):
        """The headline: a product, 5 devices, a batch to another region,
        followed until completed, its results."""
        self.ok("product", "put", "pkCtlFlow", "--home-region", "cn-shanghai", "--account", "acct-a")
        rows = csv_rows(self.ok("devices", "register", "pkCtlFlow", "--count", "5"))
        names = [r[1] for r in rows[1:]]
        self.assertEqual(len(names), 5)
        path = self.write("flow.csv", "productKey,deviceName\n" + "".join("pkCtlFlow,%s\n" % n for n in names))

        rc, out, err = self.ctl("batch", "create", path, "--strategy", "region", "--target-region", "eu-central-1",
                                "--wait")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^[0-9]+\n$", "stdout is the batch id alone")
        bid = out.strip()
        self.assertIn("batch %s: completed, 5/5 processed, 5 succeeded, 0 failed" % bid, err.splitlines())
        b = self.api("GET", "/v1/batches/" + bid)
        self.assertEqual((b["status"], b["total"], b["succeeded"], b["targetRegion"], b["targetInstance"]),
                         ("completed", 5, 5, "eu-central-1", "iot-eu-1"))
        for n in names:
            a = self.api("GET", "/v1/devices/pkCtlFlow/" + n)["assignment"]
            self.assertEqual((a["level"], a["region"], a["batchId"]), ("device", "eu-central-1", bid))

        out = self.ok("batch", "results", bid)
        self.assertEqual(out, self.h.admin("GET", "/v1/batches/%s/results" % bid).text())
        results = csv_rows(out)
        self.assertEqual(results[0], ["productKey", "deviceName", "result", "code", "message", "notify"])
        self.assertEqual([(r[0], r[1], r[2]) for r in results[1:]], [("pkCtlFlow", n, "success") for n in names])

        out = self.ok("batch", "status", bid)
        lines = out.splitlines()
        self.assertEqual(lines[0], "batch %s: completed, 5/5 processed, 5 succeeded, 0 failed" % bid)
        self.assertIn("strategy: region (devices) -> eu-central-1/iot-eu-1", lines)
        self.assertIn("created:  %s" % b["createdAt"], lines)
        self.assertEqual(json.loads(self.ok("batch", "status", bid, "--json")), self.api("GET", "/v1/batches/" + bid))

    def test_batch_nearest_from_stdin(self):
        rows = "productKey,deviceName\npkCtl,ctl-0002\n"
        out = self.ok("batch", "create", "-", "--strategy", "nearest", "--regions", "eu-central-1,us-east-1:iot-us-2",
                      stdin=rows)
        bid = out.strip()
        b = self.h.wait_batch(bid)
        self.assertEqual(b["strategy"], "nearest")
        self.assertEqual(b["candidates"], [{"region": "eu-central-1", "instance": "iot-eu-1"},
                                           {"region": "us-east-1", "instance": "iot-us-2"}])
        out = self.ok("batch", "status", bid)
        self.assertIn("strategy: nearest (devices) -> eu-central-1/iot-eu-1, us-east-1/iot-us-2", out.splitlines())

    def test_batch_create_refused_whole(self):
        path = self.write("bad.csv", "deviceName,productKey\npkCtl,ctl-0001\n")
        before = self.h.all_batch_ids()
        self.refused("batch", "create", path, "--target-region", "eu-central-1", code="invalid_header")
        good = self.write("good.csv", "productKey,deviceName\npkCtl,ctl-0001\n")
        self.refused("batch", "create", good, "--target-region", "mars-1", code="unknown_region")
        self.assertEqual(self.h.all_batch_ids(), before, "nothing written")

    def test_batch_status_watch_plain_lines(self):
        bid = self.h.create_batch(harness.csv_body([["pkCtl", "ctl-0001"], ["pkCtl", "nobody-1"]]),
                                  "targetRegion=us-east-1")["batchId"]
        out = self.ok("batch", "status", bid, "--watch")
        self.assertNotIn("\r", out)
        self.assertNotIn("\x1b", out)
        lines = out.splitlines()
        self.assertTrue(lines, out)
        for line in lines:
            m = LINE.match(line)
            self.assertIsNotNone(m, line)
            self.assertEqual(m.group(1), bid)
        self.assertEqual(len(lines), len(set(lines)), "a line only when something changed: %r" % lines)
        b = self.api("GET", "/v1/batches/" + bid)
        self.assertEqual(lines[-1], "batch %s: completed, 2/2 processed, %d succeeded, %d failed"
                         % (bid, b["succeeded"], b["failed"]))
        self.assertEqual((b["succeeded"], b["failed"]), (1, 1))

        out = self.ok("batch", "status", bid, "--watch", "--json")
        answers = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(answers[-1], b)

    def test_batch_list(self):
        for region in ("eu-central-1", "us-east-1"):
            self.h.distribute(harness.csv_body([["pkCtl", "ctl-0001"]]), "targetRegion=" + region)
        api = self.api("GET", "/v1/batches?limit=2")
        rc, out, err = self.ctl("batch", "list", "--limit", "2")
        self.assertEqual(rc, 0, err)
        lines = [LIST_LINE.match(line) for line in out.splitlines()]
        self.assertTrue(all(lines), out)
        self.assertEqual([LINE.match(m.group(1)).group(1) for m in lines], [b["batchId"] for b in api["batches"]])
        self.assertEqual([m.group(2) for m in lines], [b["createdAt"] for b in api["batches"]])
        self.assertIsNotNone(api["nextCursor"])
        self.assertIn("batch list --limit 2 --cursor %s" % api["nextCursor"], err)
        out = self.ok("batch", "list", "--limit", "2", "--cursor", api["nextCursor"])
        page2 = self.api("GET", "/v1/batches?limit=2&cursor=" + api["nextCursor"])
        self.assertEqual([LINE.match(LIST_LINE.match(line).group(1)).group(1) for line in out.splitlines()],
                         [b["batchId"] for b in page2["batches"]])
        self.assertEqual(json.loads(self.ok("batch", "list", "--json")), self.api("GET", "/v1/batches"))

    def test_batch_template(self):
        self.assertEqual(self.ok("batch", "template"), self.h.admin("GET", "/v1/batches/template.csv").text())

    def test_batch_retry_refused_unless_failed(self):
        bid = self.h.distribute(harness.csv_body([["pkCtl", "ctl-0002"]]), "targetRegion=eu-central-1")["batchId"]
        self.refused("batch", "retry", bid, code="batch_not_failed")
        self.refused("batch", "retry", "987654", code="batch_not_found")
        self.refused("batch", "status", "987654", code="batch_not_found")

    def test_stats(self):
        out = self.ok("stats")
        s = self.api("GET", "/v1/stats")
        lines = out.splitlines()
        d, b = s["devices"], s["batches"]
        self.assertEqual(lines[0], "devices: %d total, %d active, %d inactive" % (d["total"], d["active"],
                                                                                   d["inactive"]))
        self.assertEqual(lines[1], "activations: %d" % s["activations"])
        self.assertEqual(lines[2], "batches: %d initializing, %d running, %d completed, %d failed"
                         % (b["initializing"], b["running"], b["completed"], b["failed"]))
        by = {}
        for line in lines[4:]:
            region, n = line.split()
            by[region] = int(n)
        self.assertEqual(by, s["distributed"]["byRegion"])
        self.assertEqual(json.loads(self.ok("stats", "--json")), s)

    # -- the environment and the flags

    def test_flags_win_over_the_environment(self):
        good, bad = self.url(), "http://127.0.0.1:%d" % closed_port()
        self.ok("stats")  # both from the environment
        self.ok("stats", "--url", good, env={"BOOTSTRAPCTL_URL": bad})
        rc, _, err = self.ctl("stats", "--url", bad, env={"BOOTSTRAPCTL_URL": good})
        self.assertEqual(rc, 3, err)
        self.ok("--token", CTL_TOKEN, "stats", env={"BOOTSTRAPCTL_TOKEN": "wrong-token"})
        self.refused("stats", "--token", "wrong-token", code="unauthorized")
        self.refused("stats", token=False, code="unauthorized")
        self.ok("stats", "--token", CTL_TOKEN, token=False)
        self.ok("--url", good, "--token", CTL_TOKEN, "stats", url=False, token=False)

    def test_default_url(self):
        # Without a URL it asks the default admin listener, 127.0.0.1:8081.
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", 8081)) == 0:
                self.skipTest("something listens on 127.0.0.1:8081 here")
        rc, out, err = self.ctl("stats", url=False)
        self.assertEqual((rc, out), (3, ""), err)
        self.assertIn("8081", err)

    # -- exit codes

    def test_bad_usage_is_exit_2(self):
        cases = [
            ["bogus"], [], ["batch"], ["batch", "bogus"], ["stats", "--bogus"], ["--bogus", "stats"],
            ["product", "get"], ["product", "put", "pkCtl"], ["device", "get", "pkCtl"],
            ["resolve", "pkCtl", "ctl-0001"], ["devices", "register", "pkCtl"],
            ["devices", "register", "pkCtl", "f.csv", "--count", "3"], ["devices", "register", "pkCtl", "--count", "x"],
            ["batch", "create", "f.csv"], ["batch", "create", "f.csv", "--strategy", "nearest"],
            ["batch", "create", "f.csv", "--strategy", "sideways", "--target-region", "eu-central-1"],
            ["batch", "status", "abc"], ["batch", "status", "1", "2"], ["stats", "--timeout"],
            ["--url", "ftp://127.0.0.1", "stats"],
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.ctl(*args)
                self.assertEqual(rc, 2, (out, err))
                self.assertEqual(out, "")
                self.assertRegex(err, r"^bootstrapctl: .+\n")
                self.assertIn("usage:", err)
        self.assertIn("usage: bootstrapctl product put PK --home-region", self.ctl("product", "put", "pkCtl")[2])

    def test_unreachable_is_exit_3(self):
        rc, out, err = self.ctl("stats", "--url", "http://127.0.0.1:%d" % closed_port())
        self.assertEqual((rc, out), (3, ""), err)
        self.assertIn("cannot reach", err)
        # A listener that never answers: the timeout.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(8)
            rc, out, err = self.ctl("stats", "--timeout", "1", "--url", "http://127.0.0.1:%d" % s.getsockname()[1],
                                    timeout=20)
        self.assertEqual((rc, out), (3, ""), err)
        self.assertIn("timed out", err.lower())
        # TLS with a listener that speaks plain HTTP: the handshake fails.
        rc, out, err = self.ctl("stats", "--url", "https://127.0.0.1:%d" % self.h.admin_port)
        self.assertEqual((rc, out), (3, ""), err)

    # -- the token

    def test_token_never_printed(self):
        """Every kind of outcome, the token given by flag and by the
        environment: it is in no output (ctl() checks each run)."""
        closed = "http://127.0.0.1:%d" % closed_port()
        runs = [
            ["stats"], ["regions"], ["product", "get", "pkCtl"], ["product", "get", "pkNobody"],
            ["device", "get", "pkCtl", "ctl-0001", "--json"], ["batch", "list"], ["stats", "--url", closed],
            ["stats", "--url", "https://127.0.0.1:%d" % self.h.admin_port], ["bogus"], ["stats", "--help"],
            ["--help"], ["batch", "status", "987654"],
        ]
        for args in runs:
            with self.subTest(args=args, via="environment"):
                self.ctl(*args)
            with self.subTest(args=args, via="flag"):
                self.ctl("--token", CTL_TOKEN, *args, token=False)
        # A wrong token is not echoed either.
        wrong = CTL_TOKEN[::-1]
        rc, out, err = self.ctl("stats", "--token", wrong, token=False)
        self.assertEqual(rc, 1, err)
        self.assertNotIn(wrong, out + err)
        # A token that would break the header is refused before any request.
        rc, out, err = self.ctl("stats", env={"BOOTSTRAPCTL_TOKEN": CTL_TOKEN + "\r\nX-Evil: 1"})
        self.assertEqual(rc, 2, err)


class FailedBatch(CtlCase):
    """batch create --wait of a batch that ends failed exits 1; batch retry
    --wait puts it back to work and follows it to completed."""
    harness_args = {"config": harness.deep_merge(CONFIG, {"worker": {"chunk_size": 10, "claim_idle_ms": 100},
                                                          "redis": {"timeout_ms": 2000}})}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkCtlF")
        cls.names = ["f-%02d" % i for i in range(6)]
        cls.h.register("pkCtlF", [n for n in cls.names if n != "f-03"])

    def test_failed_then_retried(self):
        # f-03 is not registered: Redis refuses every step on its bucket.
        bucket = self.h.break_bucket("pkCtlF", "f-03")
        path = self.write("f.csv", "productKey,deviceName\n" + "".join("pkCtlF,%s\n" % n for n in self.names))
        rc, out, err = self.ctl("batch", "create", path, "--target-region", "eu-central-1", "--wait")
        self.assertEqual(rc, 1, err)
        bid = out.strip()
        self.assertRegex(bid, r"^[0-9]+$")
        b = self.api("GET", "/v1/batches/" + bid)
        self.assertEqual(b["status"], "failed", b)
        self.assertIn("batch %s: failed" % bid, err)
        self.assertIn("error: %s" % b["error"], err)
        self.assertIn("bootstrapctl batch retry %s" % bid, err)
        rc, out, err = self.ctl("batch", "status", bid, "--watch")
        self.assertEqual(rc, 1, "--watch of a failed batch exits 1: %r" % err)
        self.assertTrue(out.splitlines()[-1].startswith("batch %s: failed," % bid), out)

        self.h.redis("DEL", bucket)
        rc, out, err = self.ctl("batch", "retry", bid, "--wait")
        self.assertEqual(rc, 0, err)
        self.assertIn("batch %s: completed, 6/6 processed, 5 succeeded, 1 failed" % bid, err.splitlines())
        b = self.api("GET", "/v1/batches/" + bid)
        self.assertEqual((b["status"], b["processed"], b["succeeded"], b["failed"]), ("completed", 6, 5, 1))
        results = {r[1]: r[3] for r in csv_rows(self.ok("batch", "results", bid))[1:]}
        self.assertEqual(results, {n: ("device_not_found" if n == "f-03" else "") for n in self.names})


class AdminTlsHarness(harness.Harness):
    """A harness whose admin listener is HTTPS (admin.tls, the test pair)."""

    def healthy(self):
        try:
            r = harness.raw_request(self.admin_port, harness.build_request("GET", "/healthz"),
                                    tls=harness.client_context(), timeout=1)
            return r.status == 200
        except (OSError, harness.ConnectionClosed, ValueError):
            return False

    def admin(self, method, path, body=None, token=harness.TOKEN, content_type=None, headers=None,
              timeout=harness.SOCKET_TIMEOUT_S):
        hdrs = dict(headers or {}, Authorization="Bearer " + token)
        if content_type:
            hdrs["Content-Type"] = content_type
        return harness.raw_request(self.admin_port, harness.build_request(method, path, body, hdrs),
                                   tls=harness.client_context(), timeout=timeout)


class HttpsAdmin(CtlCase):
    @classmethod
    def make_harness(cls):
        return AdminTlsHarness(name=cls.__name__, tls=True, config=harness.deep_merge(
            CONFIG, {"admin": {"tls": {"cert": "ec.crt", "key": "ec.key"}}})).start()

    def url(self):
        return "https://127.0.0.1:%d" % self.h.admin_port

    def test_cacert(self):
        ca = os.path.join(self.h.dir, "ca.pem")
        out = self.ok("stats", "--json", "--cacert", ca)
        self.assertEqual(json.loads(out), self.api("GET", "/v1/stats"))
        self.ok("stats", env={"BOOTSTRAPCTL_CACERT": ca})
        # The flag wins over the environment.
        rc, _, err = self.ctl("stats", "--cacert", os.path.join(self.h.dir, "rsa.crt"),
                              env={"BOOTSTRAPCTL_CACERT": ca})
        self.assertEqual(rc, 3, err)

    def test_unverified_certificate_is_exit_3(self):
        rc, out, err = self.ctl("stats")
        self.assertEqual((rc, out), (3, ""), err)
        self.assertIn("certificate", err.lower())

    def test_insecure(self):
        out = self.ok("regions", "--json", "--insecure")
        self.assertEqual(json.loads(out), self.api("GET", "/v1/regions"))


if __name__ == "__main__":
    harness.main()
