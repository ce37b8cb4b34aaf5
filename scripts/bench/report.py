#!/usr/bin/env python3
"""Turns the benchmark's console logs into target/bench/results.json and results.md.

    scripts/bench/report.py [-o OUTDIR] LOG...

LOG is the console of a scripts/bench.sh run (the VM's serial console, or the output of a
--host run): the guest (scripts/bench/guest.sh) prints one `BENCH-JSON {...}` line per record,
anywhere in the log among the kernel's and the tools' own lines. Several logs are several boots
of one run (BENCH_BOOTS): every repetition of every boot counts alike. Per case and workload the
report gives the median over the repetitions of IOPS, mean and p99 latency, completion latency
percentiles, the server's CPU seconds per million I/Os and context switches per I/O, and the
largest peak RSS; the QD1 latency percentiles; each server's scaling from 1 queue and 1 fio job
to 2 queues and 2 jobs; then the ratios the project aims for, each met or not met; and our NBD
client against the kernel's (ublk-nbd-Nq / nbd-Nc: IOPS, p99 completion latency). Anything
missing is "n/a", never a guess. It prints the ratios on stdout. Python 3 standard library only.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

RECORD = re.compile(r"BENCH-JSON (.*?)\s*$")

# The report's row order; cases or workloads the log has beyond these come after them, sorted.
# Case names: see the top of scripts/bench/guest.sh (SERVER-TARGET[-MODE]-Nq[Mj]).
CASES = [
    "null_blk", "brd", "loop",
    "ublk-null-1q", "ublk-null-2q", "ublk-null-2q2j",
    "ublk-null-copy-1q", "ublk-null-uc-1q", "ublk-null-zc-1q",
    "kublk-null-1q", "kublk-null-2q", "kublk-null-2q2j",
    "kublk-null-uc-1q", "kublk-null-zc-1q", "kublk-null-autozc-1q",
    "rublk-null-1q", "rublk-null-2q", "rublk-null-2q2j", "rublk-null-zc-1q",
    "ublk-mem-1q", "ublk-mem-2q", "ublk-mem-2q2j",
    "ublk-mem-copy-1q", "ublk-mem-uc-1q", "ublk-mem-zc-1q",
    "go-ublk-mem-1q", "go-ublk-mem-2q", "go-ublk-mem-2q2j",
    "ublk-loop-1q", "ublk-loop-2q", "ublk-loop-2q2j",
    "ublk-loop-copy-1q", "ublk-loop-uc-1q", "ublk-loop-zc-1q",
    "kublk-loop-1q", "kublk-loop-2q", "kublk-loop-2q2j",
    "kublk-loop-uc-1q", "kublk-loop-zc-1q", "kublk-loop-autozc-1q",
    "rublk-loop-1q", "rublk-loop-2q", "rublk-loop-2q2j", "rublk-loop-zc-1q",
    "nbd-1c", "ublk-nbd-1q", "nbd-2c", "ublk-nbd-2q",
]
WORKLOADS = ["randread-4k-qd1", "randread-4k-qd64", "randwrite-4k-qd64", "read-128k-qd16"]
QD1 = "randread-4k-qd1"
QD64 = ["randread-4k-qd64", "randwrite-4k-qd64"]
BIG = "read-128k-qd16"

# What a target compares, and how: IOPS must reach the target ratio (ours / theirs >= target);
# CPU per I/O and latency must stay under it (ours / theirs <= target).
METRIC_NAMES = {"iops": "IOPS", "cpu_s_per_m": "CPU s/M I/O", "clat_p99_ns": "p99 clat"}
METRIC_OP = {"iops": ">=", "cpu_s_per_m": "<=", "clat_p99_ns": "<="}

# "Ours" as a tuple of cases: the best of them (highest median IOPS) for each workload.
MEM_BEST = ("ublk-mem-1q", "ublk-mem-copy-1q", "ublk-mem-uc-1q", "ublk-mem-zc-1q")


def target(group, ours, theirs, workload, value, metric="iops", kernel=None):
    """One target: ours' median METRIC / theirs' must be >= (IOPS) or <= (the rest) VALUE.
    KERNEL: the kernel series ("7", "6.12") the target is for; None for any."""
    return {"group": group, "ours": ours, "theirs": theirs, "workload": workload,
            "metric": metric, "op": METRIC_OP[metric], "target": value, "kernel": kernel}


def all_targets():
    t = []
    g = "kernel drivers"
    for ours in ("ublk-null-1q", "ublk-null-2q"):
        t.append(target(g, ours, "null_blk", "randread-4k-qd64", 0.98))
    t.append(target(g, "ublk-null-1q", "kublk-null-1q", QD1, 1.3))
    for ours in ("ublk-loop-1q", "ublk-loop-2q"):
        t += [target(g, ours, "loop", w, 1.0) for w in QD64]
    for ours in ("ublk-mem-1q", "ublk-mem-2q"):
        t += [target(g, ours, "brd", w, 0.9) for w in QD64]

    g = "go-ublk (#16)"
    for q in ("1q", "2q2j"):
        for w in QD64 + [BIG]:
            t.append(target(g, f"ublk-mem-{q}", f"go-ublk-mem-{q}", w, 1.5))
            t.append(target(g, f"ublk-mem-{q}", f"go-ublk-mem-{q}", w, 0.7, "cpu_s_per_m"))

    g = "QD1 tail latency (#16)"
    for peer in ("kublk", "rublk"):
        t.append(target(g, "ublk-null-1q", f"{peer}-null-1q", QD1, 1.0, "clat_p99_ns"))

    g = "2 queues, 2 jobs (#16)"
    for tgt in ("null", "mem"):
        t += [target(g, f"ublk-{tgt}-2q2j", f"ublk-{tgt}-1q", w, 1.5) for w in QD64]

    g = "data paths (#15)"
    for w, value in ((BIG, 0.9), ("randread-4k-qd64", 0.98)):
        t.append(target(g, "ublk-null-zc-1q", "null_blk", w, value, kernel="7"))
    for w in (BIG, "randread-4k-qd64"):
        t.append(target(g, "ublk-loop-zc-1q", "loop", w, 1.0, kernel="7"))
    for w in ("randread-4k-qd64", BIG):
        t.append(target(g, MEM_BEST, "brd", w, 0.9, kernel="7"))
    # Each of our data paths against kublk's same one: its plain mode copies.
    for tgt in ("null", "loop"):
        for ours, theirs in (("zc", "autozc-1q"), ("uc", "uc-1q"), ("copy", "1q")):
            for w in (BIG, "randread-4k-qd64"):
                for metric, value in (("iops", 1.0), ("cpu_s_per_m", 1.0)):
                    t.append(target(g, f"ublk-{tgt}-{ours}-1q", f"kublk-{tgt}-{theirs}", w,
                                    value, metric))
    # 6.12's copy is the slow path for large requests: user copy must avoid its cost.
    t.append(target(g, "ublk-mem-uc-1q", "ublk-mem-copy-1q", BIG, 1.5, kernel="6.12"))

    g = "NBD (#17)"
    for n in ("1", "2"):
        for w in ("randread-4k-qd64", BIG):
            t.append(target(g, f"ublk-nbd-{n}q", f"nbd-{n}c", w, 1.0))
    return t


TARGETS = all_targets()
# The server cases all three servers have: CPU per I/O of ublk must be below kublk's and rublk's.
SHARED = ["null-1q", "null-2q", "null-2q2j", "loop-1q", "loop-2q", "loop-2q2j"]
PEERS = ["kublk", "rublk"]
# Our NBD client and the kernel's (nbd.ko), with as many connections, on one NBD server: (ours,
# the kernel's).
NBD = [("ublk-nbd-1q", "nbd-1c"), ("ublk-nbd-2q", "nbd-2c")]
METRICS = ["iops", "lat_mean_ns", "lat_p99_ns", "clat_p50_ns", "clat_p99_ns", "clat_p999_ns",
           "cpu_s_per_m", "ctx_per_io"]


def read_records(paths):
    """Returns (records, warnings) from the BENCH-JSON lines of the logs; each record gets
    "boot": the 1-based number of its log."""
    records, warnings = [], []
    for boot, path in enumerate(paths, 1):
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
                    rec["boot"] = boot
                    records.append(rec)
                else:
                    warnings.append(f"{path}:{n}: not a benchmark record: {line.strip()[:120]}")
    return records, warnings


def run_metrics(run, hz):
    """The numbers of one fio run, with the derived ones: CPU seconds per million I/Os,
    context switches per I/O."""
    out = {k: run.get(k) for k in METRICS[:6]}
    ios, ticks, ctx = run.get("ios"), run.get("cpu_ticks"), run.get("ctx_switches")
    ok = isinstance(ios, (int, float)) and ios > 0
    out["cpu_s_per_m"] = ticks / hz / (ios / 1e6) if ok and ticks is not None else None
    out["ctx_per_io"] = ctx / ios if ok and ctx is not None else None
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records):
    """Groups the records into {"meta", "boots", "plan", "cells": {case: {workload: cell}},
    "errors"}. The plan ({case: [workloads]}, the union of the boots') is None for logs from
    before the guest printed one: then every cell counts as planned."""
    metas = [r for r in records if r["type"] == "meta"]
    meta = dict(metas[0]) if metas else {}
    meta.pop("plan", None)
    boots = max([r["boot"] for r in records] or [1])
    plan = None
    for m in metas:
        if isinstance(m.get("plan"), dict):
            plan = plan or {}
            for case, workloads in m["plan"].items():
                plan.setdefault(case, [])
                plan[case] += [w for w in workloads if w not in plan[case]]
    hz = meta.get("hz") or 100
    cells, errors = {}, []
    for rec in records:
        if rec["type"] == "error":
            errors.append(rec)
        if rec["type"] != "run":
            continue
        cell = cells.setdefault(rec["case"], {}).setdefault(
            rec["workload"], {"runs": [], "peak_rss_kb": None, "jobs": rec.get("jobs", 1)})
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
    kernels = sorted({m.get("kernel") for m in metas if m.get("kernel")})
    return {"meta": meta, "kernels": kernels, "boots": boots, "plan": plan, "cells": cells,
            "errors": errors}


def value(summary, case, workload, metric):
    cell = summary["cells"].get(case, {}).get(workload)
    return cell["median"][metric] if cell else None


def planned(summary, case, workload):
    plan = summary["plan"]
    return plan is None or workload in plan.get(case, [])


def kernel_matches(summary, series):
    """True if every boot ran a kernel of SERIES ("7" matches 7.3.4+deb13-cloud-amd64)."""
    kernels = summary["kernels"]
    return bool(kernels) and all(k == series or k.startswith(series + ".") for k in kernels)


def label(ours):
    return ours if isinstance(ours, str) else f"{ours[0].rsplit('-', 1)[0]} best data path"


def ratios(summary):
    out = []
    for t in TARGETS:
        ours, metric, workload = t["ours"], t["metric"], t["workload"]
        if isinstance(ours, str):
            ours_case = ours
        else:
            # The best of several: the one with the highest median IOPS on this workload.
            have = [c for c in ours if value(summary, c, workload, "iops") is not None]
            ours_case = max(have, key=lambda c: value(summary, c, workload, "iops"), default=None)
        a = value(summary, ours_case, workload, metric) if ours_case else None
        b = value(summary, t["theirs"], workload, metric)
        ratio = a / b if a is not None and b else None
        if ratio is None:
            status = "n/a"
        elif t["kernel"] and not kernel_matches(summary, t["kernel"]):
            status = f"n/a (a target for {t['kernel']}.x)"
        elif (ratio >= t["target"]) if t["op"] == ">=" else (ratio <= t["target"]):
            status = "met"
        else:
            status = "not met"
        out.append(dict(t, ours=label(ours), ours_case=ours_case, ratio=ratio, status=status))
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


def scaling(summary, case_names, workload_names):
    """For every SERVER-TARGET with a -2q2j case: IOPS with 1 queue and 1 job, 2 queues and 1
    job, 2 queues and 2 jobs, and the ratio 2q2j / 1q (n/a when either is missing)."""
    out = []
    for case in case_names:
        if not case.endswith("-2q2j"):
            continue
        base = case[: -len("-2q2j")]
        for workload in workload_names:
            if not planned(summary, case, workload):
                continue
            one, two, both = (value(summary, f"{base}-{s}", workload, "iops")
                              for s in ("1q", "2q", "2q2j"))
            out.append({"server": base, "workload": workload, "1q1j": one, "2q1j": two,
                        "2q2j": both, "scaling": both / one if both is not None and one else None})
    return out


def nbd_comparisons(summary, case_names, workload_names):
    """Our NBD client against the kernel's, for each pair of NBD that the run has (measured,
    failed or planned) and each workload planned for either: both clients' IOPS and p99
    completion latency, ours / the kernel's of each (n/a when either is missing), and our
    server's CPU seconds per million I/Os. No target: the numbers only."""
    out = []
    for ours, kernel in NBD:
        if ours not in case_names and kernel not in case_names:
            continue
        for workload in workload_names:
            if summary["plan"] is not None:
                if not (planned(summary, ours, workload) or planned(summary, kernel, workload)):
                    continue
            # Without a plan: the workloads either client measured.
            elif not any(workload in summary["cells"].get(c, {}) for c in (ours, kernel)):
                continue
            row = {"ours": ours, "kernel": kernel, "workload": workload}
            for metric in ("iops", "clat_p99_ns"):
                a, b = (value(summary, c, workload, metric) for c in (ours, kernel))
                row[f"ours_{metric}"], row[f"kernel_{metric}"] = a, b
                row[f"{metric}_ratio"] = a / b if a is not None and b else None
            row["ours_cpu_s_per_m"] = value(summary, ours, workload, "cpu_s_per_m")
            out.append(row)
    return out


