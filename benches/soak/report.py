#!/usr/bin/env python3
"""The soak test's report: reads the work dir of benches/soak.sh and writes OUT/soak.md (the
summary table) and OUT/soak.png (gnuplot: RPS, p99, RSS and descriptors over time, the fault
windows shaded).

    report.py WORKDIR OUT

An anomaly (driver.py) is excused when a fault window explains it (GRACE seconds after the
window too: pooled connections to a restarted upstream fail once, a sign-in that started before
the provider went down fails after):
- upstream down: a 5xx, a dropped connection or a lost tunnel on any proxied request;
- provider down or restarting: a failed sign-in;
- Redis down: a failed sign-in, or a 5xx on a session request.
Everything else is a misclassification.
"""

import csv
import json
import os
import re
import subprocess
import sys

GRACE = 3.0
COLORS = {
    "provider_restart": "#4477aa",
    "provider_down": "#88ccee",
    "redis_down": "#cc6677",
    "upstream_down": "#ddcc77",
    "slow_clients": "#117733",
    "reload_sighup": "#aa4499",
    "invalid_config": "#882255",
    "reload_file": "#999933",
}
LABELS = {
    "provider_restart": "provider restarted, rotated key",
    "provider_down": "provider down",
    "redis_down": "Redis restarted",
    "upstream_down": "upstream killed",
    "slow_clients": "200 slow clients",
    "reload_sighup": "reload (SIGHUP)",
    "invalid_config": "invalid config 3 s",
    "reload_file": "reload (file change)",
}
CLASSES = [
    ("valid_refused", "valid credential refused (bearer, client-credentials route, WebSocket upgrade)"),
    ("invalid_accepted", "invalid token accepted"),
    ("lost_session", "lost session"),
    ("5xx", "5xx outside a fault window that explains it"),
    ("bad_not_4xx", "bad request not answered 4xx"),
    ("wrong", "other wrong answer (wrong status or body)"),
    ("error", "dropped connection or timeout"),
    ("tunnel_lost", "WebSocket tunnel lost"),
    ("signin_failed", "sign-in failed"),
]
PROXIED = {"bearer", "cc", "session", "ws", "ws_upgrade"}


def excused(a, windows):
    t, kind, cls, status = a["epoch"], a["kind"], a["class"], a["status"]
    for w, start, end in windows:
        if not (start - 0.5 <= t <= end + GRACE):
            continue
        if w == "upstream_down" and kind in PROXIED and (
                cls in ("error", "tunnel_lost") or (cls == "5xx" and status in (502, 503, 504))):
            return w
        if w in ("provider_down", "provider_restart") and kind == "signin":
            return w
        if w == "redis_down" and (kind == "signin" or (kind == "session" and cls == "5xx" and status == 503)):
            return w
    return None


