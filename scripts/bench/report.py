#!/usr/bin/env python3
"""Turns the benchmark's console log into target/bench/results.json and results.md.

    scripts/bench/report.py [-o OUTDIR] LOG...

LOG is the console of a scripts/bench.sh run (the VM's serial console, or the output of a
--host run): the guest (scripts/bench/guest.sh) prints one `BENCH-JSON {...}` line per record,
anywhere in the log among the kernel's and the tools' own lines. Per case and workload the
report gives the median over the repetitions of IOPS, mean and p99 latency, the server's CPU
seconds per million I/Os and context switches per I/O, and the largest peak RSS; then the
ratios the project aims for, each met or not met. Anything missing is "n/a", never a guess.
It prints the ratios on stdout. Python 3 standard library only.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

RECORD = re.compile(r"BENCH-JSON (.*?)\s*$")

# The report's row order; cases or workloads the log has beyond these come after them.
CASES = [
    "null_blk", "brd", "loop",
    "ublk-null-1q", "ublk-null-2q", "kublk-null-1q", "kublk-null-2q", "rublk-null-1q", "rublk-null-2q",
    "ublk-mem-1q", "ublk-mem-2q",
    "ublk-loop-1q", "ublk-loop-2q", "kublk-loop-1q", "kublk-loop-2q", "rublk-loop-1q", "rublk-loop-2q",
]
WORKLOADS = ["randread-4k-qd1", "randread-4k-qd64", "randwrite-4k-qd64", "read-128k-qd16"]

# (ours, theirs, workload, target): ours' median IOPS / theirs' must be >= target.
RATIOS = [
    ("ublk-null-1q", "null_blk", "randread-4k-qd64", 0.98),
    ("ublk-null-2q", "null_blk", "randread-4k-qd64", 0.98),
    ("ublk-null-1q", "kublk-null-1q", "randread-4k-qd1", 1.3),
    ("ublk-loop-1q", "loop", "randread-4k-qd64", 1.0),
    ("ublk-loop-1q", "loop", "randwrite-4k-qd64", 1.0),
    ("ublk-loop-2q", "loop", "randread-4k-qd64", 1.0),
    ("ublk-loop-2q", "loop", "randwrite-4k-qd64", 1.0),
    ("ublk-mem-1q", "brd", "randread-4k-qd64", 0.9),
    ("ublk-mem-1q", "brd", "randwrite-4k-qd64", 0.9),
    ("ublk-mem-2q", "brd", "randread-4k-qd64", 0.9),
    ("ublk-mem-2q", "brd", "randwrite-4k-qd64", 0.9),
]
# The server cases all three servers have: CPU per I/O of ublk must be below kublk's and rublk's.
SHARED = ["null-1q", "null-2q", "loop-1q", "loop-2q"]
PEERS = ["kublk", "rublk"]
METRICS = ["iops", "lat_mean_ns", "lat_p99_ns", "cpu_s_per_m", "ctx_per_io"]


def read_records(paths):
    """Returns (records, warnings) from the BENCH-JSON lines of the logs."""
    records, warnings = [], []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = RECORD.search(line.rstrip("\r\n"))
                if not m:
                    continue
                try:
                    rec = json.loads(m.group(1))
                except json.JSONDecodeError as e:
                    warnings.append(f"{path}:{n}: unreadable record ({e}): {line.strip()[:120]}")
                    continue
                if isinstance(rec, dict) and rec.get("type") in ("meta", "run", "error"):
                    records.append(rec)
                else:
                    warnings.append(f"{path}:{n}: not a benchmark record: {line.strip()[:120]}")
    return records, warnings


def run_metrics(run, hz):
    """The derived numbers of one fio run: CPU seconds per million I/Os, switches per I/O."""
    out = {k: run.get(k) for k in ("iops", "lat_mean_ns", "lat_p99_ns")}
    ios, ticks, ctx = run.get("ios"), run.get("cpu_ticks"), run.get("ctx_switches")
    ok = isinstance(ios, (int, float)) and ios > 0
    out["cpu_s_per_m"] = ticks / hz / (ios / 1e6) if ok and ticks is not None else None
    out["ctx_per_io"] = ctx / ios if ok and ctx is not None else None
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records):
    """Groups the records into {"meta", "cells": {case: {workload: cell}}, "errors"}."""
    meta = next((r for r in records if r["type"] == "meta"), {})
    hz = meta.get("hz") or 100
    cells, errors = {}, []
    for rec in records:
        if rec["type"] == "error":
            errors.append(rec)
        if rec["type"] != "run":
            continue
        cell = cells.setdefault(rec["case"], {}).setdefault(
            rec["workload"], {"runs": [], "peak_rss_kb": None})
        cell["runs"].append(dict(rec, **run_metrics(rec, hz)))
        if rec.get("hwm_kb") is not None:
            cell["peak_rss_kb"] = max(cell["peak_rss_kb"] or 0, rec["hwm_kb"])
    for workloads in cells.values():
        for cell in workloads.values():
            cell["median"] = {m: median(r[m] for r in cell["runs"]) for m in METRICS}
            # How far apart the repetitions are: (max - min) / median of IOPS.
            iops = [r["iops"] for r in cell["runs"] if r["iops"] is not None]
            mid = cell["median"]["iops"]
            cell["iops_spread"] = (max(iops) - min(iops)) / mid if iops and mid else None
    return {"meta": meta, "cells": cells, "errors": errors}


def value(summary, case, workload, metric):
    cell = summary["cells"].get(case, {}).get(workload)
    return cell["median"][metric] if cell else None


def ratios(summary):
    out = []
    for ours, theirs, workload, target in RATIOS:
        a, b = value(summary, ours, workload, "iops"), value(summary, theirs, workload, "iops")
        ratio = a / b if a is not None and b else None
        status = "n/a" if ratio is None else ("met" if ratio >= target else "not met")
        out.append({"ours": ours, "theirs": theirs, "workload": workload, "target": target,
                    "ratio": ratio, "status": status})
    return out


def cpu_comparisons(summary):
    """Ours' CPU s per M I/O against each peer's, per shared case and workload: met when it is
    below every peer that has a number (n/a when no peer has one, or ours has none)."""
    out = []
    for shared in SHARED:
        for workload in WORKLOADS:
            ours = value(summary, f"ublk-{shared}", workload, "cpu_s_per_m")
            theirs = {p: value(summary, f"{p}-{shared}", workload, "cpu_s_per_m") for p in PEERS}
            known = [v for v in theirs.values() if v is not None]
            if ours is None or not known:
                status = "n/a"
            else:
                status = "met" if all(ours < v for v in known) else "not met"
                if len(known) < len(PEERS):
                    status += " (" + ", ".join(p for p, v in theirs.items() if v is None) + " n/a)"
            out.append({"case": shared, "workload": workload, "ublk": ours, **theirs,
                        "status": status})
    return out


def ordered(names, order):
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


def fmt(v, digits=0, scale=1.0):
    if v is None:
        return "n/a"
    return f"{v / scale:,.{digits}f}"


def markdown(summary, ratio_rows, cpu_rows, date, host=None):
    meta = summary["meta"]
    cells = summary["cells"]
    lines = ["# ublk benchmark", ""]
    lines.append(f"- date: {date}")
    lines.append(f"- kernel: {meta.get('kernel', 'n/a')}; vCPUs: {meta.get('cpus', 'n/a')}; "
                 f"memory: {fmt(meta.get('mem_kb'), 0, 1024)} MiB")
    lines.append(f"- fio: {meta.get('fio', 'n/a')}, io_uring, direct=1, {meta.get('runtime', '?')} s "
                 f"per run after {meta.get('ramp', '?')} s of ramp, {meta.get('repeat', '?')} "
                 f"repetitions (medians below); servers: depth {meta.get('depth', '?')}; "
                 f"brd, mem and the loop file: {meta.get('size_mb', '?')} MiB")
    if meta.get("peers"):
        lines.append(f"- peers: {meta['peers']}")
    if host:
        lines.append(f"- host: {host}")
    lines += ["", "> Measured in a QEMU TCG (software-emulated) VM: the absolute numbers mean "
              "nothing about real hardware. Only ratios between cases of one run count.", ""]

    case_names = ordered(set(cells) | {e["case"] for e in summary["errors"]}, CASES)
    workload_names = ordered({w for c in cells.values() for w in c}
                             | {e["workload"] for e in summary["errors"] if e.get("workload")},
                             WORKLOADS)
    lines += ["## IOPS", "", "Median of the repetitions.", "",
              "| case | " + " | ".join(workload_names) + " |",
              "|---|" + "---:|" * len(workload_names)]
    for case in case_names:
        lines.append(f"| {case} | " + " | ".join(
            fmt(value(summary, case, w, "iops")) for w in workload_names) + " |")
    lines += ["", "## Results", "",
              "Median of the repetitions; latency is fio's total latency (submission to "
              "completion). CPU and context switches are the server process's (all threads) "
              "over the fio run, per I/O completed by the device; n/a for kernel drivers. "
              "Spread: (max - min) / median of the repetitions' IOPS.", "",
              "| case | workload | IOPS | spread | mean lat (µs) | p99 lat (µs) | CPU s / M I/O | "
              "ctx sw / I/O | peak RSS (MiB) | runs |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    repeat = meta.get("repeat")
    for case in case_names:
        for workload in workload_names:
            cell = cells.get(case, {}).get(workload)
            med = cell["median"] if cell else dict.fromkeys(METRICS)
            runs = len(cell["runs"]) if cell else 0
            rss = cell["peak_rss_kb"] if cell else None
            spread = cell["iops_spread"] if cell else None
            lines.append(
                f"| {case} | {workload} | {fmt(med['iops'])} | {fmt(spread, 0, 0.01)}"
                f"{'' if spread is None else '%'} | {fmt(med['lat_mean_ns'], 1, 1000)} "
                f"| {fmt(med['lat_p99_ns'], 1, 1000)} | {fmt(med['cpu_s_per_m'], 2)} "
                f"| {fmt(med['ctx_per_io'], 3)} | {fmt(rss, 1, 1024)} "
                f"| {runs}{'/' + str(repeat) if repeat else ''} |")

    lines += ["", "## Targets", "", "IOPS of ours / IOPS of theirs (medians).", "",
              "| ours | theirs | workload | ratio | target | status |",
              "|---|---|---|---:|---:|---|"]
    for r in ratio_rows:
        lines.append(f"| {r['ours']} | {r['theirs']} | {r['workload']} | {fmt(r['ratio'], 3)} "
                     f"| >= {r['target']} | {r['status']} |")
    lines += ["", "CPU seconds per million I/Os: ublk's must be below kublk's and rublk's.", "",
              "| case | workload | ublk | kublk | rublk | status |", "|---|---|---:|---:|---:|---|"]
    for r in cpu_rows:
        lines.append(f"| {r['case']} | {r['workload']} | {fmt(r['ublk'], 2)} | {fmt(r['kublk'], 2)} "
                     f"| {fmt(r['rublk'], 2)} | {r['status']} |")

    lines += ["", "## Failures", ""]
    if not summary["errors"]:
        lines.append("None.")
    seen = set()
    for e in summary["errors"]:
        key = (e["case"], e.get("workload"), e.get("reason"))
        if key in seen:
            continue
        seen.add(key)
        reps = [x.get("rep") for x in summary["errors"]
                if (x["case"], x.get("workload"), x.get("reason")) == key]
        where = e["case"] + (f" {e['workload']}" if e.get("workload") else "")
        lines.append(f"- {where} (repetition {', '.join(str(r) for r in reps)}): {e.get('reason')}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", metavar="LOG")
    parser.add_argument("-o", "--out", default="target/bench", help="output directory")
    parser.add_argument("--date", help="the date to print (default: the logs' modification time)")
    parser.add_argument("--host", help="a line about the machine that ran the VM (its load)")
    args = parser.parse_args(argv)

    records, warnings = read_records(args.logs)
    for w in warnings:
        print(f"report.py: warning: {w}", file=sys.stderr)
    if not any(r["type"] in ("run", "error") for r in records):
        print(f"report.py: no benchmark record in {', '.join(args.logs)}", file=sys.stderr)
        return 1
    summary = summarize(records)
    ratio_rows, cpu_rows = ratios(summary), cpu_comparisons(summary)
    date = args.date
    if date is None:
        date = time.strftime("%Y-%m-%d %H:%M %Z",
                             time.localtime(max(os.path.getmtime(p) for p in args.logs)))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"date": date, "host": args.host, **summary, "ratios": ratio_rows, "cpu": cpu_rows}, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary, ratio_rows, cpu_rows, date, args.host))
    for r in ratio_rows:
        print(f"{r['ours']} / {r['theirs']} {r['workload']}: {fmt(r['ratio'], 3)} "
              f"(target >= {r['target']}): {r['status']}")
    for r in cpu_rows:
        print(f"CPU s/M I/O {r['case']} {r['workload']}: ublk {fmt(r['ublk'], 2)}, "
              f"kublk {fmt(r['kublk'], 2)}, rublk {fmt(r['rublk'], 2)}: {r['status']}")
    print(f"report.py: wrote {args.out}/results.md and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
