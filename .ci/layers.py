#!/usr/bin/env python3
"""The crate's import graph: no circle among its modules, arrows pointing down.

Reads every `src/**/*.rs`, follows `crate::` and `super::` paths (comments,
string literals and `#[cfg(test)]` items left out) and checks:

1. no circle among the crate's modules (every file is a module);
2. the layer rules of ARCHITECTURE.md: a top-level module imports only
   modules of a lower layer, or itself (so `domain` imports nothing of the
   crate and nothing imports `app`);
3. only `livekit` names the LiveKit crates; only `http` names axum;
   only `store` holds SQL;
4. a use case changes a call through one unit of work (`calls::unit`): no
   other module locks a call's row (`lock_call*`) or settles LiveKit after
   its own commit (`enforce::settle*`), but the sites of `UNIT_EXCEPTIONS`,
   each as often as listed there (why: the module doc of `calls::unit`).

    python3 .ci/layers.py            # check; exit 1 with the offending lines
    python3 .ci/layers.py --graph    # print the module graph (file level)
    python3 .ci/layers.py --layers   # print the top-level graph
    python3 .ci/layers.py --stats    # files, largest file, functions over 60 lines
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Layer of each top-level module: higher may import lower, never the other way,
# and never a sibling of the same layer.
LAYERS: dict[str, int] = {
    "domain": 0,
    "config": 1,
    "clock": 1,
    "telemetry": 2,
    "metrics": 2,
    "infra": 2,
    "livekit": 3,
    "store": 3,
    "storage": 3,
    "realtime": 3,
    "calls": 4,
    "ingest": 5,
    "http": 6,
    "workers": 6,
    "app": 7,
}

# Crates only one layer may name.
ONLY: list[tuple[str, tuple[str, ...], str]] = [
    (r"\blivekit_(api|protocol)\b", ("livekit",), "the LiveKit crates"),
    # app serves the router; realtime::hub queues WebSocket frames.
    (r"\baxum::", ("http", "app", "realtime::hub"), "axum"),
]
# SQL only in store/ (a query macro or function call with a string).
SQL = re.compile(r"\bsqlx::(query|query_as|query_scalar)(_unchecked)?!?\s*[(<:]")

# Rule 4: what only `calls::unit` (and `store`, `calls::enforce`) does.
LOCKS = re.compile(r"\block_call(?:_nowait|_of_appointment)?\s*\(")
SETTLES = re.compile(r"\bsettle(?:_later|_soon)\s*\(|\benforce::settle\s*\(")
UNIT_OWNERS = ("store", "calls::unit", "calls::enforce")
# module: (locks, settles), each site with why it owns its transaction.
UNIT_EXCEPTIONS: dict[str, tuple[int, int]] = {
    # A batch of LiveKit events in one transaction, marked processed even
    # when the call does not exist (yet); spawns both the settlement and the end.
    "ingest::inbox": (2, 2),
    # Keyed by the appointment, whose call may not exist yet: its call (if
    # any) then its row; `open` locks the call it inserted; the no-show job
    # locks `nowait` in the job runner's transaction.
    "calls::appointments": (4, 2),
    # Jobs: the runner (`workers::jobs`) owns the transaction and settles after it.
    "workers::deadlines": (1, 0),
    "workers::jobs": (0, 1),
    "calls::recording": (2, 0),
}


def strip(text: str) -> str:
    """The code without comments, string contents and #[cfg(test)] items."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i : i + 10]) and not re.match(r"\w", text[i - 1 : i] or " "):
            m = re.match(r'r(#*)"', text[i:])
            assert m
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i : i + 4])
            assert m
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    return drop_test_items(code)


