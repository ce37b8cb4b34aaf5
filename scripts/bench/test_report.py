#!/usr/bin/env python3
"""Checks scripts/bench/report.py on a recorded console (testdata/console.log): that it finds
the records among other lines (kernel messages, CR line ends, a line a kernel message cut in
two), takes medians, computes the ratios and their status, and says n/a for what is missing.

    python3 scripts/bench/test_report.py      (scripts/test.sh runs it; no VM, a second)

The fixture, made by hand: 3 repetitions; null_blk randread QD64 100K/90K/110K IOPS against
ublk-null-1q 99K/97K/120K (medians 100K and 99K: 0.99, met); ublk-null-1q QD1 13K median
against kublk's 10K (two runs, the third failed: 1.3, met exactly at the target); ublk-loop-1q
45K against loop's 50K (0.9, not met); ublk-mem-1q 76K/50K against brd's 80K/60K (0.95 met,
0.833 not met); rublk failed to start in every repetition; no 2-queue case at all. Servers did
1M I/Os per run: ublk-null-1q used 30/32/28 ticks (median 0.30 CPU s per M I/O at 100 Hz),
kublk 40/40/41 (0.40).
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402

FIXTURE = os.path.join(HERE, "testdata", "console.log")


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="bench-report-")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cls.code = report.main(["-o", cls.out, "--date", "2026-01-01", FIXTURE])
        cls.stdout, cls.stderr = stdout.getvalue(), stderr.getvalue()
        with open(os.path.join(cls.out, "results.json"), encoding="utf-8") as f:
            cls.json = json.load(f)
        with open(os.path.join(cls.out, "results.md"), encoding="utf-8") as f:
            cls.md = f.read()

    def cell(self, case, workload):
        return self.json["cells"][case][workload]

    def ratio(self, ours, theirs, workload):
        (row,) = [r for r in self.json["ratios"]
                  if (r["ours"], r["theirs"], r["workload"]) == (ours, theirs, workload)]
        return row

    def test_exits_0_and_warns_about_the_cut_line(self):
        self.assertEqual(self.code, 0)
        self.assertIn("unreadable record", self.stderr)

    def test_every_record_is_found(self):
        runs = sum(len(c["runs"]) for w in self.json["cells"].values() for c in w.values())
        self.assertEqual(runs, 3 * 13 - 1)  # 13 cells, kublk's third QD1 run failed
        self.assertEqual(len(self.json["errors"]), 4)
        self.assertEqual(self.json["meta"]["kernel"], "7.3.4+deb13-cloud-amd64")

    def test_medians(self):
        self.assertEqual(self.cell("null_blk", "randread-4k-qd64")["median"]["iops"], 100000)
        ublk = self.cell("ublk-null-1q", "randread-4k-qd64")
        self.assertEqual(ublk["median"]["iops"], 99000)
        self.assertEqual(ublk["median"]["lat_mean_ns"], 641000)
        self.assertAlmostEqual(ublk["median"]["cpu_s_per_m"], 0.30)
        self.assertAlmostEqual(ublk["median"]["ctx_per_io"], 0.5)
        self.assertEqual(ublk["peak_rss_kb"], 4096)
        self.assertEqual(len(self.cell("kublk-null-1q", "randread-4k-qd1")["runs"]), 2)

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
        ]
        for key, value, status in cases:
            with self.subTest(key=key):
                row = self.ratio(*key)
                self.assertAlmostEqual(row["ratio"], value)
                self.assertEqual(row["status"], status)

    def test_missing_cases_are_na(self):
        row = self.ratio("ublk-null-2q", "null_blk", "randread-4k-qd64")
        self.assertIsNone(row["ratio"])
        self.assertEqual(row["status"], "n/a")
        self.assertIn("| ublk-null-2q | null_blk | randread-4k-qd64 | n/a | >= 0.98 | n/a |", self.md)
        self.assertIn("| rublk-null-1q | randread-4k-qd64 | n/a | n/a | n/a | n/a | n/a | n/a | n/a "
                      "| 0/3 |", self.md)

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
                      "| 0.500 | 4.0 | 3/3 |", self.md)
        self.assertIn("| null_blk | n/a | 100,000 | n/a |", self.md)
        self.assertIn("| ublk-null-1q | kublk-null-1q | randread-4k-qd1 | 1.300 | >= 1.3 | met |",
                      self.md)
        self.assertIn("- rublk-null-1q (repetition 1, 2, 3): rublk is not in the payload", self.md)
        self.assertIn("ublk-null-1q / null_blk randread-4k-qd64: 0.990 (target >= 0.98): met",
                      self.stdout)
        self.assertIn("ublk-mem-1q / brd randwrite-4k-qd64: 0.833 (target >= 0.9): not met",
                      self.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=1)
