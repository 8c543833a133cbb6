#!/usr/bin/env python3
"""docs/openapi.yaml against the routes bootstrapd really answers.

- Source: the (listener, method, path) set the C route tables hold
  (routes_from_source.py reads the listeners' http_route tables and the
  admin API's admin_route tables) equals the document's, path parameters
  compared by position. The reader is also run on altered copies of the
  sources, to show that a new route, a renamed one, an entry it cannot read
  and a table the dispatcher does not walk are all caught.
- Live: a real redis-server, bootstrapd (role all) and a worker; every
  documented operation is sent and must not be answered "no such path"
  (404 with the listener's not-found body, not a 404 about a missing
  resource) nor 405, and its status must be one the document lists; every
  other method on a documented path must be 405 with an Allow naming
  exactly the documented ones; paths the document does not have must be
  "no such path".
- Structure: every $ref resolves, every path template's parameters are
  declared `in: path` (and only those), every operation has a summary and
  a response, operationIds are unique, every path names its listener, the
  `/v1` operations need the admin token and the others none.
"""

import os
import re
import shutil
import sys
import tempfile
import unittest
from urllib.parse import quote, urlencode

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.environ.get("BOOTSTRAPD_SOURCE_ROOT") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import routes_from_source as rfs  # noqa: E402

DOC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")
OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBED_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
# What a path parameter stands for in a live probe when the document gives no example.
FALLBACK = {"productKey": "a1PK", "deviceName": "dev1", "batchId": "7", "id": "7"}

_doc = None
_source = None


def doc():
    global _doc
    if _doc is None:
        with open(DOC_PATH, encoding="utf-8") as f:
            _doc = yaml.safe_load(f)
    return _doc


def source_routes():
    global _source
    if _source is None:
        _source = rfs.SourceRoutes(ROOT)
    return _source


def normalise(template):
    """A path template with each parameter segment as {}: names do not
    matter, positions do ({id}.csv is a parameter segment too)."""
    return "/".join("{}" if "{" in seg else seg for seg in template.split("/"))


def listener_of_url(d):
    return {s["url"]: s.get("x-listener") for s in d.get("servers", [])}


def operations(d):
    """(path, method, operation, [listener]) of every documented operation."""
    by_url = listener_of_url(d)
    out = []
    for path, item in d.get("paths", {}).items():
        for method in OPERATIONS:
            op = item.get(method)
            if op is None:
                continue
            servers = op.get("servers") or item.get("servers") or d.get("servers", [])
            out.append((path, method.upper(), op, [by_url.get(s.get("url")) for s in servers]))
    return out


def doc_routes(d):
    routes = {}
    for path, method, _, listeners in operations(d):
        for listener in listeners:
            routes[(listener, method, normalise(path))] = path
    return routes


