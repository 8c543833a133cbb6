#!/usr/bin/env python3
"""Every key a Lua script touches comes through KEYS[] (Redis' scripting
rules; in a Redis Cluster an undeclared key is an error). Checks each
redis.call's key argument in src/lua/*.lua: KEYS[...] itself, or a local
bound to KEYS[...]. The scripts that still build keys from data are listed
in NOT_YET, and the list must be exact, so that converting one shortens it.
A name counts as bound to KEYS when a `local a, b = KEYS[1], KEYS[2]` binds
it or it is the value of a `for _, k in ipairs(KEYS)`."""

import os
import re
import sys

ROOT = os.environ.get("BOOTSTRAPD_SOURCE_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Scripts that still build keys from data they read: none any more.
NOT_YET = set()

CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*,\s*([^,)]+)")
# Commands whose key follows a subcommand (XINFO GROUPS key, XGROUP CREATE key ...).
SUBCOMMANDS = {"XINFO", "XGROUP", "OBJECT", "MEMORY"}
SUBCALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*,\s*'[A-Za-z]+'\s*,\s*([^,)]+)")
BOUND = re.compile(r"local\s+([\w\s,]+?)\s*=\s*(KEYS\[[^\n]*)")
LOOP = re.compile(r"for\s+\w+\s*,\s*(\w+)\s+in\s+ipairs\(KEYS\)")


def undeclared(text):
    bound = set(LOOP.findall(text))
    for names, values in BOUND.findall(text):
        names = [n.strip() for n in names.split(",")]
        values = [v.strip() for v in values.split(",")]
        bound.update(n for n, v in zip(names, values) if v.startswith("KEYS["))
    bad = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("--"):
            continue
        calls = [(c, k) for c, k in CALL.findall(line) if c.upper() not in SUBCOMMANDS]
        calls += [(c, k) for c, k in SUBCALL.findall(line) if c.upper() in SUBCOMMANDS]
        for cmd, key in calls:
            key = key.strip()
            if not (key.startswith("KEYS[") or key in bound):
                bad.append("%d: %s %s" % (line_no, cmd, key))
    return bad


def main():
    lua_dir = os.path.join(ROOT, "src", "lua")
    failing, problems = set(), []
    scripts = sorted(n for n in os.listdir(lua_dir) if n.endswith(".lua"))
    for name in scripts:
        with open(os.path.join(lua_dir, name)) as f:
            bad = undeclared(f.read())
        if bad:
            failing.add(name)
            if name not in NOT_YET:
                problems.append("%s touches keys it does not declare:\n  %s" % (name, "\n  ".join(bad)))
    for name in sorted(NOT_YET - failing):
        problems.append("%s declares every key now: remove it from NOT_YET" % name)
    # The checker itself must see an undeclared key.
    if (not undeclared("redis.call('HGET', 'bd:x', 'f')") or undeclared("local k = KEYS[1]\nredis.call('GET', k)")
            or undeclared("local a, b = KEYS[1], KEYS[2]\nredis.call('GET', b)")
            or not undeclared("local a, b = KEYS[1], 'x'\nredis.call('GET', b)")
            or undeclared("for i, k in ipairs(KEYS) do\nredis.call('GET', k)\nend")
            or undeclared("redis.call('XINFO', 'GROUPS', KEYS[1])")
            or not undeclared("redis.pcall('XGROUP', 'CREATE', 'bd:x', 'g', '$')")):
        problems.append("the checker is broken")
    for p in problems:
        print(p)
    print("%d scripts checked, %d not yet converted%s" % (len(scripts), len(NOT_YET),
          ": " + ", ".join(sorted(NOT_YET)) if NOT_YET else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
