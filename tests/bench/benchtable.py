"""The side-by-side table every script in tests/bench/ ends with: a figure,
bootstrapd's value, nginx's, and the ratio bootstrapd/nginx. With several
repetitions the values are medians and the ratio of each repetition follows.
Imported by the scripts' report code; standard library only."""

import statistics


def parse_rows(path):
    """Lines of "key=value ..." (a word without "=" is skipped) as dicts."""
    rows = []
    with open(path) as f:
        for line in f:
            rows.append(dict(w.split("=", 1) for w in line.split() if "=" in w))
    return rows


def num(v):
    """A figure for the table: 3 significant digits or so."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def ratio(a, b):
    # Below 0.01 (a system call nginx makes once per connection) a ratio says nothing.
    if a is None or b is None or abs(b) < 0.01:
        return None
    return a / b


def side_by_side(title, rows, out=None):
    """Prints rows of (figure, unit, bootstrapd values, nginx values); a value
    list may be empty (no such figure for that server) and a list of nginx
    values may be None (the figure has no nginx counterpart)."""
    lines = []
    width = max([len(r[0]) + len(r[1]) + 3 for r in rows] + [20])
    reps = max([len(r[2]) for r in rows] + [1])
    lines.append(title + (" (medians of %d repetitions; the ratio of each in brackets)" % reps if reps > 1 else ""))
    lines.append("%-*s %12s %12s %18s" % (width, "figure", "bootstrapd", "nginx", "bootstrapd/nginx"))
    for fig, unit, bd, ng in rows:
        label = fig + (" (%s)" % unit if unit else "")
        b = statistics.median(bd) if bd else None
        n = statistics.median(ng) if ng else None
        r = ratio(b, n)
        each = ""
        if ng and len(bd) > 1 and len(bd) == len(ng):
            each = " (" + " ".join(num(ratio(x, y)) + "×" for x, y in zip(bd, ng)) + ")"
        lines.append("%-*s %12s %12s %18s%s" % (width, label, num(b), "-" if ng is None else num(n),
                                                "-" if r is None else num(r) + "×", each))
    text = "\n".join(lines)
    print(text, file=out)
    return text