def resolve_ref(d, ref):
    if not ref.startswith("#/"):
        raise KeyError("not a local reference: %s" % ref)
    node = d
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def deref(d, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        node = resolve_ref(d, node["$ref"])
        seen += 1
        if seen > 20:
            raise KeyError("a $ref loop")
    return node


def path_parameters(d, path, op):
    item = d["paths"][path]
    params = {}
    for p in (item.get("parameters") or []) + (op.get("parameters") or []):
        p = deref(d, p)
        params[(p["name"], p["in"])] = p
    return params


class Source(unittest.TestCase):
    def test_routes_match_the_sources(self):
        sr = source_routes()
        for f in sr.findings:
            sys.stderr.write("note (the code, not this document): %s\n" % f)
        if sr.problems:
            self.fail("the route reader could not follow the sources:\n  " + "\n  ".join(sr.problems))
        code = {k: v for k, v in sr.routes.items()}
        documented = doc_routes(doc())
        missing = sorted(set(code) - set(documented))
        extra = sorted(set(documented) - set(code))
        lines = []
        for listener, method, template in missing:
            lines.append("  the code routes %s %s on the %s listener (%s); docs/openapi.yaml does not have it"
                         % (method, template, listener, ", ".join(sorted(code[(listener, method, template)]))))
        for key in extra:
            lines.append("  docs/openapi.yaml has %s %s on the %s listener; the code does not route it"
                         % (key[1], documented[key], key[0]))
        if lines:
            self.fail("docs/openapi.yaml and the sources differ:\n" + "\n".join(lines))
        counts = {}
        for listener, _, _ in code:
            counts[listener] = counts.get(listener, 0) + 1
        sys.stderr.write("%d routes in the sources and in docs/openapi.yaml: %s\n"
                         % (len(code), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))

    def test_every_routing_file_has_routes(self):
        sr = source_routes()
        for f in sorted(sr.expected_files):
            self.assertTrue(sr.per_file.get(f), "%s: no route found" % sr.src.rel(f))
        names = {os.path.basename(f) for f in sr.per_file}
        # Where the routes are today: a file losing all of them means the reader lost its way.
        for name in ("bootstrap.c", "admin.c", "admin_batch.c", "admin_audit.c", "admin_reg.c", "admin_hooks.c"):
            self.assertIn(name, names, "no route found in src/%s" % name)


class SourceReaderCanFail(unittest.TestCase):
    """The reader run on altered copies of src/ and include/."""

    def altered(self, file, old, new):
        tmp = tempfile.mkdtemp(prefix="bootstrapd-routes-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for folder in ("src", "include"):
            shutil.copytree(os.path.join(ROOT, folder), os.path.join(tmp, folder),
                            ignore=shutil.ignore_patterns("lua"))
        path = os.path.join(tmp, "src", file)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertEqual(text.count(old), 1, "the alteration's anchor %r is not once in src/%s" % (old, file))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))
        return rfs.SourceRoutes(tmp)

    def test_a_new_table_entry(self):
        anchor = '{ "/auth/devicename", false,'
        sr = self.altered("bootstrap.c", anchor,
                          '{ "/auth/extra", false, HTTP_M_GET | HTTP_M_PUT, "GET, PUT", METRICS_BOOTSTRAP, '
                          'bootstrap_on_device_route },\n\t' + anchor)
        self.assertIn(("public", "GET", "/auth/extra"), sr.routes)
        self.assertIn(("public", "PUT", "/auth/extra"), sr.routes)

    def test_a_new_admin_route(self):
        anchor = '{ "/v1/regions", HTTP_GET, admin_regions },'
        sr = self.altered("admin.c", anchor, '{ "/v1/extra", HTTP_DELETE, admin_regions },\n\t' + anchor)
        self.assertIn(("admin", "DELETE", "/v1/extra"), sr.routes)
        self.assertNotIn(("admin", "GET", "/v1/extra"), sr.routes)
        self.assertEqual(sr.problems, [])

    def test_a_renamed_segment(self):
        sr = self.altered("admin_batch.c", '"/v1/batches/{batchId}/retry"', '"/v1/batches/{batchId}/rerun"')
        self.assertIn(("admin", "POST", "/v1/batches/{}/rerun"), sr.routes)
        self.assertNotIn(("admin", "POST", "/v1/batches/{}/retry"), sr.routes)

    def test_an_entry_it_cannot_follow(self):
        sr = self.altered("admin_audit.c", '{ "/v1/audit", HTTP_GET, admin_audit_get },',
                          '{ "/v1/audit", audit_method(), admin_audit_get },')
        self.assertTrue(any("admin_audit.c" in p for p in sr.problems), sr.problems)

    def test_a_table_admin_v1_does_not_walk(self):
        sr = self.altered("admin.c", "\t{ admin_hooks_routes, &admin_hooks_nroutes },\n", "")
        self.assertTrue(any("admin_hooks.c" in p for p in sr.problems), sr.problems)


