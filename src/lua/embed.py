#!/usr/bin/env python3
"""Writes a C file defining `const char NAME[]` for each Lua script given:
embed.py OUT.c name=path.lua ... (used by meson at build time)."""
import sys

out = sys.argv[1]
with open(out, "w") as f:
    f.write("/* Generated from the scripts in src/lua by src/lua/embed.py; do not edit. */\n")
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        with open(path, "rb") as src:
            text = src.read().decode("utf-8")
        f.write("extern const char %s[];\nconst char %s[] =\n" % (name, name))
        for line in text.splitlines():
            esc = line.replace("\\", "\\\\").replace('"', '\\"')
            f.write('\t"%s\\n"\n' % esc)
        f.write(";\n")