def qd1_latency(summary, case_names):
    """The QD1 randread cells: IOPS and completion latency percentiles, per case."""
    out = []
    for case in case_names:
        if summary["plan"] is not None:
            if not planned(summary, case, QD1):
                continue
        # Without a plan: the cases that ran QD1, or failed running it.
        elif QD1 not in summary["cells"].get(case, {}) and not any(
                e["case"] == case and e.get("workload") == QD1 for e in summary["errors"]):
            continue
        row = {"case": case}
        for m in ("iops", "clat_p50_ns", "clat_p99_ns", "clat_p999_ns", "lat_mean_ns"):
            row[m] = value(summary, case, QD1, m)
        out.append(row)
    return out


def ordered(names, order):
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


def fmt(v, digits=0, scale=1.0):
    if v is None:
        return "n/a"
    return f"{v / scale:,.{digits}f}"


def table_head(rows, *head):
    """The header lines of a markdown table, or a line saying it has no row."""
    return list(head) if rows else ["No cell of this table in this run."]


def names(summary):
    """The cases and workloads to show: those measured, failed or planned."""
    cells, errors, plan = summary["cells"], summary["errors"], summary["plan"] or {}
    case_names = ordered(set(cells) | {e["case"] for e in errors} | set(plan), CASES)
    workload_names = ordered({w for c in cells.values() for w in c}
                             | {e["workload"] for e in errors if e.get("workload")}
                             | {w for ws in plan.values() for w in ws}, WORKLOADS)
    return case_names, workload_names


