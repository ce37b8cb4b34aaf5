#!/usr/bin/env python3
"""Checks scripts/bench/report.py on a recorded console (testdata/console.log and, as a second
boot of the same run, console-2.log): that it finds the records among other lines (kernel
messages, CR line ends, a line a kernel message cut in two), takes medians over every repetition
of every boot, computes the ratios, scaling and QD1 percentiles and their status, and says n/a
for what is missing; the NBD comparison (our client against the kernel's) on a log of its own;
guest.sh's fio_numbers on two outputs of fio 3.33 (testdata/fio-*.json), and its plan.

    python3 scripts/bench/test_report.py      (scripts/test.sh runs it; no VM, a second)

The fixture, made by hand: 3 repetitions; null_blk randread QD64 100K/90K/110K IOPS against
ublk-null-1q 99K/97K/120K (medians 100K and 99K: 0.99, met); ublk-null-1q QD1 13K median
against kublk's 10K (two runs, the third failed: 1.3, met exactly at the target); ublk-loop-1q
45K against loop's 50K (0.9, not met); ublk-mem-1q 76K/50K against brd's 80K/60K (0.95 met,
0.833 not met); rublk failed to start in every repetition. Servers did 1M I/Os per run:
ublk-null-1q used 30/32/28 ticks (median 0.30 CPU s per M I/O at 100 Hz), kublk 40/40/41 (0.40).
The records of the kinds issues #15 and #16 added:
- QD1 completion latency: ublk-null-1q p50/p99/p99.9 61/95/250 µs (medians), kublk's p99
  110/120 (115: 95/115 = 0.826, met); kublk's second p50 is null (fio gave none).
- Two jobs: ublk-null-2q 61K and ublk-null-2q2j 150K/160K/155K in boot 1 and 140K/170K in boot 2
  (median of the five: 155K; 155/99 = 1.566, met); ublk-mem-2q2j randwrite 70K (1.4, not met).
- go-ublk: go-ublk-mem-1q randread 40K/50K/45K + 44K/46K (45K: ublk-mem-1q's 76K is 1.689 of it,
  met), randwrite 40K (1.25, not met), 1.0 CPU s per M I/O (ours 0.5: 0.5 <= 0.7, met);
  go-ublk-mem-2q2j failed to start in the first repetition of each boot, then 30K, 30K, 32K.
- Data paths: ublk-null-zc-1q fails ("unknown option --data-path"), kublk-null-zc-1q is n/a
  ("kernel lacks SUPPORT_ZERO_COPY"); ublk-loop-zc-1q 128k 4200 against loop's 4000 (1.05, met
  on 7.x); ublk-mem-copy-1q 1000 and -uc-1q 2000 at 128k (2.0, a 6.12 target: n/a on 7.3), the
  best of them against brd's 6000 (uc: 0.333, not met); ublk-null-copy-1q QD64 90K and 0.30 CPU
  against kublk-null-1q's 95K and 0.40 (0.947 not met; 0.75 met).
Boot 2 stopped (a VM timeout) after two repetitions of three cases.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402

FIXTURE = os.path.join(HERE, "testdata", "console.log")
FIXTURE_BOOT2 = os.path.join(HERE, "testdata", "console-2.log")


def run_report(*logs):
    """report.main on LOGS into a new directory: (exit code, stdout, stderr, json, markdown)."""
    out = tempfile.mkdtemp(prefix="bench-report-")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = report.main(["-o", out, "--date", "2026-01-01", *logs])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        data = json.load(f)
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        md = f.read()
    return code, stdout.getvalue(), stderr.getvalue(), data, md


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.code, cls.stdout, cls.stderr, cls.json, cls.md = run_report(FIXTURE, FIXTURE_BOOT2)

    def cell(self, case, workload):
        return self.json["cells"][case][workload]

    def ratio(self, ours, theirs, workload, metric="iops"):
        (row,) = [r for r in self.json["ratios"]
                  if (r["ours"], r["theirs"], r["workload"], r["metric"])
                  == (ours, theirs, workload, metric)]
        return row

    def test_exits_0_and_warns_about_the_cut_line(self):
        self.assertEqual(self.code, 0)
        self.assertIn("unreadable record", self.stderr)

    def test_every_record_is_found(self):
        runs = sum(len(c["runs"]) for w in self.json["cells"].values() for c in w.values())
        # Boot 1: 13 cells of 3 (kublk's third QD1 run failed), 12 new cells of 3, go-ublk's
        # 2q2j twice; boot 2: 5 runs.
        self.assertEqual(runs, (3 * 13 - 1) + (3 * 12 + 2) + 5)
        # rublk 3, kublk's QD1 1, ublk zc 3, kublk zc 3, go-ublk 2q2j 1 + 1 (boot 2).
        self.assertEqual(len(self.json["errors"]), 12)
        self.assertEqual(self.json["meta"]["kernel"], "7.3.4+deb13-cloud-amd64")
        self.assertEqual(self.json["boots"], 2)
        self.assertEqual(sorted({r["boot"] for r in self.cell("go-ublk-mem-1q", "randread-4k-qd64")["runs"]}),
                         [1, 2])
        self.assertEqual(self.json["plan"]["ublk-loop-zc-1q"], ["randread-4k-qd64", "read-128k-qd16"])

    def test_medians(self):
        self.assertEqual(self.cell("null_blk", "randread-4k-qd64")["median"]["iops"], 100000)
        ublk = self.cell("ublk-null-1q", "randread-4k-qd64")
        self.assertEqual(ublk["median"]["iops"], 99000)
        self.assertEqual(ublk["median"]["lat_mean_ns"], 641000)
        self.assertAlmostEqual(ublk["median"]["cpu_s_per_m"], 0.30)
        self.assertAlmostEqual(ublk["median"]["ctx_per_io"], 0.5)
        self.assertEqual(ublk["peak_rss_kb"], 4096)
        self.assertEqual(len(self.cell("kublk-null-1q", "randread-4k-qd1")["runs"]), 2)

    def test_medians_over_every_boot(self):
        # 150K, 160K, 155K in boot 1, 140K and 170K in boot 2: the median of all five.
        both = self.cell("ublk-null-2q2j", "randread-4k-qd64")
        self.assertEqual(len(both["runs"]), 5)
        self.assertEqual(both["median"]["iops"], 155000)
        self.assertEqual(both["jobs"], 2)
        self.assertEqual(self.cell("go-ublk-mem-1q", "randread-4k-qd64")["median"]["iops"], 45000)
        self.assertEqual(self.cell("go-ublk-mem-2q2j", "randread-4k-qd64")["median"]["iops"], 30000)

    def test_qd1_percentiles(self):
        med = self.cell("ublk-null-1q", "randread-4k-qd1")["median"]
        self.assertEqual((med["clat_p50_ns"], med["clat_p99_ns"], med["clat_p999_ns"]),
                         (61000, 95000, 250000))
        kublk = self.cell("kublk-null-1q", "randread-4k-qd1")["median"]
        # A null percentile is left out of the median, not taken as 0.
        self.assertEqual((kublk["clat_p50_ns"], kublk["clat_p99_ns"]), (70000, 115000))
        # Records from before the percentiles existed have none.
        self.assertIsNone(self.cell("ublk-null-1q", "randread-4k-qd64")["median"]["clat_p99_ns"])
        (row,) = [r for r in self.json["qd1_latency"] if r["case"] == "ublk-null-1q"]
        self.assertEqual(row["clat_p99_ns"], 95000)
        self.assertEqual(row["iops"], 13000)
        self.assertIn("| ublk-null-1q | 13,000 | 61.0 | 95.0 | 250.0 | 641.0 |", self.md)
        self.assertIn("| rublk-null-1q | n/a | n/a | n/a | n/a | n/a |", self.md)
        # Only the cases whose plan has QD1: no data-path case.
        self.assertNotIn("ublk-loop-zc-1q", [r["case"] for r in self.json["qd1_latency"]])

    def test_scaling(self):
        rows = {(r["server"], r["workload"]): r for r in self.json["scaling"]}
        null = rows[("ublk-null", "randread-4k-qd64")]
        self.assertEqual((null["1q1j"], null["2q1j"], null["2q2j"]), (99000, 61000, 155000))
        self.assertAlmostEqual(null["scaling"], 155 / 99)
        self.assertAlmostEqual(rows[("go-ublk-mem", "randread-4k-qd64")]["scaling"], 30 / 45)
        self.assertIsNone(rows[("ublk-mem", "randread-4k-qd64")]["scaling"])
        self.assertIn("| ublk-null | randread-4k-qd64 | 99,000 | 61,000 | 155,000 | 1.57 |", self.md)

    def test_kernel_drivers_have_no_server_numbers(self):
        med = self.cell("brd", "randread-4k-qd64")["median"]
        self.assertIsNone(med["cpu_s_per_m"])
        self.assertIsNone(self.cell("brd", "randread-4k-qd64")["peak_rss_kb"])

    def test_ratios(self):
        cases = [
            (("ublk-null-1q", "null_blk", "randread-4k-qd64"), 0.99, "met"),
            (("ublk-null-1q", "kublk-null-1q", "randread-4k-qd1"), 1.3, "met"),
            (("ublk-loop-1q", "loop", "randread-4k-qd64"), 0.9, "not met"),
            (("ublk-loop-1q", "loop", "randwrite-4k-qd64"), 1.1, "met"),
            (("ublk-mem-1q", "brd", "randread-4k-qd64"), 0.95, "met"),
            (("ublk-mem-1q", "brd", "randwrite-4k-qd64"), 50 / 60, "not met"),
            # go-ublk (#16)
            (("ublk-mem-1q", "go-ublk-mem-1q", "randread-4k-qd64"), 76 / 45, "met"),
            (("ublk-mem-1q", "go-ublk-mem-1q", "randwrite-4k-qd64"), 1.25, "not met"),
            (("ublk-mem-1q", "go-ublk-mem-1q", "randread-4k-qd64", "cpu_s_per_m"), 0.5, "met"),
            (("ublk-mem-1q", "go-ublk-mem-1q", "read-128k-qd16"), None, "n/a"),
            # QD1 tail and two jobs (#16)
            (("ublk-null-1q", "kublk-null-1q", "randread-4k-qd1", "clat_p99_ns"), 95 / 115, "met"),
            (("ublk-null-1q", "rublk-null-1q", "randread-4k-qd1", "clat_p99_ns"), None, "n/a"),
            (("ublk-null-2q2j", "ublk-null-1q", "randread-4k-qd64"), 155 / 99, "met"),
            (("ublk-mem-2q2j", "ublk-mem-1q", "randwrite-4k-qd64"), 1.4, "not met"),
            # Data paths (#15)
            (("ublk-loop-zc-1q", "loop", "read-128k-qd16"), 1.05, "met"),
            (("ublk-null-zc-1q", "null_blk", "read-128k-qd16"), None, "n/a"),
            (("ublk-mem-uc-1q", "ublk-mem-copy-1q", "read-128k-qd16"), 2.0,
             "n/a (a target for 6.12.x)"),
            (("ublk-null-copy-1q", "kublk-null-1q", "randread-4k-qd64"), 90 / 95, "not met"),
            (("ublk-null-copy-1q", "kublk-null-1q", "randread-4k-qd64", "cpu_s_per_m"), 0.75, "met"),
        ]
        for key, value, status in cases:
            with self.subTest(key=key):
                row = self.ratio(*key)
                if value is None:
                    self.assertIsNone(row["ratio"])
                else:
                    self.assertAlmostEqual(row["ratio"], value)
                self.assertEqual(row["status"], status)

    def test_best_data_path(self):
        best = "ublk-mem best data path"
        row = self.ratio(best, "brd", "read-128k-qd16")
        self.assertEqual(row["ours_case"], "ublk-mem-uc-1q")  # 2000 beats copy's 1000
        self.assertAlmostEqual(row["ratio"], 2000 / 6000)
        self.assertEqual(row["status"], "not met")
        self.assertEqual(self.ratio(best, "brd", "randread-4k-qd64")["ours_case"], "ublk-mem-1q")
        self.assertIn("| ublk-mem best data path (ublk-mem-uc-1q) | brd | read-128k-qd16 | IOPS "
                      "| 0.333 | >= 0.9 | not met |", self.md)

    def test_missing_cases_are_na(self):
        row = self.ratio("ublk-loop-2q", "loop", "randread-4k-qd64")
        self.assertIsNone(row["ratio"])
        self.assertEqual(row["status"], "n/a")
        self.assertIn("| ublk-loop-2q | loop | randread-4k-qd64 | IOPS | n/a | >= 1.0 | n/a |", self.md)
        self.assertIn("| rublk-null-1q | randread-4k-qd64 | n/a | n/a | n/a | n/a | n/a | n/a | n/a "
                      "| 0/6 |", self.md)
        # A data-path case: n/a where planned, "-" where the matrix has no cell.
        self.assertIn("| ublk-null-zc-1q | - | n/a | - | n/a |", self.md)
        self.assertIn("| ublk-loop-zc-1q | - | n/a | - | 4,200 |", self.md)
        self.assertNotIn("| ublk-loop-zc-1q | randwrite-4k-qd64 |", self.md)

    def test_cpu_against_the_peers(self):
        (row,) = [r for r in self.json["cpu"]
                  if (r["case"], r["workload"]) == ("null-1q", "randread-4k-qd64")]
        self.assertAlmostEqual(row["ublk"], 0.30)
        self.assertAlmostEqual(row["kublk"], 0.40)
        self.assertIsNone(row["rublk"])
        self.assertEqual(row["status"], "met (rublk n/a)")

    def test_markdown_and_stdout(self):
        self.assertIn("QEMU TCG", self.md)
        self.assertIn("- date: 2026-01-01", self.md)
        # IOPS 99K/97K/120K: spread (120 - 97) / 99 = 23%.
        self.assertIn("| ublk-null-1q | randread-4k-qd64 | 99,000 | 23% | 641.0 | 1,210.0 | 0.30 "
                      "| 0.500 | 4.0 | 3/6 |", self.md)
        self.assertIn("| null_blk | n/a | 100,000 | n/a |", self.md)
        self.assertIn("| ublk-null-1q | kublk-null-1q | randread-4k-qd1 | IOPS | 1.300 | >= 1.3 "
                      "| met |", self.md)
        self.assertIn("| ublk-mem-1q | go-ublk-mem-1q | randread-4k-qd64 | CPU s/M I/O | 0.500 "
                      "| <= 0.7 | met |", self.md)
        self.assertIn("- rublk-null-1q (boot/repetition 1/1, 1/2, 1/3): rublk is not in the payload",
                      self.md)
        self.assertIn("- go-ublk-mem-2q2j (boot/repetition 1/1, 2/1): 'go-ublk-mem", self.md)
        self.assertIn("- ublk-null-zc-1q (boot/repetition 1/1, 1/2, 1/3): 'ublk add -t null -n 7 "
                      "-q 1 -d 128 --data-path zero-copy' failed: error: unknown option --data-path",
                      self.md)
        self.assertIn("ublk-null-1q / null_blk randread-4k-qd64: 0.990 (target >= 0.98): met",
                      self.stdout)
        self.assertIn("ublk-mem-1q / brd randwrite-4k-qd64: 0.833 (target >= 0.9): not met",
                      self.stdout)
        self.assertIn("ublk-null-1q / kublk-null-1q randread-4k-qd1 p99 clat: 0.826 (target <= 1.0): "
                      "met", self.stdout)


class OneBootWithoutPlanTest(unittest.TestCase):
    """A log from before the guest printed its plan, on 6.12: every cell counts as planned,
    and the targets for 7.x are n/a while the one for 6.12 applies."""

    LOG = """\
