"""The routes bootstrapd answers, read from its C route tables.

Two kinds of table:
- `struct http_route NAME[] = { { "/path", prefix, HTTP_M_GET | ..., "Allow", METRIC, fn }, ... }`:
  a listener's table (include/http.h). A prefix route ending in "/" takes one
  more path segment (the region id); the prefix route whose handler is
  `admin_v1` hands its paths to the admin tables below.
- `struct admin_route NAME[] = { { "/v1/pattern/{name}", HTTP_GET, fn }, ... }`:
  one resource's /v1 routes (include/adminreq.h), walked by `admin_v1` in the
  order its `admin_tables` names them.

Which table serves which listener is read from src/server.c's http_service
initialisers. Anything that does not fit these shapes is a problem, reported
with its file, so a new way of routing cannot pass unseen.
"""

import os
import re

HTTP_ROUTE = re.compile(r"const struct http_route (\w+)\[\] = \{(.*?)\n\};", re.S)
ADMIN_ROUTE = re.compile(r"(?:static )?const struct admin_route (\w+)\[\] = \{(.*?)\n\};", re.S)
ENTRY = re.compile(r"\{\s*(\"[^\"]*\"[^{}]*)\}")
STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
METHOD = re.compile(r"^HTTP_M_([A-Z]+)$")


class Sources:
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, "src", name)

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def files(self):
        d = os.path.join(self.root, "src")
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".c"))


def fields(entry):
    """The comma-separated fields of one initialiser, strings kept whole."""
    out, cur, quoted = [], "", False
    for i, ch in enumerate(entry):
        if ch == '"' and (i == 0 or entry[i - 1] != "\\"):
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class SourceRoutes:
    """routes: {(listener, method, template with {} segments): {handler, ...}};
    problems: what the reader could not follow; per_file: routes found in
    each file; expected_files: the files that must hold some."""

    def __init__(self, root):
        self.src = Sources(root)
        self.routes = {}
        self.problems = []
        self.findings = []
        self.per_file = {}
        self.http_tables = {}   # name -> (file, [(path, prefix, [methods], fn)])
        self.admin_tables = {}  # name -> (file, [(pattern, method, fn)])
        self.expected_files = set()
        for f in self.src.files():
            with open(f, encoding="utf-8") as fh:
                text = fh.read()
            for m in HTTP_ROUTE.finditer(text):
                self.http_tables[m.group(1)] = (f, self.read_http(f, m.group(2)))
            for m in ADMIN_ROUTE.finditer(text):
                self.admin_tables[m.group(1)] = (f, self.read_admin(f, m.group(2)))
        self.expected_files = {f for f, _ in list(self.http_tables.values()) + list(self.admin_tables.values())}
        if not self.http_tables:
            self.problems.append("src/: no struct http_route table found")
        self.listeners()

    def problem(self, f, what):
        self.problems.append("%s: %s" % (self.src.rel(f), what))

    def read_http(self, f, body):
        out = []
        for e in ENTRY.finditer(body):
            v = fields(e.group(1))
            if len(v) != 6 or not STRING.match(v[0]) or v[1] not in ("true", "false"):
                self.problem(f, "an http_route entry not of the form {\"/path\", prefix, methods, allow, metric, fn}: "
                             + e.group(0))
                continue
            methods = []
            if v[2] != "0":
                for part in v[2].split("|"):
                    m = METHOD.match(part.strip())
                    if not m:
                        self.problem(f, "methods %r of %s" % (v[2], v[0]))
                    else:
                        methods.append(m.group(1))
            out.append((STRING.match(v[0]).group(1), v[1] == "true", methods, v[5]))
        if not out:
            self.problem(f, "an http_route table with no entry")
        return out

    def read_admin(self, f, body):
        out = []
        for e in ENTRY.finditer(body):
            v = fields(e.group(1))
            m = METHOD.match(v[1].replace("HTTP_", "HTTP_M_", 1)) if len(v) == 3 else None
            if len(v) != 3 or not STRING.match(v[0]) or not m:
                self.problem(f, "an admin_route entry not of the form {\"/v1/pattern\", HTTP_METHOD, fn}: "
                             + e.group(0))
                continue
            out.append((STRING.match(v[0]).group(1), m.group(1), v[2]))
        if not out:
            self.problem(f, "an admin_route table with no entry")
        return out

    def admin_order(self):
        """The admin tables admin_v1 walks, from admin.c's admin_tables."""
        path = self.src.path("admin.c")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        m = re.search(r"\} admin_tables\[\] = \{(.*?)\n\};", text, re.S)
        if not m:
            self.problem(path, "no admin_tables list")
            return []
        names = re.findall(r"\{\s*(\w+),", m.group(1))
        for n in names:
            if n not in self.admin_tables:
                self.problem(path, "admin_tables names %s, which no file defines" % n)
        for n in self.admin_tables:
            if n not in names:
                self.problem(self.admin_tables[n][0], "admin_route table %s is not in admin_tables" % n)
        return [n for n in names if n in self.admin_tables]

    def add(self, listener, method, template, fn, f):
        key = (listener, method, "/".join("{}" if "{" in s else s for s in template.split("/")))
        self.routes.setdefault(key, set()).add(fn)
        self.per_file.setdefault(f, []).append(key)

    def serve(self, listener, table, count=None):
        f, entries = self.http_tables[table]
        for path, prefix, methods, fn in entries[:count]:
            if prefix and fn == "admin_v1":
                for name in self.admin_order():
                    af, aentries = self.admin_tables[name]
                    for pattern, method, afn in aentries:
                        if not pattern.startswith(path):
                            self.problem(af, "%s is not under the prefix %s" % (pattern, path))
                        self.add(listener, method, pattern, afn, af)
                continue
            if not methods:
                self.problem(f, "%s answers any method: the reader cannot tell which" % path)
                continue
            template = path + "{}" if prefix and path.endswith("/") else path
            if prefix and not path.endswith("/"):
                self.problem(f, "prefix route %s does not end in /" % path)
            for method in methods:
                self.add(listener, method, template, fn, f)

    def listeners(self):
        path = self.src.path("server.c")
        with open(path, encoding="utf-8") as fh:
            server = fh.read()
        found = re.findall(r"(\w+_svc) = \(struct http_service\)\{ (\w+), (\w+),", server)
        if not found:
            self.problem(path, "no http_service initialiser")
        for svc, table, count in found:
            if svc == "public_svc":
                listener = "public"
            elif table == "admin_ops_routes":
                listener = "worker"
            else:
                listener = "admin"
            if table == "admin_ops_routes":
                n = self.ops_count()
                if n is not None:
                    self.serve(listener, "admin_routes", n)
            elif table in self.http_tables:
                self.serve(listener, table)
            else:
                self.problem(path, "%s serves %s, which no file defines" % (svc, table))

    def ops_count(self):
        path = self.src.path("admin.c")
        with open(path, encoding="utf-8") as fh:
            m = re.search(r"const size_t admin_nops_routes = (\d+);", fh.read())
        if not m:
            self.problem(path, "admin_nops_routes is not a number")
            return None
        return int(m.group(1))