class Structure(unittest.TestCase):
    def test_version_and_listeners(self):
        d = doc()
        self.assertRegex(str(d.get("openapi")), r"^3\.(0|1)\.\d+$")
        listeners = listener_of_url(d)
        self.assertEqual(sorted(listeners.values()), ["admin", "public", "worker"], "top-level servers")
        for path, method, _, on in operations(d):
            self.assertTrue(on, "%s %s: no servers" % (method, path))
            for listener in on:
                self.assertIn(listener, ("public", "admin", "worker"),
                              "%s %s: a server URL not among the top-level servers" % (method, path))

    def test_refs_resolve(self):
        d = doc()
        bad = []

        def walk(node, where):
            if isinstance(node, dict):
                if "$ref" in node:
                    try:
                        resolve_ref(d, node["$ref"])
                    except (KeyError, TypeError, IndexError) as e:
                        bad.append("%s: %s (%s)" % (where, node["$ref"], e))
                for k, v in node.items():
                    walk(v, where + "/" + str(k))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, where + "/" + str(i))

        walk(d, "#")
        if bad:
            self.fail("unresolved $ref:\n  " + "\n  ".join(bad))

    def test_path_parameters(self):
        d = doc()
        for path, method, op, _ in operations(d):
            names = re.findall(r"\{([^}/]+)\}", path)
            params = path_parameters(d, path, op)
            declared = sorted(n for n, where in params if where == "path")
            self.assertEqual(sorted(names), declared, "%s %s: path parameters in the template vs declared"
                             % (method, path))
            for n in names:
                self.assertTrue(params[(n, "path")].get("required"), "%s %s: {%s} not required" % (method, path, n))

    def test_operations(self):
        d = doc()
        ids = {}
        for path, method, op, listeners in operations(d):
            where = "%s %s" % (method, path)
            self.assertTrue(op.get("summary"), where + ": no summary")
            self.assertTrue(op.get("responses"), where + ": no response")
            for status in op["responses"]:
                self.assertRegex(str(status), r"^([1-5][0-9][0-9]|[1-5]XX|default)$", where)
            oid = op.get("operationId")
            self.assertTrue(oid, where + ": no operationId")
            self.assertNotIn(oid, ids, "operationId %s of %s is also %s's" % (oid, where, ids.get(oid)))
            ids[oid] = where
            security = op.get("security", d.get("security", []))
            if path.startswith("/v1/"):
                self.assertEqual(security, [{"adminToken": []}], where + ": the admin token")
                self.assertEqual(listeners, ["admin"], where + ": the admin API is on the admin listener only")
                self.assertIn("401", op["responses"], where)
            else:
                self.assertEqual(security, [], where + ": no token")
            for code in op["responses"]:
                deref(d, op["responses"][code])

    def test_openapi_validator(self):
        try:
            from openapi_spec_validator import validate
        except ImportError:
            self.skipTest("openapi-spec-validator is not installed")
        validate(doc())


# ------------------------------------------------------------------ live

def example_of(d, p):
    p = deref(d, p)
    if "example" in p:
        return str(p["example"])
    schema = deref(d, p.get("schema", {}))
    if "example" in schema:
        return str(schema["example"])
    if "default" in schema:
        return str(schema["default"])
    return FALLBACK.get(p["name"], "x")


def concrete(d, path, op):
    params = path_parameters(d, path, op)
    out = re.sub(r"\{([^}/]+)\}", lambda m: quote(example_of(d, params[(m.group(1), "path")]), safe=""), path)
    query = [(name, example_of(d, p)) for (name, where), p in sorted(params.items())
             if where == "query" and p.get("required")]
    return out + ("?" + urlencode(query) if query else "")


def body_of(d, op):
    rb = op.get("requestBody")
    if rb is None:
        return None, None
    rb = deref(d, rb)
    ctype, media = next(iter(rb["content"].items()))
    example = media.get("example")
    if example is None and media.get("examples"):
        example = deref(d, next(iter(media["examples"].values()))).get("value")
    if ctype == "application/json":
        return ctype, "{}"  # never an example: a subscription's URL would be called
    if ctype == "application/x-www-form-urlencoded":
        return ctype, urlencode(example) if isinstance(example, dict) else ""
    return ctype, example if isinstance(example, str) else ""


def template_regex(path):
    return "^" + re.sub(r"\\\{[^}/]+\\\}", "[^/]+", re.escape(path)) + "$"


