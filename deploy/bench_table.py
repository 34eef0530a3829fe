#!/usr/bin/env python3
"""The table of `deploy/local.sh bench`: every figure of one run, each with
its ratio against a reference measured in the same run (the box may be busy:
absolute figures move with the load, ratios much less).

    deploy/bench_table.py target/bench

Reads api.json (examples/api_load.rs), events.json (benches/events.rs),
reconcile.json (examples/reconcile_pass.rs), consent_latency.json
(benches/consent_latency.rs) and steps.txt (each step's exit code), prints
the table in Markdown and writes it to table.md and table.json beside them.
With a base (CALLGATE_BENCH_BASE: api-base-N.json and api-N.json, rounds
in turn) the table is this commit's last round, followed by old against new
for every api row, round by round.
A missing figure is shown as failed or not run, never left out.
"""

import json
import math
import pathlib
import sys


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(x, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)):
        return None
    return a / b


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
    steps = {}
    try:
        for line in (out / "steps.txt").read_text().splitlines():
            name, _, rc = line.rpartition(" ")
            steps[name] = rc
    except OSError:
        pass

    def step_note(step):
        rc = steps.get(step)
        if rc is None:
            return "not run"
        return "failed (exit %s)" % rc if rc != "0" else ""

    rounds = sorted(out.glob("api-[0-9]*.json"), key=lambda p: int(p.stem.split("-")[-1]))
    api = load(out / "api.json") or (load(rounds[-1]) if rounds else None) or {}
    scen = {s["name"]: s for s in api.get("scenarios", [])}
    failed = {f["name"]: f["error"] for f in api.get("failed", [])}

    def row(name):
        return scen.get(name)

    def missing(name):
        if name in failed:
            return "FAILED: " + failed[name][:160]
        return step_note("api") or "missing"

    rows = []

    def add(path, now, rat, goal, met=None):
        rows.append({"path": path, "now": now, "ratio": rat, "goal": goal, "met": met})

    health = row("GET /health")
    hp = health["per_sec"] if health else None
    add("`GET /health`", f"{fmt(hp)} req/s" if health else missing("GET /health"), "1", "—")

    tok = row("POST /calls/{id}/token")
    if tok:
        r = ratio(tok["per_sec"], hp)
        add("`POST /calls/{id}/token`", f"{fmt(tok['per_sec'])} req/s, p99 {fmt(tok['p99_ms'], 2)} ms",
            f"{fmt(r, 3)}× health", "≥ 0.3× health, p99 ≤ 5 ms",
            r is not None and r >= 0.3 and tok["p99_ms"] <= 5)
    else:
        add("`POST /calls/{id}/token`", missing("POST /calls/{id}/token"), "", "≥ 0.3× health, p99 ≤ 5 ms", False)

    life, floor = row("start+accept+end"), row("LiveKit CreateRoom+DeleteRoom")
    fp = floor["per_sec"] if floor else None
    if life:
        r = ratio(life["per_sec"], fp)
        fl = f"LiveKit's CreateRoom+DeleteRoom {fmt(fp)}/s, {api.get('concurrency')} in flight, same run" if floor \
            else "LiveKit floor: " + missing("LiveKit CreateRoom+DeleteRoom")
        add("start + accept + end", f"{fmt(life['per_sec'])} lifecycles/s (p99 {fmt(life['p99_ms'], 1)} ms)",
            f"{fmt(r, 2)}× ({fl})", "≥ 0.7× that floor", r is not None and r >= 0.7)
    else:
        add("start + accept + end", missing("start+accept+end"), "", "≥ 0.7× LiveKit's floor", False)

    work = api.get("work_per_lifecycle") or {}
    if work.get("statements") is not None:
        add("database work of one start + accept + end (alone)",
            f"{fmt(work['statements'])} statements, {fmt(work['transactions'])} transactions",
            "—", "≤ 20 statements", work["statements"] <= 20)
    else:
        add("database work of one start + accept + end (alone)",
            "n/a (pg_stat_statements)" if work else missing("work per lifecycle"), "", "≤ 20 statements", False)

    ack, handled = row("POST /webhooks/livekit"), row("handled (after the ack)")
    if ack:
        add("LiveKit webhooks acknowledged", f"{fmt(ack['per_sec'])} events/s (p99 {fmt(ack['p99_ms'], 1)} ms)",
            f"{fmt(ratio(ack['per_sec'], hp), 3)}× health", "≥ 5,000 events/s", ack["per_sec"] >= 5000)
    else:
        add("LiveKit webhooks acknowledged", missing("POST /webhooks/livekit"), "", "≥ 5,000 events/s", False)
    if handled and ack:
        r = ratio(handled["per_sec"], ack["per_sec"])
        add("LiveKit webhooks handled",
            f"{fmt(handled['per_sec'])} events/s (p50 {fmt(handled['p50_ms'] / 1000, 2)} s, "
            f"p99 {fmt(handled['p99_ms'] / 1000, 2)} s from ack to handled)",
            f"{fmt(r, 2)}× acknowledged", "≥ 0.9× acknowledged, sustained", r is not None and r >= 0.9)
    else:
        add("LiveKit webhooks handled", "missing (see the webhook scenario)", "", "≥ 0.9× acknowledged", False)

    events = load(out / "events.json")
    lat = (events or {}).get("latency", {})
    if "from_request" in lat:
        f = lat["from_request"]
        add("event, instance 2 → socket on instance 1", f"p50 {fmt(f['p50_ms'], 2)} ms, p99 {fmt(f['p99_ms'], 2)} ms",
            "—", "p99 ≤ 10 ms", f["p99_ms"] <= 10)
    else:
        add("event, instance 2 → socket on instance 1", lat.get("error", step_note("events") or "missing"),
            "", "p99 ≤ 10 ms", False)
    mem = (events or {}).get("memory", {})
    if "per_stream_kib" in mem:
        grew = (mem["vmrss_after_kib"] - mem["vmrss_before_kib"]) / 1024
        add(f"{mem['streams']:,} idle event streams", f"+{fmt(grew)} MiB ({fmt(mem['per_stream_kib'])} KiB each)",
            "—", "≤ 4 KiB each", mem["per_stream_kib"] <= 4)
    else:
        add("10,000 idle event streams", mem.get("error", step_note("events") or "missing"), "", "≤ 4 KiB each", False)

    rec = load(out / "reconcile.json")
    for p in (rec or {}).get("passes", []):
        per_min = p.get("calls_checked_per_minute")
        add(f"reconciler pass, {p['live_calls']:,} live calls ({p['real_rooms']:,} rooms real in LiveKit)",
            f"{fmt(p['pass_ms'], 0)} ms a pass, every call checked within {fmt(p['all_checked_within_s'], 1)} s",
            "—", "every live call checked ≥ once a minute", p["all_checked_within_s"] <= 60)
    if not (rec or {}).get("passes"):
        note = (rec or {}).get("failed") or step_note("reconcile") or "missing"
        add("reconciler pass at 1k / 10k live calls", "FAILED: " + note[:160] if rec else note, "",
            "every live call checked ≥ once a minute", False)

    consent = load(out / "consent_latency.json")
    if isinstance(consent, list) and consent:
        c = consent[0]
        add("consent bench", f"completes; accept → in force p95 {fmt(c['p95_ms'], 1)} ms (n={c['n']})", "—",
            "completes; accept → in force p95 ≤ 50 ms", c["p95_ms"] <= 50)
    else:
        add("consent bench", step_note("consent") or "missing", "", "completes; p95 ≤ 50 ms", False)

    machine = api.get("machine", {})
    lines = [
        f"machine: {machine.get('cpus', '?')} × {machine.get('model', '?')}, {machine.get('memory_gib', '?')} GiB, "
        f"load average {machine.get('loadavg_at_start', '?')} at start; {api.get('seconds_per_scenario', '?')} s "
        f"per scenario at concurrency {api.get('concurrency', '?')}",
        "",
        "| path | now | as a ratio | goal (same run, same box) | met |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['path']} | {r['now']} | {r['ratio']} | {r['goal']} | {met} |")
    lines += side_by_side(out, rounds)
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


