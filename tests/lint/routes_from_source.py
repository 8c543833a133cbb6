"""The routes bootstrapd answers, read from its C sources.

Two kinds of routing are in the sources:

- Route tables: `const struct http_route NAME[] = { { path, prefix, methods,
  allow, metric, handler }, ... }` (include/http.h), matched in order by
  http.c: the first entry whose path equals the request's (or starts it, for
  a prefix entry) wins; a method outside the entry's mask answers 405, a mask
  of 0 leaves the method to the handler. server.c says which table serves
  which listener.
- Hand-written dispatch: the handler of a prefix entry (admin_v1 for `/v1/`,
  the `regionId` form's handler) and every function it hands the path to.

The tables are read as data. The dispatch code is *run*: a small interpreter
of the C subset those functions use (declarations, if/else, loops, goto to a
label of the function's body, the string functions that match paths, sscanf)
executes them on candidate paths built from the path literals, segment
literals and sscanf formats found in them, once per method. A run ends in
one of three ways: a "no such path" answer (a call with 404 and the
`not_found`/`not found` code or message), a 405 (a call with 405; the
`Allow` value it set is kept), or the root handler returning: the route
exists. Every other function is opaque and returns 1 (validators pass,
allocations succeed, parsers parse), so a run follows the routing, not the
data. Anything the interpreter does not know raises Unsupported naming the
file and line: a change to the dispatch that it cannot follow fails loudly
instead of being skipped.
"""

import itertools
import os
import re

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
PROBE = "_PROBE"  # a method no branch compares with (HTTP__PROBE)
PLACEHOLDER = "7"  # a path parameter's value in candidate paths


class Unsupported(Exception):
    """The interpreter met something it does not handle."""


class UndefinedBehaviour(Exception):
    """The code read an uninitialised variable or went past a buffer."""


class NoRoute(Exception):
    pass


class NotAllowed(Exception):
    def __init__(self, allow):
        Exception.__init__(self, allow)
        self.allow = allow


