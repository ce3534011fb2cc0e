"""Tables of one bench/compare.sh run, in Markdown, on stdout; with
--html FILE also an HTML page with one bar chart per metric (every server
side by side, Ferry's ratio to each peer marked; see report_html.py).

Usage: python3 bench/report.py [--html FILE [--markdown REPORT.md]] bench/results/<run>/

--markdown names the finished Markdown report to show under the charts
(compare.sh's, with its header and notes); without it, the tables printed
here are shown.

Reads <peer>.<label>[~N].json (loadtest --json; ~N for repeat N),
<...>.json.load (the load average when the run started) and, for churn,
<...>.json.rss (the server's VmRSS before, VmHWM, and VmRSS after the closed
sessions expired, in kB). Prints: the summary (one column per server, the
median of the repeats), Ferry's ratios to every peer, the BRIEF.md targets,
and every run.
"""

import argparse
import contextlib
import io
import json
import pathlib

FERRY = ["ferry-ws", "ferry-wss", "ferry-quic"]
PEERS = ["baseline-ws-default", "baseline-ws-4k", "node-ws", "uws-socketify"]
TITLES = {
    "ferry-ws": "Ferry WS",
    "ferry-wss": "Ferry WSS",
    "ferry-quic": "Ferry QUIC",
    "baseline-ws-default": "baseline-ws default",
    "baseline-ws-4k": "baseline-ws 4k",
    "node-ws": "Node ws",
    "uws-socketify": "uWS (socketify)",
}
LABELS = ["idle", "closed-32B", "closed-1KiB", "fixed", "fanout", "fanout-max", "churn"]


def lat(key):
    return lambda r: (r.get("latency_us") or {}).get(key)


# (id, what, run label, value of a report, decimals, lower is better)
METRICS = [
    ("idle", "1 idle: server RSS, bytes per connection", "idle",
     lambda r: r["gateway_rss_bytes_per_session"], 0, True),
    ("c32", "2 closed loop 32 B: msgs/s", "closed-32B",
     lambda r: r["throughput_msgs_per_s"], 0, False),
    ("c32cpu", "2 closed loop 32 B: server CPU µs/msg", "closed-32B",
     lambda r: r["server_cpu_us_per_msg"], 2, True),
    ("c1k", "2 closed loop 1 KiB: msgs/s", "closed-1KiB",
     lambda r: r["throughput_msgs_per_s"], 0, False),
    ("c1kcpu", "2 closed loop 1 KiB: server CPU µs/msg", "closed-1KiB",
     lambda r: r["server_cpu_us_per_msg"], 2, True),
    ("p50", "3 fixed rate: p50 µs", "fixed", lat("p50"), 0, True),
    ("p99", "3 fixed rate: p99 µs", "fixed", lat("p99"), 0, True),
    ("p999", "3 fixed rate: p99.9 µs", "fixed", lat("p999"), 0, True),
    ("fixedcpu", "3 fixed rate: server CPU µs/msg", "fixed",
     lambda r: r["server_cpu_us_per_msg"], 2, True),
    ("fan", "4 fan-out: deliveries/s", "fanout",
     lambda r: r["throughput_msgs_per_s"], 0, False),
    ("fanp50", "4 fan-out: publish-to-delivery p50 µs", "fanout", lat("p50"), 0, True),
    ("fanp99", "4 fan-out: publish-to-delivery p99 µs", "fanout", lat("p99"), 0, True),
    ("fancpu", "4 fan-out: server CPU µs/delivery", "fanout",
     lambda r: r["server_cpu_us_per_msg"], 2, True),
    ("fanmax", "4 fan-out, max offered rate: deliveries/s", "fanout-max",
     lambda r: r["throughput_msgs_per_s"], 0, False),
    ("fanmaxp99", "4 fan-out, max offered rate: p99 µs", "fanout-max", lat("p99"), 0, True),
    ("fanmaxcpu", "4 fan-out, max offered rate: server CPU µs/delivery", "fanout-max",
     lambda r: r["server_cpu_us_per_msg"], 2, True),
    ("churn", "5 churn: cycles (handshakes)/s", "churn",
     lambda r: r["throughput_msgs_per_s"], 0, False),
    ("churncpu", "5 churn: server CPU µs/cycle", "churn",
     lambda r: r["server_cpu_us_per_msg"], 0, True),
]


