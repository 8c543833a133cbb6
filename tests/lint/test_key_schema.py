#!/usr/bin/env python3
"""docs/key-schema.md matches the binary: every row of its key table that
names a `bootstrapd --key` kind must describe the key the binary prints for
sample arguments (`<...>` placeholders stand for the values), and every kind
the binary knows is in the table. The binary builds its keys with schema.c,
so this ties the document to include/schema.h."""

import os
import re
import subprocess
import sys

ROOT = os.environ.get("BOOTSTRAPD_SOURCE_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BINARY = os.environ.get("BOOTSTRAPD") or os.path.join(ROOT, "build", "bootstrapd")
# Sample arguments per placeholder of the --key column.
SAMPLES = {"PK": "a1PK", "DN": "dev1", "SEQ": "12", "BROKER": "mqtt://b.example:1883", "RANDOM": "2839104",
           "IOTID": "10c" + "0" * 29,
           "UNIXTIME": "1796144400", "ID": "7"}
# What each <placeholder> of the key column may stand for.
PLACEHOLDERS = {"productKey": re.escape(SAMPLES["PK"]), "seq": SAMPLES["SEQ"], "G": "[0-9a-f]{3}",
                "bucket": "[0-9a-f]{5}", "broker": re.escape(SAMPLES["BROKER"]), "account": r"[^:]+",
                "code": r"\d{6}", "deviceName": re.escape(SAMPLES["DN"]), "random": SAMPLES["RANDOM"],
                "iotId": SAMPLES["IOTID"],
                "YYYYMMDD": "20261201", "id": "7"}
# Kinds the binary must know (schema_key_named()); an unknown kind must fail.
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|[^|]*\|[^|]*\|\s*(?:`([^`]*)`)?\s*\|\s*$")


def key_of(kind, args):
    r = subprocess.run([BINARY, "--key", kind, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    return r.returncode, r.stdout.decode().strip()


def pattern(doc_key):
    out, pos = "", 0
    for m in re.finditer(r"<(\w+)>", doc_key):
        out += re.escape(doc_key[pos:m.start()]) + PLACEHOLDERS[m.group(1)]
        pos = m.end()
    return "^" + out + re.escape(doc_key[pos:]) + "$"


def main():
    with open(os.path.join(ROOT, "docs", "key-schema.md")) as f:
        rows = [ROW.match(line) for line in f]
    rows = [m for m in rows if m and m.group(1).startswith("bd:")]
    problems, kinds = [], set()
    for m in rows:
        doc_key, spec = m.group(1), m.group(2)
        if not spec:
            continue
        kind, *params = spec.split()
        kinds.add(kind)
        rc, got = key_of(kind, [SAMPLES[p] for p in params])
        if rc != 0:
            problems.append("bootstrapd --key %s: refused (docs say it names %s)" % (spec, doc_key))
        elif not re.match(pattern(doc_key), got):
            problems.append("docs say %s for --key %s, the binary prints %s" % (doc_key, spec, got))
    # A device's keys share the group: the docs' <G> is the bucket's top bits.
    rc, dkey = key_of("device", [SAMPLES["PK"], SAMPLES["DN"]])
    rc2, ckey = key_of("counters", [SAMPLES["PK"], SAMPLES["DN"]])
    g = re.match(r"^bd:\{([0-9a-f]{3})\}:d:([0-9a-f]{5})$", dkey)
    if rc or rc2 or not g or int(g.group(1), 16) != int(g.group(2), 16) >> 10 or \
            not ckey.startswith("bd:{%s}" % g.group(1)):
        problems.append("a device's group is not its bucket's top 10 bits: %s, %s" % (dkey, ckey))
    if key_of("no-such-kind", [])[0] == 0 or key_of("device", ["only-one"])[0] == 0:
        problems.append("bootstrapd --key accepts a wrong kind or arguments")
    if len(kinds) < 15:
        problems.append("only %d kinds in the docs' table: %s" % (len(kinds), sorted(kinds)))
    for p in problems:
        print(p)
    print("%d keys of docs/key-schema.md checked against %s" % (len(rows), BINARY))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