def markdown(summary, ratio_rows, cpu_rows, scaling_rows, qd1_rows, nbd_rows, date, host=None):
    meta = summary["meta"]
    cells = summary["cells"]
    boots = summary["boots"]
    repeat = meta.get("repeat")
    lines = ["# ublk benchmark", ""]
    lines.append(f"- date: {date}")
    lines.append(f"- kernel: {', '.join(summary['kernels']) or 'n/a'}; vCPUs: "
                 f"{meta.get('cpus', 'n/a')}; memory: {fmt(meta.get('mem_kb'), 0, 1024)} MiB")
    lines.append(f"- fio: {meta.get('fio', 'n/a')}, io_uring, direct=1, {meta.get('runtime', '?')} s "
                 f"per run after {meta.get('ramp', '?')} s of ramp, {meta.get('repeat', '?')} "
                 f"repetitions x {boots} boot{'s' if boots > 1 else ''} (medians below); servers: "
                 f"depth {meta.get('depth', '?')}; brd, mem and the loop file: "
                 f"{meta.get('size_mb', '?')} MiB")
    if meta.get("peers"):
        lines.append(f"- peers: {meta['peers']}")
    if host:
        lines.append(f"- host: {host}")
    lines += ["", "> Measured in a QEMU TCG (software-emulated) VM: the absolute numbers mean "
              "nothing about real hardware. Only ratios between cases of one run count.", ""]

    case_names, workload_names = names(summary)
    lines += ["## IOPS", "",
              "Median of the repetitions. Cases: SERVER-TARGET[-MODE]-Nq[Mj] (MODE: the data "
              "path, copy, uc = user copy, zc = zero copy, autozc = kublk's --auto_zc; Nq: "
              "queues; 2j: two fio jobs, one per CPU, IOPS summed; nbd-Nc: the kernel's NBD "
              "client with N connections); `-` is a cell the matrix does not have.", "",
              "| case | " + " | ".join(workload_names) + " |",
              "|---|" + "---:|" * len(workload_names)]
    for case in case_names:
        lines.append(f"| {case} | " + " | ".join(
            fmt(value(summary, case, w, "iops")) if planned(summary, case, w) else "-"
            for w in workload_names) + " |")

    lines += ["", "## QD1 latency", "",
              f"{QD1}: completion latency (fio's clat: from submission to the kernel to the "
              "completion) percentiles, medians of the repetitions, in µs.", ""]
    lines += table_head(qd1_rows, "| case | IOPS | p50 | p99 | p99.9 | mean total lat |",
                        "|---|---:|---:|---:|---:|---:|")
    for r in qd1_rows:
        lines.append(f"| {r['case']} | {fmt(r['iops'])} | {fmt(r['clat_p50_ns'], 1, 1000)} "
                     f"| {fmt(r['clat_p99_ns'], 1, 1000)} | {fmt(r['clat_p999_ns'], 1, 1000)} "
                     f"| {fmt(r['lat_mean_ns'], 1, 1000)} |")

    lines += ["", "## Scaling", "",
              "IOPS with 1 queue and 1 fio job, 2 queues and 1 job (all I/O through the queue "
              "of fio's CPU), 2 queues and 2 jobs (one per CPU, each at the workload's depth); "
              "scaling: 2q2j / 1q1j.", ""]
    lines += table_head(scaling_rows, "| server | workload | 1q 1j | 2q 1j | 2q 2j | scaling |",
                        "|---|---|---:|---:|---:|---:|")
    for r in scaling_rows:
        lines.append(f"| {r['server']} | {r['workload']} | {fmt(r['1q1j'])} | {fmt(r['2q1j'])} "
                     f"| {fmt(r['2q2j'])} | {fmt(r['scaling'], 2)} |")

    lines += ["", "## Results", "",
              "Median of the repetitions; latency is fio's total latency (submission to "
              "completion). CPU and context switches are the server process's (all threads) "
              "over the fio run, per I/O completed by the device; n/a for kernel drivers. "
              "Spread: (max - min) / median of the repetitions' IOPS.", "",
              "| case | workload | IOPS | spread | mean lat (µs) | p99 lat (µs) | CPU s / M I/O | "
              "ctx sw / I/O | peak RSS (MiB) | runs |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    expected = repeat * boots if repeat else None
    for case in case_names:
        for workload in workload_names:
            cell = cells.get(case, {}).get(workload)
            if cell is None and not planned(summary, case, workload):
                continue
            med = cell["median"] if cell else dict.fromkeys(METRICS)
            runs = len(cell["runs"]) if cell else 0
            rss = cell["peak_rss_kb"] if cell else None
            spread = cell["iops_spread"] if cell else None
            lines.append(
                f"| {case} | {workload} | {fmt(med['iops'])} | {fmt(spread, 0, 0.01)}"
                f"{'' if spread is None else '%'} | {fmt(med['lat_mean_ns'], 1, 1000)} "
                f"| {fmt(med['lat_p99_ns'], 1, 1000)} | {fmt(med['cpu_s_per_m'], 2)} "
                f"| {fmt(med['ctx_per_io'], 3)} | {fmt(rss, 1, 1024)} "
                f"| {runs}{'/' + str(expected) if expected else ''} |")

    lines += ["", "## Targets", "",
              "Ours / theirs, medians of the same run: IOPS must reach the target, CPU seconds "
              "per million I/Os and p99 completion latency must stay under it. A target for "
              "one kernel series is n/a on another.", ""]
    for group in dict.fromkeys(r["group"] for r in ratio_rows):
        lines += [f"### {group}", "", "| ours | theirs | workload | metric | ratio | target | status |",
                  "|---|---|---|---|---:|---:|---|"]
        for r in ratio_rows:
            if r["group"] != group:
                continue
            ours = r["ours"] if r["ours"] == r["ours_case"] or not r["ours_case"] \
                else f"{r['ours']} ({r['ours_case']})"
            lines.append(f"| {ours} | {r['theirs']} | {r['workload']} | {METRIC_NAMES[r['metric']]} "
                         f"| {fmt(r['ratio'], 3)} | {r['op']} {r['target']} | {r['status']} |")
        lines.append("")
    # A cell none of them ran is left out here; results.json has its row.
    shown = [r for r in cpu_rows if any(r[k] is not None for k in ["ublk"] + PEERS)]
    lines += ["CPU seconds per million I/Os: ublk's must be below kublk's and rublk's.", ""]
    lines += table_head(shown, "| case | workload | ublk | kublk | rublk | status |",
                        "|---|---|---:|---:|---:|---|")
    for r in shown:
        lines.append(f"| {r['case']} | {r['workload']} | {fmt(r['ublk'], 2)} | {fmt(r['kublk'], 2)} "
                     f"| {fmt(r['rublk'], 2)} | {r['status']} |")

    lines += ["", "## NBD: our client against the kernel's", "",
              "ublk-nbd-Nq (this project's nbd target, N queues, a connection each) and nbd-Nc "
              "(the kernel's nbd.ko, N connections), clients of one NBD server (qemu-nbd) on the "
              "same file; medians of the same run. Ratio: ours / the kernel's (higher is better "
              "for IOPS, lower for p99 completion latency). CPU: our server process's; the "
              "kernel's client has none to measure.", ""]
    lines += table_head(nbd_rows, "| ours | kernel's | workload | IOPS ours | IOPS kernel's "
                        "| IOPS ratio | p99 clat ours (µs) | p99 clat kernel's (µs) "
                        "| p99 ratio | CPU s / M I/O ours |",
                        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in nbd_rows:
        lines.append(f"| {r['ours']} | {r['kernel']} | {r['workload']} | {fmt(r['ours_iops'])} "
                     f"| {fmt(r['kernel_iops'])} | {fmt(r['iops_ratio'], 3)} "
                     f"| {fmt(r['ours_clat_p99_ns'], 1, 1000)} "
                     f"| {fmt(r['kernel_clat_p99_ns'], 1, 1000)} "
                     f"| {fmt(r['clat_p99_ns_ratio'], 3)} | {fmt(r['ours_cpu_s_per_m'], 2)} |")

    lines += ["", "## Failures", ""]
    if not summary["errors"]:
        lines.append("None.")
    seen = set()
    for e in summary["errors"]:
        key = (e["case"], e.get("workload"), e.get("reason"))
        if key in seen:
            continue
        seen.add(key)
        same = [x for x in summary["errors"] if (x["case"], x.get("workload"), x.get("reason")) == key]
        if boots > 1:
            when = "boot/repetition " + ", ".join(f"{x['boot']}/{x.get('rep')}" for x in same)
        else:
            when = "repetition " + ", ".join(str(x.get("rep")) for x in same)
        where = e["case"] + (f" {e['workload']}" if e.get("workload") else "")
        lines.append(f"- {where} ({when}): {e.get('reason')}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", metavar="LOG", help="console logs, one per boot")
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
    case_names, workload_names = names(summary)
    ratio_rows, cpu_rows = ratios(summary), cpu_comparisons(summary)
    scaling_rows = scaling(summary, case_names, workload_names)
    qd1_rows = qd1_latency(summary, case_names)
    nbd_rows = nbd_comparisons(summary, case_names, workload_names)
    date = args.date
    if date is None:
        date = time.strftime("%Y-%m-%d %H:%M %Z",
                             time.localtime(max(os.path.getmtime(p) for p in args.logs)))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"date": date, "host": args.host, **summary, "qd1_latency": qd1_rows,
                   "scaling": scaling_rows, "ratios": ratio_rows, "cpu": cpu_rows,
                   "nbd": nbd_rows}, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary, ratio_rows, cpu_rows, scaling_rows, qd1_rows, nbd_rows, date,
                         args.host))
    for r in ratio_rows:
        what = "" if r["metric"] == "iops" else f" {METRIC_NAMES[r['metric']]}"
        print(f"{r['ours']} / {r['theirs']} {r['workload']}{what}: {fmt(r['ratio'], 3)} "
              f"(target {r['op']} {r['target']}): {r['status']}")
    for r in cpu_rows:
        print(f"CPU s/M I/O {r['case']} {r['workload']}: ublk {fmt(r['ublk'], 2)}, "
              f"kublk {fmt(r['kublk'], 2)}, rublk {fmt(r['rublk'], 2)}: {r['status']}")
    for r in nbd_rows:
        print(f"NBD {r['ours']} / {r['kernel']} {r['workload']}: IOPS {fmt(r['iops_ratio'], 3)}, "
              f"p99 clat {fmt(r['clat_p99_ns_ratio'], 3)}")
    print(f"report.py: wrote {args.out}/results.md and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
