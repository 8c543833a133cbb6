"""No secret in any log: every line the daemons (and the brokers, with the
notify plugin) wrote during the whole suite, against every secret the suite
was handed or gave (device and product secrets, pre-auth tokens, admin tokens,
broker passwords, the secret key file). Runs last (tests/meson.build gives it
the lowest priority); the harness collects both in $BOOTSTRAPD_TEST_LOG_DIR."""

import os
import sys
import unittest
from urllib.parse import quote

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LOG_DIR = os.environ.get("BOOTSTRAPD_TEST_LOG_DIR", "")


def forms(secret):
    """The ways a secret could be written: as is, URL-encoded, in capitals."""
    out = {secret, quote(secret, safe=""), secret.upper()}
    return {f for f in out if len(f) >= 6}


def logs():
    if not LOG_DIR or not os.path.isdir(LOG_DIR):
        return []
    return sorted(os.path.join(LOG_DIR, n) for n in os.listdir(LOG_DIR) if n.endswith(".log"))


def secrets():
    try:
        with open(os.path.join(LOG_DIR, "secrets.txt")) as f:
            return sorted({line.rstrip("\n") for line in f if line.strip()})
    except OSError:
        return []


class SecretsInLogs(unittest.TestCase):
    def setUp(self):
        if not logs() and os.environ.get("BOOTSTRAPD_TEST_REQUIRE_LOGS") != "1":
            self.skipTest("no daemon logs collected in %r: run the whole suite" % LOG_DIR)

    def test_logs_and_secrets_were_collected(self):
        # The check below proves nothing without both (tests/run asks for them).
        files = logs()
        self.assertGreater(len(files), 20, "daemon logs collected in %s" % LOG_DIR)
        self.assertGreater(len(secrets()), 50, "secrets collected in %s" % LOG_DIR)
        written = sum(os.path.getsize(p) for p in files)
        self.assertGreater(written, 100000, "bytes of logs")

    def test_no_secret_in_any_log(self):
        wanted = {}
        for s in secrets():
            for f in forms(s):
                wanted[f] = s
        leaks = []
        for path in logs():
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
            for n, line in enumerate(text.splitlines(), 1):
                for form, s in wanted.items():
                    if form in line:
                        leaks.append("%s:%d: %s" % (os.path.basename(path), n,
                                                    line.replace(form, "<SECRET %d chars>" % len(s))[:300]))
        self.assertEqual(leaks[:20], [], "%d log lines hold a secret (shown masked)" % len(leaks))

    def test_the_check_finds_a_planted_secret(self):
        # The same matching over a line that does hold one.
        planted = "Zq9-planted-%s" % os.urandom(8).hex()
        line = "2026-12-01T00:00:00.000Z info admin: secret %s request_id=x" % quote(planted, safe="")
        self.assertTrue(any(f in line for f in forms(planted)))


if __name__ == "__main__":
    harness.main(need_redis=False)