def main():
    wd, out = sys.argv[1], sys.argv[2]
    summary = json.load(open(os.path.join(wd, "summary.json")))
    proc = json.load(open(os.path.join(wd, "process.json")))
    t0 = summary["t0"]
    samples = list(csv.DictReader(open(os.path.join(wd, "samples.csv"))))
    anomalies = list(csv.DictReader(open(os.path.join(wd, "anomalies.csv"))))
    for a in anomalies:
        a["epoch"] = float(a["epoch"])
        a["status"] = int(a["status"])
    windows = []
    for line in open(os.path.join(wd, "faults.log")):
        kind, start, end = line.split()
        windows.append((kind, float(start), float(end)))

    counts = {c: 0 for c, _ in CLASSES}
    excused_by = {}
    examples = {}
    for a in anomalies:
        w = excused(a, windows)
        if w:
            excused_by[w] = excused_by.get(w, 0) + 1
            continue
        counts[a["class"]] = counts.get(a["class"], 0) + 1
        examples.setdefault(a["class"], []).append(a)

    log = open(os.path.join(wd, "tollgate.log"), errors="replace").read()
    panics = len(re.findall(r"panicked", log))
    metrics = open(os.path.join(wd, "metrics.txt")).read()

    def metric(name):
        m = re.search(r"^" + re.escape(name) + r" ([0-9.e+]+)$", metrics, re.M)
        return float(m.group(1)) if m else 0.0

    reload_ok = metric('tollgate_config_reloads_total{outcome="success"}')
    reload_fail = metric('tollgate_config_reloads_total{outcome="failure"}')
    header_timeouts = metric("tollgate_header_timeouts_total")
    slow = [json.loads(l) for l in open(os.path.join(wd, "slow.jsonl"))] if os.path.exists(
        os.path.join(wd, "slow.jsonl")) else []

    warm = proc.get("baseline_at", proc["warmup"])
    rows = [s for s in samples if int(s["rss_kib"]) > 0]
    base = next((s for s in rows if int(s["t"]) >= warm), rows[0])
    last = rows[-1]
    rss_base, rss_end = int(base["rss_kib"]), int(last["rss_kib"])
    rss_peak = max(int(s["rss_kib"]) for s in rows)
    fds_base, fds_end = int(base["fds"]), int(last["fds"])
    fds_peak = max(int(s["fds"]) for s in rows)
    growth = (rss_end - rss_base) / rss_base * 100
    p99s = [float(s["p99_ms"]) for s in samples if int(s["requests"]) > 0]
    rps = [int(s["requests"]) for s in samples]
    mib = lambda k: f"{k / 1024:.1f}"

    dur = summary["duration"]
    total_bad = sum(counts.values()) + panics
    md = []
    md.append(f"Soak with faults: `{('TOLLGATE_ENV=' + proc['tollgate_env'] + ' ') if proc.get('tollgate_env') else ''}{proc['command']}` ({dur:.0f} s of load at {proc['rate']} requests/s, "
              f"{proc['cores']} cores; load average at the end {proc['load']}).\n")
    md.append("| measure | value | target |")
    md.append("|---|---|---|")
    md.append(f"| answers checked (HTTP requests) | {summary['answers']:,} | |")
    md.append(f"| WebSocket echoes (12 tunnels) | {summary['ws_echoes']:,} | |")
    md.append(f"| sign-ins through the provider's login form | {summary['signins']:,} of "
              f"{summary['signin_attempts']:,} attempts | |")
    md.append(f"| browser-session requests | {summary['sessions_used']:,} | |")
    md.append(f"| answers to tokens of a retired key (either answer right) | {summary['retired']:,} | |")
    for c, label in CLASSES:
        md.append(f"| {label} | {counts.get(c, 0)} | 0 |")
    md.append(f"| panics in the log | {panics} | 0 |")
    ex = ", ".join(f"{LABELS[k]} {v}" for k, v in sorted(excused_by.items())) or "none"
    md.append(f"| answers explained by a fault window (not counted above) | {ex} | |")
    md.append(f"| latency p50 / p99 / p99.9 / max (ms) | {summary['p50_ms']:.1f} / {summary['p99_ms']:.1f} / "
              f"{summary['p999_ms']:.1f} / {summary['max_ms']:.0f} | |")
    md.append(f"| worst one-second p99 (ms) | {max(p99s) if p99s else 0:.1f} | |")
    md.append(f"| requests per second, median (min–max) | {sorted(rps)[len(rps) // 2]} ({min(rps)}–{max(rps)}) | |")
    md.append(f"| RSS at +{warm} s (baseline) → end (peak) | {mib(rss_base)} → {mib(rss_end)} MiB "
              f"({mib(rss_peak)} MiB), {growth:+.1f} % | < +5 % |")
    md.append(f"| RSS idle before the load → after it | {mib(proc['idle_rss_kib'])} → "
              f"{mib(proc['after_idle_rss_kib'])} MiB | |")
    if proc.get("trimmed_rss_kib"):
        md.append(f"| RSS after `malloc_trim(0)` (gdb), at the end | {mib(proc['trimmed_rss_kib'])} MiB | |")
    md.append(f"| descriptors at +{warm} s → end of load (peak) | {fds_base} → {fds_end} ({fds_peak}) | "
              f"back to baseline |")
    md.append(f"| descriptors idle before the load → idle after it | {proc['idle_fds']} → "
              f"{proc['after_idle_fds']} | equal |")
    if slow:
        md.append(f"| slow clients cut by the {slow[0]['limit_s']:.0f} s header timeout | "
                  f"{sum(s['cut'] for s in slow)} of {sum(s['opened'] for s in slow)} "
                  f"(last after {max(s['last_cut_s'] or 0 for s in slow):.1f} s; "
                  f"{sum(s['late'] for s in slow)} late) | all |")
    md.append(f"| header timeouts counted (`tollgate_header_timeouts_total`) | {header_timeouts:.0f} | |")
    md.append(f"| reloads: succeeded / refused (expected) | {reload_ok:.0f} / {reload_fail:.0f} "
              f"({proc['expect_reload_ok']} / {proc['expect_reload_fail']}) | |")
    nfaults = {}
    for k, _, _ in windows:
        nfaults[k] = nfaults.get(k, 0) + 1
    md.append(f"| faults injected | " + ", ".join(f"{LABELS[k]} ×{v}" for k, v in nfaults.items()) + " | |")
    md.append("")
    md.append(f"Misclassifications and panics: **{total_bad}**.")
    if proc.get("reload_missed", "").strip():
        md.append(f"\nReloads not seen in the metrics within 10 s: {proc['reload_missed']}")
    if proc["after_idle_fds"] != proc["idle_fds"]:
        def lines(name):
            try:
                return [l.strip() for l in open(os.path.join(wd, name)) if l.strip()]
            except OSError:
                return []
        before, after = lines("fds-idle-before.txt"), lines("fds-idle-after.txt")
        md.append("\nDescriptors idle before the load and after it (count, kind; then TCP state, local, peer):")
        md.append("\n| before | after |\n|---|---|")
        for i in range(max(len(before), len(after))):
            md.append(f"| {before[i] if i < len(before) else ''} | {after[i] if i < len(after) else ''} |")
    for c, items in examples.items():
        md.append(f"\n{c}: {len(items)}, for example:")
        for a in items[:5]:
            md.append(f"- +{a['epoch'] - t0:.1f} s {a['kind']} {a['status']} {a['detail']}")
    text = "\n".join(md) + "\n"
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "soak.md"), "w").write(text)
    open(os.path.join(wd, "soak.md"), "w").write(text)
    plot(wd, out, samples, windows, t0)