# ------------------------------------------------------------------ tokens

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+|\n)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<char>'(?:\\.|[^'\\\n])+')
  | (?P<number>0[xX][0-9a-fA-F]+[uUlL]*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[uUlLfF]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\+=|-=|\*=|/=|%=|&=|\^=|\|=|\#\#|[][{}()<>;:,.?!~+\-*/%&|^=#])
""", re.S | re.X)


class Tok:
    __slots__ = ("kind", "text", "line", "file")

    def __init__(self, kind, text, line, file):
        self.kind, self.text, self.line, self.file = kind, text, line, file

    def __repr__(self):
        return "%s:%d:%r" % (os.path.basename(self.file), self.line, self.text)


_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39, "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}


def c_unescape(body):
    out, i = bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(int(m.group(0), 16) & 0xFF)
            i += 2 + len(m.group(0))
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        else:
            out.append(_ESCAPES.get(n, ord(n)))
            i += 2
    return bytes(out)


def tokenize(text, path):
    """C tokens of TEXT, without comments and preprocessor lines (whose
    simple integer #defines are returned as well)."""
    toks, defines = [], {}
    lines = text.split("\n")
    kept, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("#"):
            full = line
            while full.endswith("\\") and i + 1 < len(lines):
                i += 1
                full = full[:-1] + " " + lines[i]
            m = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)\s+(.+)$", full)
            if m:
                defines[m.group(1)] = re.sub(r"/\*.*?\*/|//.*$", "", m.group(2)).strip()
            kept.append("")  # keep the line numbers
            for _ in range(full.count("\n")):
                kept.append("")
        else:
            kept.append(line)
        i += 1
    src = "\n".join(kept)
    pos, line = 0, 1
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise Unsupported("%s:%d: cannot tokenize %r" % (path, line, src[pos:pos + 20]))
        kind = m.lastgroup
        t = m.group(0)
        if kind not in ("ws", "comment"):
            toks.append(Tok(kind, t, line, path))
        line += t.count("\n")
        pos = m.end()
    return toks, defines


# ------------------------------------------------------------- C sources

class Function:
    def __init__(self, name, params, body, file, line):
        self.name, self.params, self.body, self.file, self.line = name, params, body, file, line
        self.ast = None
        self.labels = None

    @property
    def param_names(self):
        return [p[0] for p in self.params]

    def where(self):
        return "%s:%d" % (os.path.relpath(self.file, Sources.root), self.line)


def _match_close(toks, i, open_, close):
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == open_:
            depth += 1
        elif toks[j].text == close:
            depth -= 1
            if depth == 0:
                return j
    raise Unsupported("%r: no matching %s" % (toks[i], close))


def _split_top(toks, sep=","):
    """TOKS split at SEP outside brackets."""
    parts, cur, depth = [], [], 0
    for t in toks:
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        if t.text == sep and depth == 0 and t.kind == "punct":
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        parts.append(cur)
    return parts


class Sources:
    root = None

    def __init__(self, root):
        Sources.root = root
        self.root = root
        self.functions = {}  # name -> [Function]
        self.tables = {}  # name -> (file, line, [entry dict])
        self.counts = {}  # name -> token list of its initialiser
        self.aliases = {}  # name -> other table name
        self.defines = {}
        self._macros = {}
        self._rel = {}
        self.files = {}
        for folder in ("include", "src"):
            d = os.path.join(root, folder)
            for name in sorted(os.listdir(d)):
                if name.endswith((".c", ".h")):
                    path = os.path.join(d, name)
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                    toks, defines = tokenize(text, path)
                    self.defines.update(defines)
                    self.files[path] = toks
                    if name.endswith(".c"):
                        self._scan(toks, path)

    def rel(self, path):
        if path not in self._rel:
            self._rel[path] = os.path.relpath(path, self.root)
        return self._rel[path]

    def _scan(self, toks, path):
        i, depth = 0, 0
        while i < len(toks):
            t = toks[i]
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
            elif depth == 0 and t.text == "struct" and i + 3 < len(toks) and toks[i + 1].text == "http_route":
                self._scan_route_decl(toks, i, path)
            elif depth == 0 and t.kind == "ident" and i + 1 < len(toks) and toks[i + 1].text == "(" and \
                    (i == 0 or toks[i - 1].text not in ("=", ",", "(", "return")):
                close = _match_close(toks, i + 1, "(", ")")
                if close + 1 < len(toks) and toks[close + 1].text == "{":
                    end = _match_close(toks, close + 1, "{", "}")
                    params = self._params(toks[i + 2:close])
                    fn = Function(t.text, params, toks[close + 2:end], path, t.line)
                    self.functions.setdefault(t.text, []).append(fn)
                    i = end + 1
                    continue
                i = close
            elif depth == 0 and t.text == "size_t" and i + 2 < len(toks) and toks[i + 1].kind == "ident" and \
                    toks[i + 2].text == "=":
                end = i + 2
                while toks[end].text != ";":
                    end += 1
                self.counts[toks[i + 1].text] = toks[i + 3:end]
            i += 1

    def _scan_route_decl(self, toks, i, path):
        # struct http_route NAME[] = {...};  or  struct http_route *const NAME = OTHER;
        j = i + 2
        while toks[j].text in ("*", "const"):
            j += 1
        name = toks[j].text
        if toks[j + 1].text == "[" and toks[j + 2].text == "]" and toks[j + 3].text == "=":
            open_ = j + 4
            close = _match_close(toks, open_, "{", "}")
            entries = []
            for part in _split_top(toks[open_ + 1:close]):
                if not part:
                    continue
                if part[0].text != "{" or part[-1].text != "}":
                    raise Unsupported("%s:%d: a route table entry that is not { ... }" % (path, part[0].line))
                fields = _split_top(part[1:-1])
                if len(fields) != 6:
                    raise Unsupported("%s:%d: a route table entry of %d fields, expected 6 (include/http.h)"
                                      % (path, part[0].line, len(fields)))
                p = fields[0]
                if not p or any(x.kind != "string" for x in p):
                    raise Unsupported("%s:%d: a route path that is not a string literal" % (path, part[0].line))
                entries.append({
                    "path": b"".join(c_unescape(x.text[1:-1]) for x in p).decode(),
                    "prefix": self._bool(fields[1], path),
                    "methods": self._methods(fields[2], path),
                    "allow": None if fields[3][0].text == "NULL" else
                    b"".join(c_unescape(x.text[1:-1]) for x in fields[3]).decode(),
                    "handler": fields[5][-1].text,
                    "line": part[0].line,
                })
            self.tables[name] = (path, toks[i].line, entries)
        elif toks[j + 1].text == "=" and toks[j + 2].kind == "ident" and toks[j + 3].text == ";":
            self.aliases[name] = toks[j + 2].text
        elif toks[j + 1].text in (";", "[", ","):
            pass  # an extern declaration
        else:
            raise Unsupported("%s:%d: a struct http_route declaration not understood" % (path, toks[i].line))

    @staticmethod
    def _bool(field, path):
        t = "".join(x.text for x in field)
        if t in ("true", "1"):
            return True
        if t in ("false", "0"):
            return False
        raise Unsupported("%s:%d: prefix flag %r" % (path, field[0].line, t))

    @staticmethod
    def _methods(field, path):
        t = "".join(x.text for x in field)
        if t == "0":
            return None  # any: the handler decides
        out = set()
        for part in t.split("|"):
            m = re.match(r"^HTTP_M_([A-Z]+)$|^HTTP_M\(HTTP_([A-Z]+)\)$", part)
            if not m:
                raise Unsupported("%s:%d: method mask %r" % (path, field[0].line, t))
            out.add(m.group(1) or m.group(2))
        return out

    @staticmethod
    def _params(toks):
        if not toks or (len(toks) == 1 and toks[0].text == "void"):
            return []
        out = []
        for part in _split_top(toks):
            if len(part) == 1 and part[0].text == "...":
                out.append(("...", part))
                continue
            if any(x.text == "(" for x in part):
                # a function pointer: void (*fn)(void *)
                k = next(k for k, x in enumerate(part) if x.text == "(")
                name = next((x.text for x in part[k:] if x.kind == "ident"), "?")
                out.append((name, part))
                continue
            names = [k for k, x in enumerate(part) if x.kind == "ident"]
            # the declarator's name: the last identifier before any [ ].
            cut = next((k for k, x in enumerate(part) if x.text == "["), len(part))
            idents = [k for k in names if k < cut]
            if not idents:
                raise Unsupported("%r: a parameter without a name" % part)
            out.append((part[idents[-1]].text, part))
        return out

    def function(self, name, near=None):
        defs = self.functions.get(name, [])
        if near is not None:
            same = [f for f in defs if f.file == near]
            if same:
                return same[0]
        if len(defs) == 1:
            return defs[0]
        return None

    def table_entries(self, name):
        """The entries a table variable (or an alias of one, with its count)
        stands for."""
        base = self.aliases.get(name, name)
        if base not in self.tables:
            raise Unsupported("route table %s is not defined in src/" % name)
        return self.tables[base]

    def count(self, name):
        toks = self.counts.get(name)
        if toks is None:
            raise Unsupported("route count %s is not defined in src/" % name)
        text = "".join(t.text for t in toks)
        m = re.match(r"^sizeof\((\w+)\)/sizeof\(\1\[0\]\)$", text)
        if m:
            return None, m.group(1)  # the whole table
        if re.match(r"^\d+$", text):
            return int(text), None
        raise Unsupported("route count %s = %s not understood" % (name, text))

    def macro(self, name, seen=()):
        if not seen:
            if name not in self._macros:
                self._macros[name] = self._macro(name, ())
            return self._macros[name]
        return self._macro(name, seen)

    def _macro(self, name, seen):
        v = self.defines.get(name)
        if v is None or name in seen:
            return None
        expr = v
        for ident in set(re.findall(r"[A-Za-z_]\w*", v)):
            sub = self.macro(ident, seen + (name,))
            if sub is None:
                return None
            expr = re.sub(r"\b%s\b" % ident, str(sub), expr)
        expr = re.sub(r"(?<=\d)[uUlL]+", "", expr)
        if not re.match(r"^[\d\s()+\-*/%<>|&~^]+$", expr):
            return None
        try:
            return int(eval(expr.replace("/", "//"), {"__builtins__": {}}))  # digits and operators only
        except Exception:
            return None


# ---------------------------------------------------------------- parser

TYPE_WORDS = {"static", "const", "volatile", "extern", "register", "unsigned", "signed", "char", "short", "int",
              "long", "float", "double", "void", "bool", "_Bool", "struct", "enum", "union", "inline"}


def _is_typedef_name(name):
    return name.endswith("_t") or name in ("yajl_gen", "yajl_val", "redisReply", "redisContext", "FILE", "bool")


class Parser:
    def __init__(self, toks, where):
        self.toks = toks
        self.i = 0
        self.where = where

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def text(self, k=0):
        t = self.peek(k)
        return t.text if t else None

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text):
        t = self.peek()
        if t is None or t.text != text:
            raise Unsupported("%s: expected %r, found %r" % (self.where, text, t))
        return self.next()

    def fail(self, what):
        raise Unsupported("%s: %s at %r" % (self.where, what, self.peek()))

    # -- statements

    def block_items(self):
        items = []
        while self.i < len(self.toks):
            items.append(self.statement())
        return items

    def statement(self):
        t = self.peek()
        line = t.line
        w = t.text
        if w == "{":
            self.next()
            items = []
            while self.text() != "}":
                items.append(self.statement())
            self.next()
            return ("block", line, items)
        if w == ";":
            self.next()
            return ("empty", line)
        if w == "if":
            self.next()
            self.expect("(")
            cond = self.expression()
            self.expect(")")
            then = self.statement()
            other = None
            if self.text() == "else":
                self.next()
                other = self.statement()
            return ("if", line, cond, then, other)
        if w == "while":
            self.next()
            self.expect("(")
            cond = self.expression()
            self.expect(")")
            return ("while", line, cond, self.statement())
        if w == "do":
            self.next()
            body = self.statement()
            self.expect("while")
            self.expect("(")
            cond = self.expression()
            self.expect(")")
            self.expect(";")
            return ("do", line, body, cond)
        if w == "for":
            self.next()
            self.expect("(")
            init = None
            if self.text() != ";":
                init = self.declaration() if self.is_declaration() else ("expr", line, self.expression())
                if init[0] == "expr":
                    self.expect(";")
            else:
                self.next()
            cond = None if self.text() == ";" else self.expression()
            self.expect(";")
            step = None if self.text() == ")" else self.expression()
            self.expect(")")
            return ("for", line, init, cond, step, self.statement())
        if w == "return":
            self.next()
            value = None if self.text() == ";" else self.expression()
            self.expect(";")
            return ("return", line, value)
        if w == "goto":
            self.next()
            name = self.next().text
            self.expect(";")
            return ("goto", line, name)
        if w in ("break", "continue"):
            self.next()
            self.expect(";")
            return (w, line)
        if w in ("switch", "case", "default"):
            return ("unsupported", line, w, self.skip_statement())
        if t.kind == "ident" and self.text(1) == ":":
            self.next()
            self.next()
            return ("label", line, w)
        if self.is_declaration():
            return self.declaration()
        e = self.expression()
        self.expect(";")
        return ("expr", line, e)

    def skip_statement(self):
        depth = 0
        while self.i < len(self.toks):
            t = self.next()
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
                if depth == 0:
                    return None
            elif t.text == ";" and depth == 0:
                return None
        return None

    def is_declaration(self):
        t = self.peek()
        if t is None or t.kind != "ident":
            return False
        if t.text in TYPE_WORDS or _is_typedef_name(t.text):
            return True
        a = self.peek(1)
        if a is not None and a.kind == "ident":
            return True
        if a is not None and a.text == "*":
            j = 1
            while self.text(j) in ("*", "const"):
                j += 1
            n = self.peek(j)
            return n is not None and n.kind == "ident" and self.text(j + 1) in ("=", ",", ";", "[")
        return False

    def declaration(self):
        line = self.peek().line
        # the type: qualifiers, keywords, struct X, a typedef name
        base = []
        while True:
            t = self.peek()
            if t.text in ("struct", "enum", "union"):
                base.append(self.next().text)
                base.append(self.next().text)
            elif t.text in TYPE_WORDS or (not base and t.kind == "ident") or \
                    (t.kind == "ident" and _is_typedef_name(t.text) and not any(
                        b not in TYPE_WORDS for b in base)):
                base.append(self.next().text)
            else:
                break
        decls = []
        while True:
            pointer = False
            while self.text() in ("*", "const"):
                if self.next().text == "*":
                    pointer = True
            if self.text() == "(":
                self.fail("a function pointer declarator")
            name = self.next()
            if name.kind != "ident":
                raise Unsupported("%s: a declaration without a name at %r" % (self.where, name))
            dims = []
            while self.text() == "[":
                self.next()
                if self.text() == "]":
                    dims.append(None)
                else:
                    dims.append(self.expression())
                self.expect("]")
            init = None
            if self.text() == "=":
                self.next()
                if self.text() == "{":
                    start = self.i
                    end = _match_close(self.toks, self.i, "{", "}")
                    self.i = end + 1
                    init = ("initlist", self.toks[start].line, self.toks[start:end + 1])
                else:
                    init = self.assignment()
            decls.append((name.text, pointer, dims, init))
            if self.text() == ",":
                self.next()
                continue
            self.expect(";")
            break
        return ("decl", line, base, decls)

    # -- expressions

    def expression(self):
        e = self.assignment()
        while self.text() == ",":
            line = self.next().line
            e = ("comma", line, e, self.assignment())
        return e

    ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="}
    BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
              ("+", "-"), ("*", "/", "%")]

    def assignment(self):
        left = self.conditional()
        if self.text() in self.ASSIGN:
            op = self.next()
            right = self.assignment()
            return ("assign", op.line, op.text, left, right)
        return left

    def conditional(self):
        cond = self.binary(0)
        if self.text() == "?":
            line = self.next().line
            a = self.expression()
            self.expect(":")
            b = self.conditional()
            return ("cond", line, cond, a, b)
        return cond

    def binary(self, level):
        if level == len(self.BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.text() in self.BINARY[level] and self.peek().kind == "punct":
            op = self.next()
            right = self.binary(level + 1)
            left = ("bin", op.line, op.text, left, right)
        return left

    def is_type_start(self, k=0):
        t = self.peek(k)
        return t is not None and t.kind == "ident" and (t.text in TYPE_WORDS or _is_typedef_name(t.text) or
                                                          t.text in ("size_t", "ssize_t"))

    def type_name(self):
        words = []
        while self.text() != ")":
            words.append(self.next().text)
        return words

    def unary(self):
        t = self.peek()
        if t.text in ("!", "~", "-", "+", "*", "&") and t.kind == "punct":
            self.next()
            return ("unary", t.line, t.text, self.unary())
        if t.text in ("++", "--"):
            self.next()
            return ("preinc", t.line, t.text, self.unary())
        if t.text == "sizeof":
            self.next()
            if self.text() == "(" and self.is_type_start(1):
                self.next()
                self.type_name()
                self.expect(")")
                return ("sizeof_type", t.line)
            return ("sizeof", t.line, self.unary())
        if t.text == "(" and self.is_type_start(1):
            self.next()
            words = self.type_name()
            self.expect(")")
            return ("cast", t.line, words, self.unary())
        return self.postfix()

    def postfix(self):
        e = self.primary()
        while True:
            t = self.peek()
            if t is None:
                return e
            if t.text == "(":
                self.next()
                args = []
                if self.text() != ")":
                    args.append(self.assignment())
                    while self.text() == ",":
                        self.next()
                        args.append(self.assignment())
                self.expect(")")
                e = ("call", t.line, e, args)
            elif t.text == "[":
                self.next()
                idx = self.expression()
                self.expect("]")
                e = ("index", t.line, e, idx)
            elif t.text in (".", "->"):
                self.next()
                e = ("member", t.line, e, self.next().text)
            elif t.text in ("++", "--"):
                self.next()
                e = ("postinc", t.line, t.text, e)
            else:
                return e

    def primary(self):
        t = self.next()
        if t.kind == "ident":
            return ("name", t.line, t.text)
        if t.kind == "number":
            text = re.sub(r"[uUlL]+$", "", t.text)
            if re.match(r"^0[xX]", text):
                return ("num", t.line, int(text, 16))
            if re.match(r"^0[0-7]+$", text):
                return ("num", t.line, int(text, 8))
            if re.match(r"^\d+$", text):
                return ("num", t.line, int(text))
            return ("float", t.line, text)
        if t.kind == "string":
            data = c_unescape(t.text[1:-1])
            while self.peek() is not None and self.peek().kind == "string":
                data += c_unescape(self.next().text[1:-1])
            return ("str", t.line, data)
        if t.kind == "char":
            data = c_unescape(t.text[1:-1])
            return ("num", t.line, data[0] if data else 0)
        if t.text == "(":
            e = self.expression()
            self.expect(")")
            return e
        raise Unsupported("%s: unexpected %r" % (self.where, t))


# ------------------------------------------------------------ interpreter

class Buf:
    """A char array."""
    __slots__ = ("data",)

    def __init__(self, size, init=b""):
        if len(init) + 1 > size:
            size = len(init) + 1
        self.data = bytearray(size)
        self.data[:len(init)] = init


class Ptr:
    __slots__ = ("buf", "off")

    def __init__(self, buf, off=0):
        self.buf, self.off = buf, off

    def string(self):
        d = self.buf.data
        end = d.find(0, self.off)
        return bytes(d[self.off:end if end >= 0 else len(d)])

    def at(self, k):
        j = self.off + k
        if j < 0 or j >= len(self.buf.data):
            raise UndefinedBehaviour("read outside a buffer")
        return self.buf.data[j]

    def store(self, k, v):
        j = self.off + k
        if j < 0 or j >= len(self.buf.data):
            raise UndefinedBehaviour("write outside a buffer")
        self.buf.data[j] = v & 0xFF

    def __eq__(self, other):
        return isinstance(other, Ptr) and other.buf is self.buf and other.off == self.off

    def __hash__(self):
        return hash((id(self.buf), self.off))


class Arr2:
    """A two-dimensional char array: char seg[3][80]."""
    __slots__ = ("rows",)

    def __init__(self, n, m):
        self.rows = [Buf(m) for _ in range(n)]


class Sym:
    """An enumeration constant, a global, a method."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, Sym) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


class MethodSym(Sym):
    """The request's method: a run notes when a decision looks at it."""
    __slots__ = ()


class Opaque:
    """A value the interpreter does not know."""
    __slots__ = ("why",)

    def __init__(self, why="unknown"):
        self.why = why


class Uninit(Opaque):
    pass


class Ref:
    __slots__ = ("env", "name")

    def __init__(self, env, name):
        self.env, self.name = env, name


class Request:
    def __init__(self, path, method):
        self.path = Ptr(Buf(len(path) + 1, path.encode()))
        self.method = MethodSym("HTTP_" + method)


class RequestLine:
    def __init__(self, req):
        self.req = req


class _Return(Exception):
    def __init__(self, value):
        Exception.__init__(self)
        self.value = value


class _Goto(Exception):
    def __init__(self, label, line):
        Exception.__init__(self, label)
        self.label, self.line = label, line


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Where:
    """file:line, made only when a message needs it."""

    def __init__(self, src, fn, line):
        self.src, self.fn, self.line = src, fn, line

    def __str__(self):
        return "%s:%d" % (self.src.rel(self.fn.file), self.line)


def _bytes_of(v):
    if isinstance(v, Ptr):
        return v.string()
    if isinstance(v, Buf):
        return Ptr(v).string()
    return None


def _sscanf(s, fmt):
    """C's sscanf of S (bytes) with FMT (bytes): (count, [(kind, value)])
    where kind is 's' (bytes into a char array) or 'n'/'d' (an int)."""
    out, count, i, k = [], 0, 0, 0
    started = False  # a conversion was attempted
    while k < len(fmt):
        c = fmt[k]
        if c == ord("%"):
            k += 1
            if fmt[k] == ord("%"):
                if i < len(s) and s[i] == ord("%"):
                    i += 1
                    k += 1
                    continue
                break
            m = re.match(rb"(\*?)(\d*)(hh|h|ll|l|z|j)?([sdun\[])", bytes(fmt[k:]))
            if not m:
                raise Unsupported("sscanf conversion %r" % bytes(fmt[k - 1:]))
            skip, width, conv = bool(m.group(1)), int(m.group(2) or 0), m.group(4)
            k += len(m.group(0))
            if conv == b"n":
                if not skip:
                    out.append(("n", i))
                continue
            if conv == b"[":
                j = k + (1 if fmt[k:k + 1] == b"^" else 0)
                j += 1 if fmt[j:j + 1] == b"]" else 0  # a ']' first is in the set
                close = fmt.index(b"]", j)
                spec = bytes(fmt[k:close])
                k = close + 1
                negate = spec.startswith(b"^")
                spec = spec[1:] if negate else spec
                allowed = set()
                j = 0
                while j < len(spec):
                    if j + 2 < len(spec) and spec[j + 1] == ord("-"):
                        allowed.update(range(spec[j], spec[j + 2] + 1))
                        j += 3
                    else:
                        allowed.add(spec[j])
                        j += 1
                start = i
                if i >= len(s):
                    return (count if started else -1), out
                while i < len(s) and (not width or i - start < width) and ((s[i] in allowed) != negate):
                    i += 1
                started = True
                if i == start:
                    return count, out
            else:
                while i < len(s) and s[i] in b" \t\n\r\f\v":
                    i += 1
                if i >= len(s):
                    return (count if started else -1), out
                start = i
                started = True
                if conv == b"s":
                    while i < len(s) and (not width or i - start < width) and s[i] not in b" \t\n\r\f\v":
                        i += 1
                else:
                    if i < len(s) and s[i] in b"+-":
                        i += 1
                    while i < len(s) and (not width or i - start < width) and chr(s[i]).isdigit():
                        i += 1
                    if i == start or not chr(s[i - 1]).isdigit():
                        return count, out
            if not skip:
                out.append(("s" if conv in (b"s", b"[") else "d", bytes(s[start:i])))
                count += 1
            continue
        if c in b" \t\n\r\f\v":
            while i < len(s) and s[i] in b" \t\n\r\f\v":
                i += 1
            k += 1
            continue
        if i >= len(s):
            return (count if started else -1), out
        if s[i] != c:
            return count, out
        i += 1
        k += 1
    return count, out


class Run:
    """One request through the dispatch code."""

    def __init__(self, interp, request):
        self.interp = interp
        self.request = request
        self.allow = None
        self.stack = []  # the interpreted functions being run
        self.allow_in = None  # the function on the stack when Allow was set
        self.steps = 0
        self.trace = []  # every decision taken: (file, line, outcome)
        self.method_read = False


class Interpreter:
    def __init__(self, sources, dispatch):
        """DISPATCH(fn) -> True for functions to run rather than treat as
        opaque."""
        self.src = sources
        self.dispatch = dispatch

    def prepare(self, fn):
        if fn.ast is None:
            p = Parser(fn.body, fn.where())
            fn.ast = p.block_items()
            fn.labels = {}
            for k, st in enumerate(fn.ast):
                if st[0] == "label":
                    fn.labels[st[2]] = k
        return fn

    # -- calls

    def call(self, run, fn, args):
        self.prepare(fn)
        if len(args) != len(fn.params):
            raise Unsupported("%s: %s called with %d arguments" % (fn.where(), fn.name, len(args)))
        env = {}
        for (name, _), v in zip(fn.params, args):
            env[name] = v
        run.stack.append(fn)
        try:
            k = 0
            while k < len(fn.ast):
                try:
                    for st in fn.ast[k:]:
                        self.exec(run, fn, env, st)
                    return None
                except _Goto as g:
                    if g.label not in fn.labels:
                        raise Unsupported("%s:%d: goto %s: the label is not in the function's body"
                                          % (fn.file, g.line, g.label))
                    k = fn.labels[g.label]
        except _Return as r:
            return r.value
        finally:
            run.stack.pop()
        return None

    def exec(self, run, fn, env, st):
        run.steps += 1
        if run.steps > 200000:
            raise Unsupported("%s: too many steps (a loop that does not end?)" % fn.where())
        kind = st[0]
        if kind == "expr":
            self.eval(run, fn, env, st[2])
        elif kind == "decl":
            self.declare(run, fn, env, st)
        elif kind == "if":
            if self.truth(run, fn, self.eval(run, fn, env, st[2]), st[1]):
                self.exec(run, fn, env, st[3])
            elif st[4] is not None:
                self.exec(run, fn, env, st[4])
        elif kind == "block":
            for s in st[2]:
                self.exec(run, fn, env, s)
        elif kind == "return":
            raise _Return(None if st[2] is None else self.eval(run, fn, env, st[2]))
        elif kind == "goto":
            raise _Goto(st[2], st[1])
        elif kind in ("empty", "label"):
            pass
        elif kind == "while":
            while self.truth(run, fn, self.eval(run, fn, env, st[2]), st[1]):
                if not self.loop_body(run, fn, env, st[3]):
                    break
        elif kind == "do":
            while self.loop_body(run, fn, env, st[2]) and \
                    self.truth(run, fn, self.eval(run, fn, env, st[3]), st[1]):
                pass
        elif kind == "for":
            if st[2] is not None:
                self.exec(run, fn, env, st[2])
            while st[3] is None or self.truth(run, fn, self.eval(run, fn, env, st[3]), st[1]):
                if not self.loop_body(run, fn, env, st[5]):
                    break
                if st[4] is not None:
                    self.eval(run, fn, env, st[4])
        elif kind == "break":
            raise _Break()
        elif kind == "continue":
            raise _Continue()
        else:
            raise Unsupported("%s:%d: %s statement" % (fn.file, st[1], st[2] if kind == "unsupported" else kind))

    def loop_body(self, run, fn, env, body):
        """Runs a loop's body once: False after a break."""
        try:
            self.exec(run, fn, env, body)
        except _Break:
            return False
        except _Continue:
            pass
        return True

    def declare(self, run, fn, env, st):
        base = st[2]
        for name, pointer, dims, init in st[3]:
            is_char = "char" in base and not pointer
            if dims and is_char:
                sizes = [self.dim(run, fn, env, d) for d in dims]
                if len(dims) == 1:
                    data = b""
                    if init is not None and init[0] == "str":
                        data = init[2]
                        if sizes[0] is None:
                            sizes[0] = len(data) + 1
                    elif init is not None and init[0] != "initlist":
                        raise Unsupported("%s:%d: a char array initialised with an expression" % (fn.file, st[1]))
                    env[name] = Buf(sizes[0] or 4096, data)
                elif len(dims) == 2 and init is None:
                    env[name] = Arr2(sizes[0], sizes[1])
                else:
                    raise Unsupported("%s:%d: char array %s" % (fn.file, st[1], name))
            elif init is None:
                env[name] = Uninit("%s is not initialised" % name)
            elif init[0] == "initlist" or dims:
                env[name] = Opaque("array " + name)
            else:
                env[name] = self.eval(run, fn, env, init)

    def dim(self, run, fn, env, d):
        if d is None:
            return None
        v = self.eval(run, fn, env, d)
        return v if isinstance(v, int) else 4096

    # -- values

    def truth(self, run, fn, v, line):
        b = self._truth(run, fn, v, line)
        run.trace.append((fn.file, line, b))
        return b

    def _truth(self, run, fn, v, line):
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return v != 0
        if v is None:
            return False
        if isinstance(v, (Ptr, Buf, Arr2, Request, Ref)):
            return True
        if isinstance(v, Uninit):
            raise UndefinedBehaviour("%s:%d: %s" % (self.src.rel(fn.file), line, v.why))
        raise Unsupported("%s:%d: a condition on %s" % (self.src.rel(fn.file), line, getattr(v, "why", v)))

    def rvalue(self, v):
        if isinstance(v, Buf):
            return Ptr(v)
        return v

    def lookup(self, run, fn, env, name, line):
        if name in env:
            return env[name]
        if name in ("true",):
            return 1
        if name in ("false",):
            return 0
        if name == "NULL":
            return None
        m = self.src.macro(name)
        if m is not None:
            return m
        return Sym(name)

    def eval(self, run, fn, env, e):
        kind = e[0]
        if kind == "num":
            return e[2]
        if kind == "str":
            return Ptr(Buf(len(e[2]) + 1, e[2]))
        if kind == "name":
            return self.rvalue(self.lookup(run, fn, env, e[2], e[1]))
        if kind == "call":
            return self.eval_call(run, fn, env, e)
        if kind == "bin":
            return self.eval_bin(run, fn, env, e)
        if kind == "unary":
            return self.eval_unary(run, fn, env, e)
        if kind == "assign":
            return self.eval_assign(run, fn, env, e)
        if kind == "cond":
            if self.truth(run, fn, self.eval(run, fn, env, e[2]), e[1]):
                return self.eval(run, fn, env, e[3])
            return self.eval(run, fn, env, e[4])
        if kind == "index":
            base = self.eval(run, fn, env, e[2])
            idx = self.eval(run, fn, env, e[3])
            if isinstance(base, Arr2):
                if not isinstance(idx, int):
                    raise UndefinedBehaviour("%s:%d: an index that is not known" % (self.src.rel(fn.file), e[1]))
                return Ptr(base.rows[idx])
            if isinstance(base, Ptr):
                if not isinstance(idx, int):
                    if isinstance(idx, Uninit):
                        raise UndefinedBehaviour("%s:%d: %s" % (self.src.rel(fn.file), e[1], idx.why))
                    raise Unsupported("%s:%d: an index that is not known" % (self.src.rel(fn.file), e[1]))
                return base.at(idx)
            return Opaque("an element of an unknown array")
        if kind == "member":
            base = self.eval(run, fn, env, e[2])
            if isinstance(base, Request) and e[3] == "r":
                return RequestLine(base)
            if isinstance(base, RequestLine):
                if e[3] == "path":
                    return base.req.path
                if e[3] == "method":
                    return base.req.method
            return Opaque("member " + e[3])
        if kind == "cast":
            return self.eval(run, fn, env, e[3])
        if kind == "sizeof":
            inner = e[2]
            if inner[0] == "name" and isinstance(env.get(inner[2]), Buf):
                return len(env[inner[2]].data)
            if inner[0] == "name" and isinstance(env.get(inner[2]), Arr2):
                a = env[inner[2]]
                return len(a.rows) * len(a.rows[0].data)
            return 4096
        if kind == "sizeof_type":
            return 8
        if kind in ("preinc", "postinc"):
            target = e[3]
            old = self.eval(run, fn, env, target)
            if isinstance(old, Opaque) and not isinstance(old, Uninit):
                return old  # a counter in an object the interpreter does not model
            step = 1 if e[2] == "++" else -1
            new = self.add(run, fn, old, step, e[1])
            self.store(run, fn, env, target, new, e[1])
            return new if kind == "preinc" else old
        if kind == "comma":
            self.eval(run, fn, env, e[2])
            return self.eval(run, fn, env, e[3])
        if kind == "float":
            return Opaque("a float")
        raise Unsupported("%s:%d: expression %s" % (fn.file, e[1], kind))

    def add(self, run, fn, a, b, line):
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(a, Ptr) and isinstance(b, int):
            return Ptr(a.buf, a.off + b)
        if isinstance(b, Ptr) and isinstance(a, int):
            return Ptr(b.buf, b.off + a)
        if isinstance(a, Uninit) or isinstance(b, Uninit):
            raise UndefinedBehaviour("%s:%d: arithmetic on an uninitialised value" % (self.src.rel(fn.file), line))
        return Opaque("arithmetic on unknown values")

    def eval_bin(self, run, fn, env, e):
        op = e[2]
        if op == "&&":
            return 1 if (self.truth(run, fn, self.eval(run, fn, env, e[3]), e[1]) and
                         self.truth(run, fn, self.eval(run, fn, env, e[4]), e[1])) else 0
        if op == "||":
            return 1 if (self.truth(run, fn, self.eval(run, fn, env, e[3]), e[1]) or
                         self.truth(run, fn, self.eval(run, fn, env, e[4]), e[1])) else 0
        a = self.eval(run, fn, env, e[3])
        b = self.eval(run, fn, env, e[4])
        if op in ("==", "!="):
            eq = self.equal(run, fn, a, b, e[1])
            return 1 if eq == (op == "==") else 0
        if op == "+":
            return self.add(run, fn, a, b, e[1])
        if op == "-":
            if isinstance(a, Ptr) and isinstance(b, Ptr):
                if a.buf is not b.buf:
                    raise UndefinedBehaviour("%s:%d: pointers into different arrays subtracted"
                                             % (self.src.rel(fn.file), e[1]))
                return a.off - b.off
            if isinstance(a, Ptr) and isinstance(b, int):
                return Ptr(a.buf, a.off - b)
        if isinstance(a, Uninit) or isinstance(b, Uninit):
            raise UndefinedBehaviour("%s:%d: %s" % (self.src.rel(fn.file), e[1],
                                                    (a if isinstance(a, Uninit) else b).why))
        if not (isinstance(a, int) and isinstance(b, int)):
            if op in ("<", ">", "<=", ">="):
                raise Unsupported("%s:%d: %s compared" % (self.src.rel(fn.file), e[1],
                                                          getattr(a if not isinstance(a, int) else b, "why", "?")))
            return Opaque("arithmetic on unknown values")
        return self.arith(run, fn, op, a, b, e[1])

    @staticmethod
    def arith(run, fn, op, a, b, line):
        if op in ("/", "%") and b == 0:
            return Opaque("division by zero")
        ops = {"-": lambda: a - b, "*": lambda: a * b, "/": lambda: int(a / b), "%": lambda: a % b,
               "<": lambda: int(a < b), ">": lambda: int(a > b), "<=": lambda: int(a <= b),
               ">=": lambda: int(a >= b), "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b,
               "<<": lambda: a << b, ">>": lambda: a >> b, "+": lambda: a + b}
        if op not in ops:
            raise Unsupported("%s:%d: operator %s" % (fn.file, line, op))
        return ops[op]()

    def equal(self, run, fn, a, b, line):
        if isinstance(a, Uninit) or isinstance(b, Uninit):
            raise UndefinedBehaviour("%s:%d: %s" % (self.src.rel(fn.file), line,
                                                    (a if isinstance(a, Uninit) else b).why))
        if a is None or b is None:
            other = b if a is None else a
            if other is None or other == 0:
                return True
            if isinstance(other, (Ptr, int)):
                return False
            raise Unsupported("%s:%d: NULL compared with %s" % (self.src.rel(fn.file), line,
                                                                getattr(other, "why", other)))
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if isinstance(a, Sym) and isinstance(b, Sym):
            if isinstance(a, MethodSym) or isinstance(b, MethodSym):
                run.method_read = True
            return a == b
        if isinstance(a, Ptr) and isinstance(b, Ptr):
            return a == b
        raise Unsupported("%s:%d: %s compared with %s" % (self.src.rel(fn.file), line, getattr(a, "why", a),
                                                          getattr(b, "why", b)))

    def eval_unary(self, run, fn, env, e):
        op = e[2]
        if op == "&":
            target = e[3]
            if target[0] == "name" and target[2] in env:
                v = env[target[2]]
                if isinstance(v, Buf):
                    return Ptr(v)
                return Ref(env, target[2])
            return Opaque("an address")
        v = self.eval(run, fn, env, e[3])
        if op == "!":
            return 0 if self.truth(run, fn, v, e[1]) else 1
        if op == "*":
            if isinstance(v, Ptr):
                return v.at(0)
            if isinstance(v, Uninit):
                raise UndefinedBehaviour("%s:%d: %s" % (self.src.rel(fn.file), e[1], v.why))
            return Opaque("a dereference")
        if isinstance(v, int):
            return {"-": -v, "+": v, "~": ~v}[op]
        return Opaque("arithmetic on unknown values")

    def store(self, run, fn, env, target, value, line):
        if target[0] == "name":
            if target[2] not in env:
                raise Unsupported("%s:%d: assignment to %s, not a local" % (self.src.rel(fn.file), line, target[2]))
            env[target[2]] = value
        elif target[0] == "index":
            base = self.eval(run, fn, env, target[2])
            idx = self.eval(run, fn, env, target[3])
            if isinstance(base, Ptr) and isinstance(idx, int) and isinstance(value, int):
                base.store(idx, value)
            elif isinstance(base, Ptr):
                raise Unsupported("%s:%d: a store not understood" % (self.src.rel(fn.file), line))
        elif target[0] == "member":
            self.eval(run, fn, env, target[2])  # fields of objects not modelled
        elif target[0] == "unary" and target[2] == "*":
            p = self.eval(run, fn, env, target[3])
            if isinstance(p, Ptr) and isinstance(value, int):
                p.store(0, value)
        else:
            raise Unsupported("%s:%d: assignment to %s" % (self.src.rel(fn.file), line, target[0]))

    def eval_assign(self, run, fn, env, e):
        op, target = e[2], e[3]
        value = self.eval(run, fn, env, e[4])
        if op != "=":
            old = self.eval(run, fn, env, target)
            if isinstance(old, Opaque) and not isinstance(old, Uninit) and target[0] == "member":
                return old
            if op == "+=":
                value = self.add(run, fn, old, value, e[1])
            elif op == "-=" and isinstance(value, int):
                value = self.add(run, fn, old, -value, e[1])
            elif isinstance(old, int) and isinstance(value, int):
                value = self.arith(run, fn, op[:-1], old, value, e[1])
            else:
                raise Unsupported("%s:%d: %s on values not known" % (self.src.rel(fn.file), e[1], op))
        self.store(run, fn, env, target, value, e[1])
        return value

    # -- calls

    BUILTINS = {"strcmp", "strncmp", "strcasecmp", "strncasecmp", "strchr", "strrchr", "strlen", "sscanf",
                "memcpy", "memcmp", "strstr", "strspn", "strcspn"}

    def eval_call(self, run, fn, env, e):
        callee = e[2]
        if callee[0] != "name":
            raise Unsupported("%s:%d: a call through a pointer" % (self.src.rel(fn.file), e[1]))
        name = callee[2]
        args = [self.eval(run, fn, env, a) for a in e[3]]
        # What the answer is, found at the call that makes it.
        strings = [_bytes_of(a) for a in args]
        for k, s in enumerate(strings):
            if s == b"Allow" and k + 1 < len(args):
                allow = strings[k + 1]
                if allow is None:
                    raise Unsupported("%s:%d: an Allow value not known" % (self.src.rel(fn.file), e[1]))
                run.allow = allow.decode()
                run.allow_in = next((f for f in reversed(run.stack) if self.dispatch(f) == "router"), None)
                return None
        ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
        if 405 in ints:
            raise NotAllowed(run.allow)
        if 404 in ints and any(s in (b"not_found", b"not found") for s in strings):
            raise NoRoute()
        if name in self.BUILTINS:
            return self.builtin(run, fn, env, name, args, e[1])
        target = self.src.function(name, near=fn.file)
        if target is not None and self.dispatch(target):
            return self.call(run, target, args)
        return 1  # opaque: succeeds

    def builtin(self, run, fn, env, name, args, line):
        where = _Where(self.src, fn, line)

        def s(k):
            v = _bytes_of(args[k])
            if v is None:
                if isinstance(args[k], Uninit):
                    raise UndefinedBehaviour("%s: %s" % (where, args[k].why))
                return None
            return v

        if name in ("strcmp", "strcasecmp", "strncmp", "strncasecmp", "memcmp"):
            a, b = s(0), s(1)
            if a is None or b is None:
                raise Unsupported("%s: %s of a value not known" % (where, name))
            if name in ("strncmp", "strncasecmp", "memcmp"):
                n = args[2]
                if not isinstance(n, int):
                    raise Unsupported("%s: %s length not known" % (where, name))
                a, b = a[:n], b[:n]
            if name in ("strcasecmp", "strncasecmp"):
                a, b = a.lower(), b.lower()
            return (a > b) - (a < b)
        if name in ("strchr", "strrchr"):
            p = args[0]
            if not isinstance(p, Ptr) or not isinstance(args[1], int):
                raise Unsupported("%s: %s of a value not known" % (where, name))
            data = p.string()
            k = data.find(args[1]) if name == "strchr" else data.rfind(args[1])
            if args[1] == 0:
                k = len(data)
            return None if k < 0 else Ptr(p.buf, p.off + k)
        if name == "strstr":
            a, b = s(0), s(1)
            if a is None or b is None:
                raise Unsupported("%s: strstr of a value not known" % where)
            k = a.find(b)
            return None if k < 0 else Ptr(args[0].buf, args[0].off + k)
        if name in ("strspn", "strcspn"):
            a, b = s(0), s(1)
            if a is None or b is None:
                raise Unsupported("%s: %s of a value not known" % (where, name))
            n = 0
            while n < len(a) and ((a[n] in b) == (name == "strspn")):
                n += 1
            return n
        if name == "strlen":
            v = s(0)
            return Opaque("strlen of an unknown string") if v is None else len(v)
        if name == "memcpy":
            dst, src, n = args
            if isinstance(dst, Ptr) and isinstance(src, Ptr) and isinstance(n, int):
                for k in range(n):
                    dst.store(k, src.at(k))
            return dst
        if name == "sscanf":
            text, fmt = s(0), s(1)
            if text is None or fmt is None:
                raise Unsupported("%s: sscanf of a value not known" % where)
            count, outs = _sscanf(text, fmt)
            for (kind, value), target in zip(outs, args[2:]):
                if kind == "s":
                    if not isinstance(target, Ptr):
                        raise Unsupported("%s: sscanf into %r" % (where, target))
                    for k, ch in enumerate(value + b"\0"):
                        target.store(k, ch)
                else:
                    if not isinstance(target, Ref):
                        raise Unsupported("%s: sscanf %%%s into %r" % (where, kind, target))
                    target.env[target.name] = int(value) if kind == "d" else value
            return count
        raise Unsupported("%s: %s" % (where, name))


# ----------------------------------------------------------- the routes

def _literals(fn):
    """(path literals, segment literals, sscanf formats) of FN's body."""
    paths, segments, formats = set(), set(), set()
    toks = fn.body
    for k, t in enumerate(toks):
        if t.kind != "string":
            continue
        v = c_unescape(t.text[1:-1]).decode(errors="replace")
        call = None
        # the function this literal is an argument of
        depth = 0
        for j in range(k - 1, -1, -1):
            if toks[j].text == ")":
                depth += 1
            elif toks[j].text == "(":
                if depth == 0:
                    call = toks[j - 1].text if j > 0 else None
                    break
                depth -= 1
            elif toks[j].text in (";", "{", "}") and depth == 0:
                break
        if call == "sscanf" and "%" in v:
            formats.add((v, t.line))
        elif v.startswith("/") and "%" not in v:
            paths.add((v, t.line))
        elif call in ("strcmp", "strncmp") and re.match(r"^[A-Za-z0-9._@:-]+$", v):
            segments.add((v, t.line))
    return paths, segments, formats


def _expand_format(fmt, segments):
    """The piece lists a sscanf format of a path stands for: literal text,
    and each conversion either a parameter or one of SEGMENTS."""
    pieces = []
    for m in re.finditer(r"%(\*?)(\d*)(?:hh|h|ll|l|z|j)?(\[\^?\]?[^]]*\]|[sdun])|([^%]+)", fmt):
        if m.group(4):
            pieces.append([("lit", m.group(4))])
        elif m.group(3) == "n":
            continue
        elif m.group(3) in ("d", "u") or "0-9" in m.group(3):
            pieces.append([("param", PLACEHOLDER)])
        else:
            pieces.append([("param", PLACEHOLDER)] + [("lit", s) for s in sorted(segments)])
    return [list(p) for p in itertools.product(*pieces)]


def _template(pieces):
    return "".join("{}" if kind == "param" else text for kind, text in pieces)


def _concrete(pieces):
    return "".join(text for _, text in pieces)


class Finding:
    def __init__(self, listener, method, path, what):
        self.listener, self.method, self.path, self.what = listener, method, path, what

    def __str__(self):
        return "%s %s %s: %s" % (self.listener, self.method, self.path, self.what)


class SourceRoutes:
    """Every (listener, method, path template) the sources route, with the
    file each came from, and the findings met on the way."""

    def __init__(self, root):
        self.src = Sources(root)
        self.routes = {}  # (listener, method, template) -> set of "file" strings
        self.findings = []
        self.problems = []  # things that must fail the test
        self.per_file = {}  # file -> number of routes found in it
        self.expected_files = set()
        self.listeners = self._listeners()
        for listener, entries, table_file in self.listeners:
            self.expected_files.add(table_file)
            self._read_listener(listener, entries, table_file)
        for f in sorted(self.expected_files):
            if not self.per_file.get(f):
                self.problems.append("%s: no route found in a file that routes requests" % self.src.rel(f))

    # -- which table serves which listener

    def _listeners(self):
        server = os.path.join(self.src.root, "src", "server.c")
        with open(server, encoding="utf-8") as f:
            lines = f.read().split("\n")
        found = []
        for k, line in enumerate(lines):
            m = re.search(r"t->(\w+)\s*=\s*\(struct http_service\)\s*\{\s*(\w+)\s*,\s*(\w+)\s*,", line)
            if not m:
                continue
            svc, table, count = m.groups()
            prev = lines[k - 1].strip()
            if svc == "public_svc":
                listener = "public"
            elif svc == "admin_svc" and re.search(r"\bif\b.*==\s*SERVER_ROLE_WORKER", prev):
                listener = "worker"
            elif svc == "admin_svc" and (prev == "else" or not prev.startswith(("if", "else"))):
                listener = "admin"
            else:
                raise Unsupported("src/server.c:%d: which listener %s serves is not understood" % (k + 1, svc))
            file, _, entries = self.src.table_entries(table)
            n, whole = self.src.count(count)
            if whole is not None and whole != self.src.aliases.get(table, table):
                raise Unsupported("src/server.c:%d: %s counts %s, not %s" % (k + 1, count, whole, table))
            found.append((listener, entries if n is None else entries[:n], file))
        names = sorted(x[0] for x in found)
        if names != ["admin", "public", "worker"]:
            raise Unsupported("src/server.c: listeners found: %s" % names)
        return found

    # -- one listener's table

    def _add(self, listener, method, template, file):
        key = (listener, method, template)
        if key not in self.routes:
            self.per_file[file] = self.per_file.get(file, 0) + 1
        self.routes.setdefault(key, set()).add(self.src.rel(file))

    @staticmethod
    def _first_match(entries, path):
        for e in entries:
            if (path.startswith(e["path"]) if e["prefix"] else path == e["path"]):
                return e
        return None

    def _read_listener(self, listener, entries, table_file):
        if not entries:
            self.problems.append("%s: the %s listener's route table is empty" % (self.src.rel(table_file), listener))
        for e in entries:
            if not e["prefix"]:
                if e["methods"] is None:
                    # an exact path whose handler takes any method: run it.
                    self._run_root(listener, e, entries, [[("lit", e["path"])]])
                else:
                    for m in sorted(e["methods"]):
                        self._add(listener, m, e["path"], table_file)
                continue
            handler = self.src.function(e["handler"])
            if handler is None:
                self.problems.append("%s:%d: handler %s of prefix route %s not found in src/"
                                     % (self.src.rel(table_file), e["line"], e["handler"], e["path"]))
                continue
            self._run_root(listener, e, entries, None)

    def _dispatch_kind(self, fn):
        if fn.name in self._roots:
            return "router"
        if "path" in fn.param_names:
            return "router"
        if any(t.kind == "string" and t.text == '"Allow"' for t in fn.body):
            return "helper"
        return None

    def _reachable(self, root):
        """The functions the interpreter will run from ROOT: those given the
        path, and those that set an Allow header."""
        seen, todo = [], [root]
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.append(fn)
            for k, t in enumerate(fn.body):
                if t.kind == "ident" and k + 1 < len(fn.body) and fn.body[k + 1].text == "(":
                    callee = self.src.function(t.text, near=fn.file)
                    if callee is not None and callee not in seen and self._dispatch_kind(callee):
                        todo.append(callee)
        return seen

    def _run_root(self, listener, entry, entries, bases):
        root = self.src.function(entry["handler"])
        self._roots = {root.name}
        interp = Interpreter(self.src, self._dispatch_kind)
        fns = self._reachable(root)
        routers = [f for f in fns if self._dispatch_kind(f) == "router"]
        for f in routers:
            # A dispatch function that matches path literals must route something.
            if any(v.startswith("/") for v, _ in _literals(f)[0]) or _literals(f)[2]:
                self.expected_files.add(f.file)
        paths, segments, formats = set(), set(), set()
        for f in fns:
            p, s, fm = _literals(f)
            paths |= {(v, f.file, line) for v, line in p}
            segments |= {(v, f.file, line) for v, line in s}
            formats |= {(v, f.file, line) for v, line in fm}
        prefix = entry["path"]
        segment_values = sorted({v for v, _, _ in segments})
        if bases is None:
            bases = [[("lit", prefix)]]
            for v, _, _ in sorted(paths):
                if v.startswith(prefix) or prefix.startswith(v + "/") or v == prefix.rstrip("/"):
                    bases.append([("lit", v)])
            for v, _, _ in sorted(formats):
                if v.startswith(prefix):
                    bases.extend(_expand_format(v, segment_values))
        continuations = sorted({v for v, _, _ in paths if not v.startswith(prefix.rstrip("/"))})
        pieces = [("param", PLACEHOLDER)] + [("lit", s) for s in segment_values] + \
                 [("lit", c[1:]) for c in continuations]
        candidates = {}
        for base in bases:
            for depth in range(0, 4):
                for ext in itertools.product(pieces, repeat=depth):
                    path_pieces = list(base)
                    for kind, text in ext:
                        sep = "" if _concrete(path_pieces).endswith("/") else "/"
                        path_pieces = path_pieces + [("lit", sep), (kind, text)]
                    concrete = _concrete(path_pieces)
                    if not concrete.startswith(prefix) or self._first_match(entries, concrete) is not entry:
                        continue
                    candidates.setdefault(concrete, _template(path_pieces))
        methods = sorted(entry["methods"]) if entry["methods"] is not None else list(METHODS)
        groups = {}  # (method, decisions) -> [(template, concrete)]
        allow_files = {}  # (method, decisions) -> the file that answers the others 405
        allows = {}  # concrete -> {Allow values}
        ub = {}  # where -> [(method, path)]
        for concrete, template in sorted(candidates.items()):
            answered = {}
            for m in [PROBE] + methods:
                run = Run(interp, Request(concrete, m))
                try:
                    interp.call(run, root, [run.request, Opaque("the service's context")])
                    answered[m] = ("route", run)
                except NoRoute:
                    answered[m] = ("none", run)
                except NotAllowed as na:
                    answered[m] = ("405", run, na.allow)
                except UndefinedBehaviour as e:
                    ub.setdefault(str(e), []).append((m, concrete))
                    answered[m] = ("ub", run)
                except Unsupported as e:
                    self.problems.append("%s %s: %s" % (m, concrete, e))
                    return
                if m == PROBE and not run.method_read:
                    # The method was never looked at: every method goes the same way.
                    for other in methods:
                        answered[other] = answered[m]
                    break
            if entry["methods"] is None and answered[PROBE][0] == "route":
                self.problems.append("%s %s: answered whatever the method" % (listener, concrete))
            routed = [m for m in methods if answered[m][0] == "route"]
            for a in answered.values():
                if a[0] == "405":
                    allows.setdefault(concrete, set()).add(a[2])
            allow_in = next((a[1].allow_in.file for a in answered.values()
                             if a[0] == "405" and a[1].allow_in is not None), root.file)
            for m in routed:
                key = (m, tuple(answered[m][1].trace))
                groups.setdefault(key, []).append((template, concrete))
                allow_files[key] = allow_in
        used = set()
        for key, members in sorted(groups.items()):
            # The route of one way through the code: its most general path,
            # the fewest segments, then the most parameters.
            template, concrete = min(members, key=lambda tc: (tc[0].count("/"), -tc[0].count("{}"), tc[0]))
            used.update(c for _, c in members)
            self._add(listener, key[0], template, allow_files[key])
            listed = set()
            for allow in allows.get(concrete, ()):
                listed |= {x.strip() for x in (allow or "").split(",") if x.strip()}
            self._check_allow(listener, concrete, listed, groups)
        for where, hits in sorted(ub.items()):
            examples = sorted({p for _, p in hits}, key=lambda p: (len(p), p))
            self.findings.append(Finding(listener, "*", examples[0], "undefined behaviour, %s: what it answers "
                                         "depends on that (also %s)" % (where, ", ".join(examples[1:3]))))
        # Every literal that names a path or a segment must be part of some
        # route: otherwise the candidates missed a way the code matches paths.
        for v, f, line in sorted(paths):
            if v == prefix:
                continue
            if not any(v in c for c in used):
                self.problems.append("%s:%d: path literal %r is in no route found (a way of matching paths "
                                     "the reader does not follow?)" % (self.src.rel(f), line, v))
        for v, f, line in sorted(segments):
            if not any(("/" + v) in c or c.endswith(v) for c in used):
                self.problems.append("%s:%d: segment literal %r is in no route found" % (self.src.rel(f), line, v))
        for v, f, line in sorted(formats):
            if not any(re.match(_format_regex(v), c) for c in used):
                self.problems.append("%s:%d: sscanf format %r matches no route found" % (self.src.rel(f), line, v))

    def _check_allow(self, listener, concrete, listed, groups):
        """The Allow header of a path's 405 must list the methods it takes."""
        if not listed:
            return
        taken = {m for (m, _), ms in groups.items() if any(c == concrete for _, c in ms)}
        if taken != listed:
            f = Finding(listener, "*", concrete, "Allow says %s, the code takes %s"
                        % (", ".join(sorted(listed)), ", ".join(sorted(taken))))
            if str(f) not in {str(x) for x in self.findings}:
                self.findings.append(f)


def _format_regex(fmt):
    out = ""
    for m in re.finditer(r"%(\*?)(\d*)(?:hh|h|ll|l|z|j)?(\[\^?\]?[^]]*\]|[sdun])|([^%]+)", fmt):
        if m.group(4):
            out += re.escape(m.group(4))
        elif m.group(3) == "n":
            continue
        elif m.group(3) == "s":
            out += r"\S+"
        elif m.group(3) in ("d", "u"):
            out += r"[-+]?\d+"
        else:
            out += m.group(3) + "+"
    return "^" + out + "$"


if __name__ == "__main__":
    import sys
    import time
    t0 = time.monotonic()
    sr = SourceRoutes(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    for (listener, method, template), files in sorted(sr.routes.items()):
        print("%-7s %-7s %-50s %s" % (listener, method, template, ", ".join(sorted(files))))
    for f in sr.findings:
        print("finding:", f)
    for p in sr.problems:
        print("PROBLEM:", p)
    print("%d routes in %.1fs" % (len(sr.routes), time.monotonic() - t0))