BENCH-JSON {"type":"meta","kernel":"6.12.90+deb12.1-cloud-amd64","cpus":2,"hz":100,"repeat":1}
BENCH-JSON {"type":"run","case":"ublk-mem-copy-1q","workload":"read-128k-qd16","rep":1,"iops":1000.0,"ios":1000}
BENCH-JSON {"type":"run","case":"ublk-mem-uc-1q","workload":"read-128k-qd16","rep":1,"iops":1600.0,"ios":1000}
BENCH-JSON {"type":"run","case":"brd","workload":"read-128k-qd16","rep":1,"iops":1600.0,"ios":1000}
BENCH-JSON {"type":"error","case":"ublk-null-zc-1q","workload":null,"rep":1,"reason":"kernel lacks AUTO_BUF_REG"}
"""

    def test_no_plan(self):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(self.LOG)
        code, stdout, _, data, md = run_report(f.name)
        os.unlink(f.name)
        self.assertEqual(code, 0)
        self.assertIsNone(data["plan"])
        self.assertIn("| ublk-mem-copy-1q | 1,000 |", md)
        self.assertIn("| ublk-null-zc-1q | n/a |", md)
        self.assertIn("- ublk-null-zc-1q (repetition 1): kernel lacks AUTO_BUF_REG", md)
        # No QD1 record and no QD1 failure: an empty QD1 table (and no 2q2j for scaling, no
        # null or loop case for the CPU table, no NBD case for the NBD table).
        self.assertEqual(data["qd1_latency"], [])
        self.assertIn("## QD1 latency", md)
        self.assertEqual(data["nbd"], [])
        self.assertEqual(md.count("No cell of this table in this run."), 4)
        rows = {(r["ours"], r["workload"]): r for r in data["ratios"]}
        self.assertEqual(rows[("ublk-mem-uc-1q", "read-128k-qd16")]["status"], "met")
        best = rows[("ublk-mem best data path", "read-128k-qd16")]
        self.assertEqual((best["ratio"], best["status"]), (1.0, "n/a (a target for 7.x)"))
        self.assertIn("ublk-mem-uc-1q / ublk-mem-copy-1q read-128k-qd16: 1.600 (target >= 1.5): met",
                      stdout)


class NbdTest(unittest.TestCase):
    """Our NBD client against the kernel's: 2 repetitions of the NBD cases' three workloads.
    randread QD64: nbd-1c 10K/12K IOPS (median 11K), p99 clat 200/300 µs; ublk-nbd-1q 11K/13K
    (12K: 1.091 of the kernel's), the same p99s (1.0), 50 and 70 ticks for 1M I/Os (0.6 CPU s
    per M I/O). 128k: ublk-nbd-1q 1000 against 2000 (0.5). randwrite: ours failed both times
    (n/a). nbd-2c could not be set up (n/a everywhere), ublk-nbd-2q 9000 at randread."""

    PLAN = ('{"nbd-1c":["randread-4k-qd64","randwrite-4k-qd64","read-128k-qd16"],'
            '"ublk-nbd-1q":["randread-4k-qd64","randwrite-4k-qd64","read-128k-qd16"],'
            '"nbd-2c":["randread-4k-qd64","randwrite-4k-qd64","read-128k-qd16"],'
            '"ublk-nbd-2q":["randread-4k-qd64","randwrite-4k-qd64","read-128k-qd16"]}')
    LOG = f"""\