def plot(wd, out, samples, windows, t0):
    data = os.path.join(wd, "plot.dat")
    with open(data, "w") as f:
        for s in samples:
            f.write(f"{s['t']} {s['requests']} {s['p99_ms']} {int(s['rss_kib']) / 1024:.2f} {s['fds']}\n")
    term = "pngcairo size 1200,1000 font 'sans,10'"
    terms = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    if "pngcairo" not in (terms.stdout + terms.stderr):
        term = "png size 1200,1000"
    g = [f"set terminal {term}", f"set output '{os.path.join(out, 'soak.png')}'",
         "set multiplot layout 4,1 title 'tollgate soak with faults (shaded: fault windows)'",
         "set grid", "set lmargin at screen 0.07", "set rmargin at screen 0.76", "set key outside right top", "set style fill transparent solid 0.35 noborder"]
    for i, (k, start, end) in enumerate(windows):
        a, b = start - t0, max(end - t0, start - t0 + 1)
        g.append(f"set object {i + 1} rect from {a:.2f}, graph 0 to {b:.2f}, graph 1 behind "
                 f"fc rgb '{COLORS[k]}' fs transparent solid 0.35 noborder")
    legend = ", ".join(f"NaN with boxes fc rgb '{COLORS[k]}' title '{LABELS[k]}'"
                       for k in COLORS if any(w[0] == k for w in windows))
    panels = [("requests/s", 2, "RPS"), ("p99 ms", 3, "p99 latency (per second)"),
              ("RSS MiB", 4, "tollgate RSS"), ("descriptors", 5, "tollgate open descriptors")]
    for n, (ylabel, col, title) in enumerate(panels):
        g.append(f"set ylabel '{ylabel}'")
        g.append("set xlabel 'seconds'" if n == 3 else "unset xlabel")
        if col == 3:
            g.append("set logscale y")
        else:
            g.append("unset logscale y")
        extra = f", {legend}" if n == 0 and legend else ""
        g.append(f"plot '{data}' using 1:{col} with lines lw 1.5 lc rgb '#222222' title '{title}'{extra}")
    g.append("unset multiplot")
    script = os.path.join(wd, "soak.gp")
    open(script, "w").write("\n".join(g) + "\n")
    subprocess.run(["gnuplot", script], check=True)


if __name__ == "__main__":
    main()
