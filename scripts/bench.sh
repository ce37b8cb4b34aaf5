#!/usr/bin/env bash
# Benchmarks ublk's servers against the kernel's own drivers and two peer servers, with fio, in
# the test VM (QEMU TCG, 2 vCPUs, the newest 7.x kernel), and writes target/bench/results.md
# (and results.json): a table of case x workload, then the ratios the project aims for, each
# marked met or not met. A full run takes about 20 minutes of VM time.
#
#   scripts/bench.sh                    the whole matrix, in a VM
#   BENCH_CASES='null' BENCH_WORKLOADS='qd64' BENCH_REPEAT=1 scripts/bench.sh
#                                       a few cells only (each filter is an extended regex)
#   scripts/bench.sh --host             on this machine instead (root, modprobe ublk_drv, fio;
#                                       reloads null_blk and brd, makes ublk devices from id 0)
#   scripts/bench.sh --help             this text
#
# Cases: the kernel's null_blk (queue_mode=2 irqmode=0), brd, and loop (--direct-io=on over a
# file in tmpfs); ublk's null, mem and loop targets with 1 and 2 queues; the peers kublk (the
# kernel's selftest server) and rublk (crates.io) on null and loop, 1 and 2 queues. Servers run
# at depth 128. Peers are built once into ~/.cache/ublk-bench (scripts/bench/peers.sh); one that
# cannot be built, or cannot start, shows n/a with the reason.
# Workloads (fio, io_uring, direct=1, one job): 4k randread QD1 and QD64, 4k randwrite QD64,
# 128k sequential read QD16. Each runs BENCH_RUNTIME seconds after BENCH_RAMP of warm-up, on
# every case in turn, and the whole round is repeated BENCH_REPEAT times: the report has medians.
# With one fio job, a 2-queue device gets its I/O through the queue of the CPU fio runs on.
#
# Environment:
#   BENCH_CASES, BENCH_WORKLOADS   regexes selecting cases and workloads (default: all)
#   BENCH_RUNTIME (3), BENCH_RAMP (1), BENCH_REPEAT (3)   seconds, seconds, repetitions
#   BENCH_SIZE_MB (1024)     size of brd, of the mem target and of the loop file
#   BENCH_REBUILD_PEERS=1    rebuild kublk and rublk (also after a remembered failure)
#   VM_MEMORY (4G), VM_TIMEOUT (from the matrix size), KERNEL, UBLK_VM_CACHE: see vm-test.sh
# Output: target/bench/console.log (the guest's console), results.md, results.json.
# Exits non-zero if the VM fails or no result came out; failed cells alone do not.
set -euo pipefail

host=0
case "${1:-}" in
    --host) host=1 ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    "") ;;
    *)
        echo "bench.sh: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
esac

cd "$(dirname "$0")/.."
# 4G, not the tests' 2G: brd or the mem target (1 GiB) and the loop file in tmpfs (1 GiB) are
# in the guest's memory at the same time, besides the initramfs. Set before common.sh defaults it.
VM_MEMORY=${VM_MEMORY:-4G}
timeout_wanted=${VM_TIMEOUT:-} # common.sh's default (1200 s) is too short for the whole matrix
# shellcheck source=scripts/vm/lib.sh
source scripts/vm/lib.sh
# shellcheck source=scripts/bench/peers.sh
source scripts/bench/peers.sh
out=target/bench
log=$out/console.log
mkdir -p "$out"

# --- Tools: the VM's, and what building the peers needs (gcc for kublk, xz for its source).
if [ "$host" -eq 1 ]; then vm_install_build_deps; else vm_install_deps; fi
vm_need_commands gcc:gcc make:make xz:xz-utils fio:fio losetup:mount python3:python3 \
    apt-get:apt dpkg-deb:dpkg /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
[ "$host" -eq 1 ] || vm_check_kernel_choice
# The kernel first: kublk is built from the selftests of the same kernel series.
[ "$host" -eq 1 ] || vm_fetch_kernel

# --- Payload: ublk (release, static), the peers, the guest script and its settings.
payload=target/vm/bench
vm_build_payload "$payload"
# Only the ublk command is needed here: the end-to-end tests and the examples would only make
# the initramfs bigger.
for name in "${VM_TEST_NAMES[@]}"; do rm -f "${payload:?}/$name"; done
find "$payload/bin" -type f ! -name ublk -delete
: >"$payload/peers.txt"
bench_peers "$payload/bin" "$payload/peers.txt"
install -m 0755 scripts/bench/guest.sh "$payload/run.sh"
# The settings given, single-quoted for sh (dash on a --host run has no $'...'): 'it'\''s'.
{
    for var in BENCH_CASES BENCH_WORKLOADS BENCH_RUNTIME BENCH_RAMP BENCH_REPEAT BENCH_SIZE_MB; do
        [ -z "${!var:-}" ] || printf "%s='%s'\n" "$var" "${!var//\'/\'\\\'\'}"
    done
} >"$payload/bench.env"

# --- Run: the guest script, in the VM or here.
# The host's load goes into the report: another VM on this machine slows every case down.
load() { cut -d ' ' -f 1-3 /proc/loadavg; }
load_before=$(load)
rc=0
if [ "$host" -eq 1 ]; then
    vm_require_host_driver
    command -v fio >/dev/null || vm_die "--host needs fio"
    vm_log "running the benchmark on this machine ($(uname -r)); console copy: $log"
    "$payload/run.sh" 2>&1 | tee "$log" || rc=$?
else
    initramfs="target/vm/bench-$VM_KVER.cpio"
    vm_build_initramfs "$initramfs" "$payload" "null_blk brd loop" "fio losetup"
    # Bound the VM by the size of the matrix: every fio run is ramp + runtime plus a few
    # seconds of start-up under TCG, plus set-up time per case; twice that, plus boot.
    cases=17 workloads=4
    runs=$((cases * workloads * ${BENCH_REPEAT:-3}))
    estimate=$((runs * (${BENCH_RAMP:-1} + ${BENCH_RUNTIME:-3} + 4) + cases * ${BENCH_REPEAT:-3} * 20))
    VM_TIMEOUT=${timeout_wanted:-$((2 * estimate + 300))} vm_boot "$initramfs" "$log" || rc=$?
    rm -f "$initramfs"
fi

# --- Report: whatever records the log has, even after a failure.
host_info="$(nproc) CPUs; load average $load_before before the run, $(load) after"
if ! python3 scripts/bench/report.py -o "$out" --host "$host_info" "$log"; then
    vm_die "no benchmark result in $log (exit $rc)"
fi
cat "$out/results.md"
[ "$rc" -eq 0 ] || vm_die "the benchmark run failed (exit $rc): see $log; the report has what it measured"
vm_log "report: $out/results.md, $out/results.json"