def side_by_side(out, rounds):
    """Old and new, round by round: every api row's rate and p99, and the
    work of one lifecycle, with new/old."""
    base_rounds = [(load(out / f"api-base-{p.stem.split('-')[-1]}.json"), load(p)) for p in rounds]
    base_rounds = [(b, n) for b, n in base_rounds if b and n]
    if not base_rounds:
        return []
    try:
        base = (out / "base.txt").read_text().strip()
    except OSError:
        base = "base"
    lines = ["", f"old ({base}) against new (this commit), the same run, in turn (old first in odd rounds, new first in even ones):", "",
             "| row | round | old | new | new / old |", "|---|---|---|---|---|"]

    def by_name(report):
        return {s["name"]: s for s in report.get("scenarios", [])}

    names = []
    for b, n in base_rounds:
        for s in n.get("scenarios", []):
            if s["name"] not in names:
                names.append(s["name"])
    for name in names:
        for i, (b, n) in enumerate(base_rounds, 1):
            ob, nb = by_name(b).get(name), by_name(n).get(name)
            if not ob or not nb:
                lines.append(f"| {name} | {i} | {'missing' if not ob else ''} | {'missing' if not nb else ''} | |")
                continue
            unit = "/s"
            lines.append(f"| {name} | {i} | {fmt(ob['per_sec'])}{unit}, p99 {fmt(ob['p99_ms'], 1)} ms "
                         f"| {fmt(nb['per_sec'])}{unit}, p99 {fmt(nb['p99_ms'], 1)} ms "
                         f"| {fmt(ratio(nb['per_sec'], ob['per_sec']), 2)}× rate, "
                         f"{fmt(ratio(nb['p99_ms'], ob['p99_ms']), 2)}× p99 |")
    for key, what in (("statements", "statements per lifecycle"), ("transactions", "transactions per lifecycle")):
        for i, (b, n) in enumerate(base_rounds, 1):
            ow, nw = (b.get("work_per_lifecycle") or {}).get(key), (n.get("work_per_lifecycle") or {}).get(key)
            if ow is None and nw is None:
                continue  # not measured in this run (BENCH_SCENARIOS)
            lines.append(f"| {what} | {i} | {fmt(ow)} | {fmt(nw)} | {fmt(ratio(nw, ow), 2)}× |")
    return lines


if __name__ == "__main__":
    main()