class Live(harness.HarnessCase):
    """bootstrapd (role all: public and admin listeners) and a worker (its
    worker.listen), on one redis-server."""

    @classmethod
    def prepare(cls):
        cls.w = cls.h.start_worker()

    def send(self, listener, method, path, body=None, ctype=None, token=True):
        headers = {}
        if ctype:
            headers["Content-Type"] = ctype
        if listener == "public":
            return self.h.request(method, path, body, headers)
        if listener == "admin":
            return self.h.admin(method, path, body, token=harness.TOKEN if token else None, content_type=ctype)
        return harness.raw_request(self.w.port, harness.build_request(method, path, body, headers))

    @staticmethod
    def no_route(listener, r):
        """True when R is the listener's answer to a path it has no route for."""
        if r.status != 404:
            return False
        try:
            body = r.json()
        except ValueError:
            return False
        if listener == "public":
            return body.get("code") == 404
        return isinstance(body.get("error"), dict) and body["error"].get("code") == "not_found"

    def test_documented_routes_answer(self):
        d = doc()
        probed, failures = 0, []
        for path, method, op, listeners in operations(d):
            url = concrete(d, path, op)
            ctype, body = body_of(d, op)
            for listener in listeners:
                r = self.send(listener, method, url, body, ctype)
                probed += 1
                what = "%s %s on the %s listener: %d %r" % (method, url, listener, r.status, r.body[:160])
                if self.no_route(listener, r):
                    failures.append(what + " (no such path)")
                elif r.status == 405:
                    failures.append(what + " (method not allowed)")
                elif str(r.status) not in op["responses"] and "default" not in op["responses"]:
                    failures.append(what + " (a status the document does not list)")
        if failures:
            self.fail("documented routes the service does not answer as documented:\n  " + "\n  ".join(failures))
        self.assertEqual(probed, len(doc_routes(d)))

    def test_other_methods_are_405(self):
        d = doc()
        failures = []
        by_path = {}
        for path, method, op, listeners in operations(d):
            for listener in listeners:
                by_path.setdefault((listener, path), {})[method] = op
        for (listener, path), ops in sorted(by_path.items()):
            any_op = next(iter(ops.values()))
            url = concrete(d, path, any_op)
            for method in PROBED_METHODS:
                if method in ops:
                    continue
                r = self.send(listener, method, url)
                allow = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
                if r.status != 405:
                    failures.append("%s %s on the %s listener: %d, not 405 (%r)" % (method, url, listener,
                                                                                   r.status, r.body[:120]))
                elif allow != set(ops):
                    failures.append("%s %s on the %s listener: Allow %r, the document has %s"
                                    % (method, url, listener, r.header("Allow"), ", ".join(sorted(ops))))
        if failures:
            self.fail("undocumented methods on documented paths:\n  " + "\n  ".join(failures))

    def test_undocumented_paths_are_not_found(self):
        d = doc()
        documented = [(listener, path) for path, _, _, ls in operations(d) for listener in ls]
        probes = [
            ("public", "/v1/nope"), ("public", "/nope"), ("public", "/v1/regions"), ("public", "/healthz"),
            ("public", "/auth/bootstrap/regionId/"), ("public", "/auth/bootstrap/regionId/a/b"),
            ("public", "/auth/bootstrapx"), ("public", "/auth/register/device/x"),
            ("admin", "/v1/nope"), ("admin", "/nope"), ("admin", "/auth/bootstrap"), ("admin", "/v1"),
            ("admin", "/v1/products/a1PK/nope"), ("admin", "/v1/batches/7/nope"), ("admin", "/v1/devices/a1PK"),
            ("admin", "/v1/devices/a1PK/dev1/nope"), ("admin", "/v1/statsx"), ("admin", "/v1/products/a1PK/x/y"),
            ("worker", "/v1/regions"), ("worker", "/auth/bootstrap"), ("worker", "/nope"),
        ]
        failures = []
        for listener, path in probes:
            for l2, p2 in documented:
                self.assertFalse(l2 == listener and re.match(template_regex(p2), path),
                                 "%s on the %s listener is documented (%s): not a probe of an unknown path"
                                 % (path, listener, p2))
            for method in ("GET", "POST"):
                r = self.send(listener, method, path)
                if not self.no_route(listener, r):
                    failures.append("%s %s on the %s listener: %d %r" % (method, path, listener, r.status,
                                                                         r.body[:120]))
        if failures:
            self.fail("paths the document does not have, answered otherwise than \"no such path\":\n  " +
                      "\n  ".join(failures))

    def test_admin_routes_need_the_token(self):
        d = doc()
        for path, method, op, listeners in operations(d):
            if "admin" not in listeners or not path.startswith("/v1/"):
                continue
            r = self.send("admin", method, concrete(d, path, op), token=False)
            self.assertEqual(r.status, 401, "%s %s without the token: %d" % (method, path, r.status))
            self.assertEqual(r.json()["error"]["code"], "unauthorized")


if __name__ == "__main__":
    harness.main()