def drop_test_items(code: str) -> str:
    """Removes each item that follows `#[cfg(test)]` (to its `;` or matching `}`)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code
        i = m.end()
        while i < len(code) and code[i] not in "{;":
            i += 1
        if i < len(code) and code[i] == "{":
            depth = 0
            while i < len(code):
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
                if depth == 0:
                    break
        else:
            i += 1
        code = code[: m.start()] + code[i:]


def module_of(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts
    if parts in (("lib",), ("main",)):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → [`a::b`, `a::c::d`, `a::c::e`]."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    return [p for item in items if item for p in expand_use(prefix + item)]


def references(code: str, me: tuple[str, ...], is_mod_file: bool) -> list[tuple[tuple[str, ...], int]]:
    """Module paths this code names, with the line each is on."""
    refs = []
    for m in re.finditer(r"\buse\s+((?:crate|super)::[^;]+);", code):
        line = code.count("\n", 0, m.start()) + 1
        for path in expand_use(m.group(1)):
            refs.append((path, line))
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", code):
        line = code.count("\n", 0, m.start()) + 1
        refs.append((m.group(1), line))
    out = []
    for path, line in refs:
        parts = [p for p in path.split("::") if p and p not in ("self", "*")]
        if not parts:
            continue
        if parts[0] == "crate":
            base = parts[1:]
        else:
            # `super` of module `a::b` (file `a/b.rs` or `a/b/mod.rs`) is `a`.
            ups = 0
            while parts and parts[0] == "super":
                ups, parts = ups + 1, parts[1:]
            base = list(me[: max(len(me) - ups, 0)]) + parts
        out.append((tuple(base), line))
    return out


def stats() -> None:
    """Files, the largest file and the functions over 60 lines (test code included)."""
    files = sorted(SRC.rglob("*.rs"))
    sizes = sorted(((len(p.read_text().splitlines()), p) for p in files), reverse=True)
    long_fns = []
    for p in files:
        code = strip(p.read_text()) if False else p.read_text()
        lines = code.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?fn\s+\w+", line):
                depth, started, j = 0, False, i
                while j < len(lines):
                    for ch in lines[j]:
                        if ch == "{":
                            depth, started = depth + 1, True
                        elif ch == "}":
                            depth -= 1
                    if started and depth <= 0:
                        break
                    if not started and lines[j].rstrip().endswith(";"):
                        break
                    j += 1
                if started and j - i + 1 > 60:
                    name = re.search(r"fn\s+(\w+)", line).group(1)
                    long_fns.append((j - i + 1, f"{p.relative_to(ROOT)}::{name}"))
    print(f"files: {len(files)}, lines: {sum(n for n, _ in sizes)}")
    print(f"largest: {sizes[0][1].relative_to(ROOT)} ({sizes[0][0]} lines)")
    print(f"functions over 60 lines: {len(long_fns)}")
    for n, name in sorted(long_fns, reverse=True):
        print(f"  {n:4} {name}")


def main() -> int:
    if "--stats" in sys.argv:
        stats()
        return 0
    files = sorted(p for p in SRC.rglob("*.rs"))
    modules = {module_of(p): p for p in files}
    test_files = set()
    codes = {}
    for p in files:
        text = p.read_text()
        codes[module_of(p)] = (strip(text), text)
    # Files declared as `#[cfg(test)] mod x;` are test code.
    for mod, (_, text) in codes.items():
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            test_files.add(mod + (m.group(1),))

    def resolve(path: tuple[str, ...]) -> tuple[str, ...] | None:
        for k in range(len(path), 0, -1):
            if path[:k] in modules:
                return path[:k]
        return None

    edges: dict[tuple[str, ...], dict[tuple[str, ...], int]] = defaultdict(dict)
    problems = []
    for mod, (code, _) in codes.items():
        if mod in test_files or mod == ():
            continue
        path = modules[mod]
        for target, line in references(code, mod, path.name == "mod.rs"):
            t = resolve(target)
            if t is None or t == mod or t in test_files or mod[: len(t)] == t:
                continue
            edges[mod].setdefault(t, line)
        top = mod[0]
        name = "::".join(mod)
        for pattern, owners, what in ONLY:
            if not any(name == o or name.startswith(o + "::") for o in owners):
                for m in re.finditer(pattern, code):
                    line = code.count("\n", 0, m.start()) + 1
                    problems.append(f"{path.relative_to(ROOT)}:{line}: only {', '.join(owners)} may name {what}")
        if top != "store":
            for m in SQL.finditer(code):
                line = code.count("\n", 0, m.start()) + 1
                problems.append(f"{path.relative_to(ROOT)}:{line}: SQL outside store/")
        if not any(name == o or name.startswith(o + "::") for o in UNIT_OWNERS):
            allowed = UNIT_EXCEPTIONS.get(name, (0, 0))
            for pattern, what, n in ((LOCKS, "locks a call", allowed[0]), (SETTLES, "settles", allowed[1])):
                found = [code.count("\n", 0, m.start()) + 1 for m in pattern.finditer(code)]
                if len(found) != n:
                    lines = ", ".join(map(str, found)) or "none"
                    problems.append(
                        f"{path.relative_to(ROOT)} (lines {lines}): {what} {len(found)} times, {n} allowed: "
                        "use calls::Unit, or list the site in UNIT_EXCEPTIONS with why (module doc of calls::unit)"
                    )

    if "--graph" in sys.argv:
        for mod in sorted(edges):
            print("::".join(mod), "->", ", ".join(sorted("::".join(t) for t in edges[mod])))
        return 0

    # Layers.
    top_edges: dict[str, set[str]] = defaultdict(set)
    for mod, targets in edges.items():
        for t, line in targets.items():
            a, b = mod[0], t[0]
            if a == b:
                continue
            top_edges[a].add(b)
            la, lb = LAYERS.get(a), LAYERS.get(b)
            where = f"{modules[mod].relative_to(ROOT)}:{line}"
            if la is None:
                problems.append(f"{where}: top-level module `{a}` has no layer in .ci/layers.py")
            elif lb is None:
                problems.append(f"{where}: top-level module `{b}` has no layer in .ci/layers.py")
            elif lb >= la:
                problems.append(
                    f"{where}: `{'::'.join(mod)}` (layer {la}) imports `{'::'.join(t)}` (layer {lb}): arrows point down"
                )
    if "--layers" in sys.argv:
        for a in sorted(top_edges, key=lambda m: (-LAYERS.get(m, 99), m)):
            print(f"{a} ({LAYERS.get(a)}) -> {', '.join(sorted(top_edges[a], key=lambda m: -LAYERS.get(m, 99)))}")
        return 0

    # Circles among all modules (Tarjan).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in list(modules):
        if v not in index and v not in test_files:
            visit(v)
    for scc in sccs:
        names = sorted("::".join(m) for m in scc)
        problems.append(f"a circle of {len(names)} modules: {', '.join(names)}")

    n = len([m for m in modules if m not in test_files and m != ()])
    if problems:
        for p in problems:
            print(p)
        print(f"layers: {len(problems)} problem(s) among {n} modules (see ARCHITECTURE.md)")
        return 1
    print(f"layers: {n} modules, no circle, every arrow points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