BENCH-JSON {{"type":"meta","kernel":"7.3.4+deb13-cloud-amd64","cpus":2,"hz":100,"repeat":2,"plan":{PLAN}}}
BENCH-JSON {{"type":"run","case":"nbd-1c","workload":"randread-4k-qd64","rep":1,"iops":10000.0,"clat_p99_ns":200000,"ios":1000000,"cpu_ticks":null}}
BENCH-JSON {{"type":"run","case":"ublk-nbd-1q","workload":"randread-4k-qd64","rep":1,"iops":11000.0,"clat_p99_ns":200000,"ios":1000000,"cpu_ticks":50,"server_pid":99}}
BENCH-JSON {{"type":"run","case":"nbd-1c","workload":"randwrite-4k-qd64","rep":1,"iops":8000.0,"clat_p99_ns":400000,"ios":1000000,"cpu_ticks":null}}
BENCH-JSON {{"type":"error","case":"ublk-nbd-1q","workload":"randwrite-4k-qd64","rep":1,"reason":"fio failed: Input/output error"}}
BENCH-JSON {{"type":"run","case":"nbd-1c","workload":"read-128k-qd16","rep":1,"iops":2000.0,"ios":1000000,"cpu_ticks":null}}
BENCH-JSON {{"type":"run","case":"ublk-nbd-1q","workload":"read-128k-qd16","rep":1,"iops":1000.0,"ios":1000000,"cpu_ticks":300}}
BENCH-JSON {{"type":"error","case":"nbd-2c","workload":null,"rep":1,"reason":"'nbd-client -N bench 127.0.0.1 10809 /dev/nbd0 -C 2' failed"}}
BENCH-JSON {{"type":"run","case":"ublk-nbd-2q","workload":"randread-4k-qd64","rep":1,"iops":9000.0,"ios":1000000,"cpu_ticks":80}}
BENCH-JSON {{"type":"run","case":"nbd-1c","workload":"randread-4k-qd64","rep":2,"iops":12000.0,"clat_p99_ns":300000,"ios":1000000,"cpu_ticks":null}}
BENCH-JSON {{"type":"run","case":"ublk-nbd-1q","workload":"randread-4k-qd64","rep":2,"iops":13000.0,"clat_p99_ns":300000,"ios":1000000,"cpu_ticks":70,"server_pid":99}}
BENCH-JSON {{"type":"error","case":"ublk-nbd-1q","workload":"randwrite-4k-qd64","rep":2,"reason":"fio failed: Input/output error"}}
BENCH-JSON {{"type":"error","case":"nbd-2c","workload":null,"rep":2,"reason":"'nbd-client -N bench 127.0.0.1 10809 /dev/nbd0 -C 2' failed"}}
"""

    @classmethod
    def setUpClass(cls):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(cls.LOG)
        cls.code, cls.stdout, _, cls.json, cls.md = run_report(f.name)
        os.unlink(f.name)
        cls.rows = {(r["ours"], r["workload"]): r for r in cls.json["nbd"]}

    def test_a_row_per_pair_and_planned_workload(self):
        self.assertEqual(self.code, 0)
        self.assertEqual(len(self.json["nbd"]), 6)
        self.assertEqual({r["kernel"] for r in self.json["nbd"] if r["ours"] == "ublk-nbd-2q"},
                         {"nbd-2c"})

    def test_ratios(self):
        row = self.rows[("ublk-nbd-1q", "randread-4k-qd64")]
        self.assertEqual((row["ours_iops"], row["kernel_iops"]), (12000, 11000))
        self.assertAlmostEqual(row["iops_ratio"], 12 / 11)
        self.assertEqual(row["clat_p99_ns_ratio"], 1.0)
        self.assertAlmostEqual(row["ours_cpu_s_per_m"], 0.6)
        self.assertEqual(self.rows[("ublk-nbd-1q", "read-128k-qd16")]["iops_ratio"], 0.5)
        # No percentile in the 128k records: n/a, not 0.
        self.assertIsNone(self.rows[("ublk-nbd-1q", "read-128k-qd16")]["clat_p99_ns_ratio"])

    def test_missing_is_na(self):
        write = self.rows[("ublk-nbd-1q", "randwrite-4k-qd64")]
        self.assertEqual((write["ours_iops"], write["kernel_iops"], write["iops_ratio"]),
                         (None, 8000, None))
        two = self.rows[("ublk-nbd-2q", "randread-4k-qd64")]
        self.assertEqual((two["ours_iops"], two["kernel_iops"], two["iops_ratio"]),
                         (9000, None, None))

    def test_the_kernels_client_has_no_server(self):
        med = self.json["cells"]["nbd-1c"]["randread-4k-qd64"]["median"]
        self.assertIsNone(med["cpu_s_per_m"])
        self.assertAlmostEqual(self.json["cells"]["ublk-nbd-2q"]["randread-4k-qd64"]["median"]
                               ["cpu_s_per_m"], 0.8)

    def test_markdown_and_stdout(self):
        self.assertIn("## NBD: our client against the kernel's", self.md)
        self.assertIn("| ublk-nbd-1q | nbd-1c | randread-4k-qd64 | 12,000 | 11,000 | 1.091 "
                      "| 250.0 | 250.0 | 1.000 | 0.60 |", self.md)
        self.assertIn("| ublk-nbd-1q | nbd-1c | randwrite-4k-qd64 | n/a | 8,000 | n/a | n/a "
                      "| 400.0 | n/a | n/a |", self.md)
        self.assertIn("| ublk-nbd-2q | nbd-2c | randread-4k-qd64 | 9,000 | n/a | n/a |", self.md)
        # The IOPS table, in CASES' order, has only the planned workloads: no QD1 column.
        self.assertIn("| case | randread-4k-qd64 | randwrite-4k-qd64 | read-128k-qd16 |", self.md)
        self.assertIn("| nbd-1c | 11,000 | 8,000 | 2,000 |\n| ublk-nbd-1q | 12,000 | n/a | 1,000 |\n"
                      "| nbd-2c | n/a | n/a | n/a |\n| ublk-nbd-2q | 9,000 | n/a | n/a |", self.md)
        self.assertIn("- nbd-2c (repetition 1, 2): 'nbd-client -N bench", self.md)
        self.assertIn("NBD ublk-nbd-1q / nbd-1c randread-4k-qd64: IOPS 1.091, p99 clat 1.000",
                      self.stdout)
        self.assertIn("NBD ublk-nbd-2q / nbd-2c read-128k-qd16: IOPS n/a, p99 clat n/a",
                      self.stdout)

    def test_the_recorded_run_has_no_nbd_rows(self):
        _, _, _, data, md = run_report(FIXTURE)
        self.assertEqual(data["nbd"], [])
        self.assertIn("## NBD: our client against the kernel's\n\n", md)


class PlanTest(unittest.TestCase):
    """guest.sh --plan (what bench.sh sizes the VM's timeout with), run by sh from a copy with
    the bench.env bench.sh would write: the NBD cases and their workloads."""

    def plan(self, env):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(HERE, "guest.sh"), encoding="utf-8") as src, \
                    open(os.path.join(d, "run.sh"), "w", encoding="utf-8") as dst:
                dst.write(src.read())
            with open(os.path.join(d, "bench.env"), "w", encoding="utf-8") as f:
                f.write(env)
            out = subprocess.run(["sh", os.path.join(d, "run.sh"), "--plan"],
                                 capture_output=True, text=True, check=True)
        return dict(line.split(" ", 1) for line in out.stdout.splitlines())

    def test_nbd_cases(self):
        nbd = "randread-4k-qd64 randwrite-4k-qd64 read-128k-qd16"
        self.assertEqual(self.plan("BENCH_CASES='nbd'\n"),
                         {"nbd-1c": nbd, "ublk-nbd-1q": nbd, "nbd-2c": nbd, "ublk-nbd-2q": nbd})
        self.assertEqual(self.plan("BENCH_CASES='^nbd'\nBENCH_WORKLOADS='randwrite'\n"),
                         {"nbd-1c": "randwrite-4k-qd64", "nbd-2c": "randwrite-4k-qd64"})

    def test_the_whole_matrix(self):
        plan = self.plan("")
        self.assertEqual(list(plan)[-4:], ["nbd-1c", "ublk-nbd-1q", "nbd-2c", "ublk-nbd-2q"])
        self.assertEqual(plan["ublk-loop-zc-1q"], "randread-4k-qd64 read-128k-qd16")
        self.assertEqual(plan["ublk-null-1q"].split(), report.WORKLOADS)
        # Every case of the guest's matrix has its place in the report's order.
        self.assertEqual(list(plan), report.CASES)


class FioNumbersTest(unittest.TestCase):
    """guest.sh's fio_numbers (awk over fio's JSON) on real fio 3.33 outputs: two jobs with
    group_reporting (one summed job), and a write workload (the direction that did the I/O)."""

    def fio_numbers(self, name):
        with open(os.path.join(HERE, "guest.sh"), encoding="utf-8") as f:
            # From its first line to its last: the awk program's closing quote, then "}".
            (func,) = re.findall(r"^fio_numbers\(\) \{\n.*?^\}' \"\$1\"\n\}\n", f.read(),
                                 re.S | re.M)
        path = os.path.join(HERE, "testdata", name)
        out = subprocess.run(["sh", "-c", func + 'fio_numbers "$1"', "sh", path],
                             capture_output=True, text=True, check=True)
        return out.stdout.split()

    def test_two_jobs_group_reported(self):
        self.assertEqual(self.fio_numbers("fio-randread-2jobs.json"),
                         ["1287647.4", "1389", "1736", "90", "120", "161"])

    def test_write(self):
        self.assertEqual(self.fio_numbers("fio-randwrite-1job.json"),
                         ["83704.3", "763517", "2375680", "460800", "2342912", "5341184"])


if __name__ == "__main__":
    unittest.main(verbosity=1)
