"""bootstrapd command line: --version, --help, exit codes, --check-config."""

import json
import os
import re
import socket
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def run(args, env=None, timeout=10):
    """Runs the daemon with ARGS; a run that does not end within TIMEOUT is
    killed and reported as a failure (e.g. it started serving)."""
    p = subprocess.Popen([harness.daemon_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=harness.daemon_env(env), start_new_session=True)
    harness._processes.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        raise AssertionError("bootstrapd %s still running after %ds (stdout %r, stderr %r)"
                             % (" ".join(args), timeout, out[-500:], err[-500:]))
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def project_version():
    with open(os.path.join(harness.source_root(), "meson.build")) as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    return m.group(1) if m else None


class Listening:
    """Holds 127.0.0.1 ports open (listening) so that a daemon that tried to
    bind them would fail."""

    def __init__(self, n):
        self.socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            s.listen(8)
            self.socks.append(s)
        self.ports = [s.getsockname()[1] for s in self.socks]

    def close(self):
        for s in self.socks:
            s.close()


class Base(unittest.TestCase):
    def setUp(self):
        self.held = Listening(3)
        self.h = harness.Harness(name=self.id())
        self.h.public_port, self.h.admin_port, self.h.redis_port = self.held.ports
        self.h.write_config()

    def tearDown(self):
        self.held.close()
        self.h.close()
        harness._harnesses.remove(self.h)

    def write(self, name, text):
        path = os.path.join(self.h.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def write_config(self, cfg):
        return self.write("config.json", json.dumps(cfg, indent=2))

    def check_config(self, path=None, env=None):
        return run(["--config", path or self.h.config_path, "--check-config"], env=env)

    def assertRejected(self, rc, err, *names):
        self.assertEqual(rc, 1, "expected exit 1 for an invalid configuration; stderr: %r" % err)
        for n in names:
            if isinstance(n, tuple):
                self.assertTrue(any(x in err for x in n), "stderr should name one of %r: %r" % (n, err))
            else:
                self.assertIn(n, err, "stderr should name %r" % n)


class CommandLine(Base):
    def test_version(self):
        rc, out, err = run(["--version"])
        self.assertEqual(rc, 0, err)
        version = project_version()
        self.assertIsNotNone(version)
        self.assertIn(version, out + err)

    def test_help(self):
        rc, out, err = run(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("--config", out + err)
        self.assertIn("--check-config", out + err)

    def test_unknown_option(self):
        rc, out, err = run(["--config", self.h.config_path, "--bogus-option"])
        self.assertEqual(rc, 2, (out, err))
        self.assertTrue(err.strip(), "a bad command line should say why on stderr")

    def test_missing_config(self):
        rc, out, err = run([])
        self.assertEqual(rc, 2, (out, err))
        self.assertTrue(err.strip())

    def test_config_without_argument(self):
        rc, out, err = run(["--config"])
        self.assertEqual(rc, 2, (out, err))

    def test_bogus_role(self):
        rc, out, err = run(["--config", self.h.config_path, "--role", "bogus"])
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("bogus", err)

    def test_config_file_missing(self):
        path = os.path.join(self.h.dir, "no-such-config.json")
        rc, out, err = run(["--config", path])
        self.assertRejected(rc, err, "no-such-config.json")

    def test_listen_address_in_use_is_startup_failure(self):
        # The public port is held by this test: start-up must fail with exit 1
        # and say which address, not hang or exit 0.
        rc, out, err = run(["--config", self.h.config_path], timeout=15)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn(str(self.h.public_port), out + err)


class CheckConfig(Base):
    def test_valid(self):
        # The listen ports in the file are held by this test: a --check-config
        # that opened its listeners would fail to bind.
        rc, out, err = self.check_config()
        self.assertEqual(rc, 0, err)

    def test_valid_flag_first(self):
        rc, out, err = run(["--check-config", "--config", self.h.config_path])
        self.assertEqual(rc, 0, err)

    def test_valid_with_tls_pairs(self):
        self.h.tls = {"legacy_device_ciphers": True}
        self.h.write_config()
        rc, out, err = self.check_config()
        self.assertEqual(rc, 0, err)

    def test_minimal_file(self):
        # Every key has a default: a minimal file must be valid.
        self.write("regions.json", json.dumps(harness.default_regions()))
        path = self.write("minimal.json", "{}\n")
        rc, out, err = self.check_config(path)
        self.assertEqual(rc, 0, err)

    def test_json_syntax_error_names_line(self):
        text = ('{\n'
                '  "public": {"listen": "127.0.0.1:18443"},\n'
                '  "admin": {"listen": "127.0.0.1:18081"},\n'
                '  "redis": {"url": "redis://127.0.0.1:16379/0"},\n'
                '  "threads": zero,\n'
                '  "regions": "regions.json"\n'
                '}\n')
        path = self.write("config.json", text)
        rc, out, err = self.check_config(path)
        self.assertRejected(rc, err)
        self.assertRegex(err, r"(?i)line\s*5\b|:5(:|\b)", "the message should give line 5")

    def test_unknown_key(self):
        cfg = self.h.config()
        cfg["redis"]["urll"] = cfg["redis"].pop("url")
        rc, out, err = self.check_config(self.write_config(cfg))
        self.assertRejected(rc, err, "urll")

    def test_unknown_top_level_key(self):
        cfg = self.h.config()
        cfg["thread"] = 2
        rc, out, err = self.check_config(self.write_config(cfg))
        self.assertRejected(rc, err, "thread")

    def test_threads_not_a_number(self):
        cfg = self.h.config()
        cfg["threads"] = "abc"
        rc, out, err = self.check_config(self.write_config(cfg))
        self.assertRejected(rc, err, "threads")

    def test_env_override_goes_through_the_same_checks(self):
        rc, out, err = self.check_config(env={"BOOTSTRAPD_THREADS": "abc"})
        self.assertRejected(rc, err, ("threads", "THREADS"))

    def test_regions_file_missing(self):
        cfg = self.h.config()
        cfg["regions"] = "nope-regions.json"
        rc, out, err = self.check_config(self.write_config(cfg))
        self.assertRejected(rc, err, "nope-regions.json")

    def test_regions_duplicate_id(self):
        regions = harness.default_regions()
        dup = json.loads(json.dumps(regions["regions"][1]))
        dup["instances"][0]["id"] = "iot-eu-2"
        regions["regions"].append(dup)
        self.write("regions.json", json.dumps(regions, indent=2))
        rc, out, err = self.check_config()
        self.assertRejected(rc, err, ("eu-central-1", "regions.json"))

    def test_regions_syntax_error(self):
        self.write("regions.json", '{"regions": [\n  {"id": "cn-shanghai",\n}\n')
        rc, out, err = self.check_config()
        self.assertRejected(rc, err, "regions.json")

    def test_tls_cert_missing(self):
        cfg = self.h.config()
        self.h.tls = True
        self.h.tls_config()  # copies the pairs into the folder
        cfg["public"]["tls"] = {"cert": "missing.crt", "key": "ec.key"}
        rc, out, err = self.check_config(self.write_config(cfg))
        self.assertRejected(rc, err, "missing.crt")


if __name__ == "__main__":
    harness.main(need_redis=False)