def load_runs(run):
    """{(peer, label): [report, ...]}, one report per repeat (LABEL~N)."""
    runs = {}
    for f in sorted(run.glob("*.json")):
        peer, name = f.name[: -len(".json")].rsplit(".", 1)
        label, _, rep = name.partition("~")
        r = json.loads(f.read_text())
        side = lambda ext: f.parent / (f.name + ext)
        r["_name"] = name
        r["_rep"] = int(rep or 1)
        r["_load"] = side(".load").read_text().strip() if side(".load").exists() else ""
        r["_rss"] = side(".rss").read_text().split() if side(".rss").exists() else None
        m = r["messages"]
        r["_ok"] = m["lost"] == m["duplicated"] == m["reordered"] == 0 and not r["errors"]
        runs.setdefault((peer, label), []).append(r)
    for reports in runs.values():
        reports.sort(key=lambda r: r["_rep"])
    return runs


def median(values):
    values = sorted(values)
    n = len(values)
    if n == 0:
        return None
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def fmt(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"


def value(runs, peer, metric):
    """The metric's median over the repeats of its run, or None."""
    _, _, label, get, _, _ = metric
    found = []
    for r in runs.get((peer, label), []):
        try:
            v = get(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            found.append(v)
    return median(found)


def cell(runs, peer, metric):
    v = value(runs, peer, metric)
    reports = runs.get((peer, metric[2]), [])
    if v is None:
        return "-"
    failed = sum(not r["_ok"] for r in reports)
    mark = f" ({failed} of {len(reports)} FAILED checks)" if failed else ""
    return fmt(v, metric[4]) + mark


def churn_memory(runs, peer):
    r = next(iter(runs.get((peer, "churn"), [])), None)
    if not r or not r["_rss"] or len(r["_rss"]) != 3:
        return "-"
    before, peak, after = (int(x) / 1024 for x in r["_rss"])
    return f"{before:.0f} → peak {peak:.0f} → {after:.0f} MiB"


def summary(runs, peers):
    print("## Summary (same run, same machine)")
    print()
    print("| scenario: metric | " + " | ".join(TITLES[p] for p in peers) + " |")
    print("|---|" + "---:|" * len(peers))
    for m in METRICS:
        if all(value(runs, p, m) is None for p in peers):
            continue
        print(f"| {m[1]} | " + " | ".join(cell(runs, p, m) for p in peers) + " |")
    if any((p, "churn") in runs for p in peers):
        row = [churn_memory(runs, p) for p in peers]
        print("| 5 churn: server RSS before → peak → after expiry | " + " | ".join(row) + " |")
    print()
    print("Ferry's closed-loop and fixed-rate \"echo\" is the full protocol, not a")
    print("raw echo: the session PUBLISHes to its own channel, the gateway")
    print("sequences it (replay log), answers PUBACK and delivers a MESSAGE, and")
    print("the client ACKs (every 32 messages or when idle). The baselines echo a")
    print("WebSocket message. Fan-out: Ferry delivers one channel to N sessions")
    print("(sequenced, per-session seq); baseline-ws --mode broadcast sends each")
    print("message to every connection through a tokio broadcast channel.")
    print()


def ratios(runs, peers):
    ferry = [p for p in FERRY if any((p, l) in runs for l in LABELS)]
    others = [p for p in PEERS if any((p, l) in runs for l in LABELS)]
    if not ferry or not others:
        return
    print("## Ferry ÷ peer (same run)")
    print()
    print("Below 1× is better for memory, CPU and latency; above 1× is better for")
    print("msgs/s and deliveries/s.")
    print()
    print("| metric | Ferry | " + " | ".join(f"÷ {TITLES[p]}" for p in others) + " |")
    print("|---|---|" + "---:|" * len(others))
    for m in METRICS:
        for f in ferry:
            fv = value(runs, f, m)
            if fv is None:
                continue
            cells = []
            for p in others:
                pv = value(runs, p, m)
                cells.append("-" if not pv else f"{fv / pv:.2f}×")
            if all(c == "-" for c in cells):
                continue
            print(f"| {m[1]} | {TITLES[f]} | " + " | ".join(cells) + " |")
    print()


def targets(runs):
    print("## BRIEF.md targets")
    print()
    print("| target | measured | met? |")
    print("|---|---|---|")

    def row(what, measured, limit, lower=True, unit=""):
        if measured is None:
            print(f"| {what} | not measured | - |")
            return
        ok = measured <= limit if lower else measured >= limit
        factor = measured / limit if limit else 0
        verdict = "yes" if ok else f"no: {factor:.1f}× the target" if lower else f"no: {factor:.2f}× the target"
        print(f"| {what} | {fmt(measured, 2 if measured < 100 else 0)}{unit} | {verdict} |")

    by = {m[0]: m for m in METRICS}
    row("idle WS ≤ 2,048 B/session", value(runs, "ferry-ws", by["idle"]), 2048, unit=" B")
    row("idle WSS ≤ 16,384 B/session", value(runs, "ferry-wss", by["idle"]), 16384, unit=" B")
    row("idle QUIC ≤ 16,384 B/session", value(runs, "ferry-quic", by["idle"]), 16384, unit=" B")
    row("WS closed loop ≤ 3 µs server CPU/msg (32 B)", value(runs, "ferry-ws", by["c32cpu"]), 3, unit=" µs")
    row("QUIC closed loop ≤ 3 µs server CPU/msg (32 B)", value(runs, "ferry-quic", by["c32cpu"]), 3, unit=" µs")
    base = value(runs, "baseline-ws-4k", by["p99"])
    for f in ["ferry-ws", "ferry-quic"]:
        v = value(runs, f, by["p99"])
        if base:
            row(f"{TITLES[f]} fixed-rate p99 ≤ baseline-ws 4k's ({fmt(base)} µs, same run)", v, base, unit=" µs")
        row(f"{TITLES[f]} fixed-rate p99 ≤ 120 µs (moonshot)", v, 120, unit=" µs")
    for f in ["ferry-ws", "ferry-quic"]:
        at_max = value(runs, f, by["fanmaxcpu"]) is not None
        key = "fanmax" if at_max else "fan"
        cpu = value(runs, f, by[key + "cpu"])
        got = value(runs, f, by[key])
        how = "reached at the max offered rate" if at_max else "at the offered rate"
        if cpu:
            implied = 2e6 / cpu
            print(f"| {TITLES[f]} fan-out ≥ 1,000,000 deliveries/s on 2 cores (10,000 subscribers) "
                  f"| {fmt(got)}/s {how}; 2 cores ÷ {cpu:.2f} µs server CPU per delivery "
                  f"≈ {fmt(implied)}/s if the server had both cores | "
                  f"{'plausible' if implied >= 1e6 else 'no: ' + format(implied / 1e6, '.2f') + '× the target'} "
                  f"(not measured at 10,000 subscribers) |")
    print()


def all_runs(runs):
    print("## Every run")
    print()
    head = ["server", "scenario", "transport", "msgs/s", "p50 µs", "p99 µs", "p99.9 µs",
            "server CPU µs/msg", "RSS B/idle conn", "sessions", "loadgen CPU %", "load avg", "checks"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    key = lambda k: (k[0], LABELS.index(k[1]) if k[1] in LABELS else 99)
    for peer, label in sorted(runs, key=key):
        for r in runs[(peer, label)]:
            lat_ = r.get("latency_us") or {}
            idle = label == "idle"
            errors = ", ".join(f"{n} × {why}" for why, n in r["errors"].items())
            checks = "ok" if r["_ok"] else f"FAILED ({errors})" if errors else "FAILED"
            print("| " + " | ".join([
                peer, r["_name"], r["transport"],
                "-" if idle else fmt(r["throughput_msgs_per_s"]),
                fmt(lat_.get("p50")), fmt(lat_.get("p99")), fmt(lat_.get("p999")),
                "-" if idle else fmt(r["server_cpu_us_per_msg"], 2),
                fmt(r["gateway_rss_bytes_per_session"]),
                f'{r["sessions"]["established"]}/{r["sessions"]["attempted"]}',
                fmt(r["loadgen_cpu_percent"]), r["_load"], checks,
            ]) + " |")
    print()


def failed_count(runs, peer, metric):
    """Repeats of the metric's run whose checks failed."""
    return sum(not r["_ok"] for r in runs.get((peer, metric[2]), []))


def tables(runs, peers):
    summary(runs, peers)
    ratios(runs, peers)
    targets(runs)
    all_runs(runs)


def main():
    parser = argparse.ArgumentParser(description="Tables (and an HTML page) of a compare.sh run")
    parser.add_argument("run", type=pathlib.Path, help="bench/results/<run>/")
    parser.add_argument("--html", type=pathlib.Path, help="also write the HTML page here")
    parser.add_argument("--markdown", type=pathlib.Path,
                        help="the Markdown report to show in the page (default: these tables)")
    args = parser.parse_args()
    runs = load_runs(args.run)
    peers = [p for p in FERRY + PEERS if any(k[0] == p for k in runs)]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tables(runs, peers)
    print(text.getvalue(), end="")
    if args.html:
        import report_html

        markdown = args.markdown.read_text() if args.markdown else text.getvalue()
        title = f"Ferry and peers, {args.run.resolve().name}"
        args.html.write_text(report_html.page(
            runs, peers, METRICS, TITLES, value, failed_count, title, markdown))


if __name__ == "__main__":
    main()
