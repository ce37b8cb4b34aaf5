#!/usr/bin/env bash
# Benchmarks ublk's servers against the kernel's own drivers and three peer servers, with fio, in
# the test VM (QEMU TCG, 2 vCPUs, the newest 7.x kernel), and writes target/bench/results.md
# (and results.json): a table of case x workload, QD1 latency percentiles, how each server scales
# from 1 queue and 1 fio job to 2 and 2, then the ratios the project aims for, each marked met or
# not met, and our NBD client against the kernel's. A full run (BENCH_REPEAT=3, or BENCH_BOOTS=3
# with BENCH_REPEAT=1) takes about 40 minutes of VM time on a 2-core host.
#
#   scripts/bench.sh                    the whole matrix, in a VM
#   GO_UBLK_SRC=../shared/peers/go-ublk-41989fa.tar.gz scripts/bench.sh
#                                       the same with go-ublk (its source: a tarball or a clone)
#   BENCH_CASES='null' BENCH_WORKLOADS='qd64' BENCH_REPEAT=1 scripts/bench.sh
#                                       a few cells only (each filter is an extended regex)
#   BENCH_BOOTS=3 scripts/bench.sh      three boots of the VM; the report takes the medians of
#                                       every repetition of every boot
#   scripts/bench.sh --host             on this machine instead (root, modprobe ublk_drv, fio;
#                                       reloads null_blk and brd, makes ublk devices from id 0,
#                                       uses /dev/nbd0 and TCP port 10809 on 127.0.0.1)
#   scripts/bench.sh --help             this text
#
# Cases (scripts/bench/guest.sh names them; ublk-null-2q2j is null, 2 queues, 2 fio jobs): the
# kernel's null_blk (queue_mode=2 irqmode=0), brd, and loop (--direct-io=on over a file in
# tmpfs); ublk's null, mem and loop targets with 1 and 2 queues, and each data path
# (--data-path copy, user-copy, zero-copy) with 1 queue; the peers kublk (the kernel's selftest
# server: null and loop, plain, -u, -z and --auto_zc) and rublk (crates.io: null and loop, plain
# and -z), and go-ublk's RAM disk (its ublk-mem example, beside our mem; only with GO_UBLK_SRC);
# and NBD: the kernel's client (nbd.ko through nbd-client, 1 and 2 connections: nbd-1c, nbd-2c)
# and ublk's nbd target (ublk-nbd-1q, -2q: a connection per queue), both against one qemu-nbd
# serving the same file in tmpfs, started for each case. Servers run at depth 128. Every
# 2-queue case runs once with one fio job and once with two (one per CPU). Peers are built once
# into ~/.cache/ublk-bench (scripts/bench/peers.sh); one that cannot be built, or cannot start,
# shows n/a with the reason, and so does a data path the kernel lacks.
# Workloads (fio, io_uring, direct=1): 4k randread QD1 and QD64, 4k randwrite QD64, 128k
# sequential read QD16 (the data-path cases: only 128k and randread QD64; the NBD cases: all but
# QD1). Each runs BENCH_RUNTIME seconds after BENCH_RAMP of warm-up, on every case in turn, and
# the whole round is repeated BENCH_REPEAT times: the report has medians.
#
# Environment:
#   BENCH_CASES, BENCH_WORKLOADS   regexes selecting cases and workloads (default: all)
#   BENCH_RUNTIME (3), BENCH_RAMP (1), BENCH_REPEAT (3)   seconds, seconds, repetitions
#   BENCH_BOOTS (1)          boots of the VM (one kernel, one payload), each running the matrix
#   BENCH_SIZE_MB (1024)     size of brd, of the mem targets and of the loop file
#   GO_UBLK_SRC              go-ublk's source (a directory or a tarball): builds its ublk-mem
#                            once (Debian's Go 1.25, offline); without it go-ublk's cases are n/a
#   BENCH_REBUILD_PEERS=1    rebuild the peers (also after a remembered failure)
#   VM_MEMORY (4G), VM_TIMEOUT (per boot; from the matrix size), KERNEL, UBLK_VM_CACHE: see
#   vm-test.sh
# Output: target/bench/console-N.log (the guest's console, boot N), results.md, results.json.
# Exits non-zero if a VM boot fails or no result came out; failed cells alone do not.
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

# A relative GO_UBLK_SRC is relative to where the user is, not to the project root.
[ -z "${GO_UBLK_SRC:-}" ] || GO_UBLK_SRC=$(realpath -m "$GO_UBLK_SRC")
export GO_UBLK_SRC
boots=${BENCH_BOOTS:-1}
case "$boots" in
    [1-9] | [1-9][0-9]) ;;
    *) echo "bench.sh: BENCH_BOOTS=$boots: give a number from 1 to 99" >&2; exit 2 ;;
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
mkdir -p "$out"
# The logs of an earlier run would mix into the report.
rm -f "$out"/console.log "$out"/console-*.log

# --- Tools: the VM's, and what building the peers needs (gcc for kublk, xz for its source);
# the NBD cases' server and the kernel's NBD client's tool, for a --host run (the VM's are
# copies of the host's).
if [ "$host" -eq 1 ]; then vm_install_build_deps; else vm_install_deps; fi
vm_need_commands gcc:gcc make:make xz:xz-utils fio:fio losetup:mount python3:python3 \
    qemu-nbd:qemu-utils nbd-client:nbd-client apt-get:apt dpkg-deb:dpkg \
    /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
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

# The matrix the settings select: "CASE WORKLOAD..." per case (the guest script's own plan).
plan=$(sh "$payload/run.sh" --plan) || vm_die "the benchmark's settings select nothing: $plan"
plan_cases=$(wc -l <<<"$plan")
plan_runs=$(awk '{ n += NF - 1 } END { print n }' <<<"$plan")
vm_log "the matrix: $plan_cases cases, $plan_runs fio runs per repetition, ${BENCH_REPEAT:-3} repetitions, $boots boot(s)"

# --- Run: the guest script, in the VM or here, BENCH_BOOTS times.
# The host's load goes into the report: another VM on this machine slows every case down.
load() { cut -d ' ' -f 1-3 /proc/loadavg; }
load_before=$(load)
rc=0
logs=()
if [ "$host" -eq 1 ]; then
    vm_require_host_driver
    command -v fio >/dev/null || vm_die "--host needs fio"
else
    initramfs="target/vm/bench-$VM_KVER.cpio"
    # nbd and nbd-client for the kernel's NBD client, qemu-nbd the NBD server of both clients.
    vm_build_initramfs "$initramfs" "$payload" "null_blk brd loop nbd" \
        "fio losetup qemu-nbd nbd-client"
    # Bound each boot by the size of the matrix: every fio run is ramp + runtime plus a few
    # seconds of start-up under TCG, plus set-up time per case (preconditioning a 1 GiB RAM
    # disk, starting a server; an NBD case starts qemu-nbd too, seconds of emulated CPU); twice
    # that, plus boot.
    repeat=${BENCH_REPEAT:-3}
    plan_nbd=$(grep -c nbd <<<"$plan" || true) # the NBD cases: 20 s more each
    estimate=$((repeat * (plan_runs * (${BENCH_RAMP:-1} + ${BENCH_RUNTIME:-3} + 4) \
        + (plan_cases + plan_nbd) * 20)))
    boot_timeout=${timeout_wanted:-$((2 * estimate + 300))}
fi
for boot in $(seq 1 "$boots"); do
    log=$out/console-$boot.log
    logs+=("$log")
    boot_rc=0
    if [ "$host" -eq 1 ]; then
        vm_log "running the benchmark on this machine ($(uname -r)), run $boot of $boots; console copy: $log"
        "$payload/run.sh" 2>&1 | tee "$log" || boot_rc=$?
    else
        vm_log "boot $boot of $boots"
        VM_TIMEOUT=$boot_timeout vm_boot "$initramfs" "$log" || boot_rc=$?
    fi
    # A failed boot loses its own cells only: the next boots still run.
    [ "$boot_rc" -eq 0 ] || { vm_warn "boot $boot failed (exit $boot_rc): see $log"; rc=$boot_rc; }
done
[ "$host" -eq 1 ] || rm -f "$initramfs"

# --- Report: whatever records the log has, even after a failure.
host_info="$(nproc) CPUs; load average $load_before before the run, $(load) after"
if ! python3 scripts/bench/report.py -o "$out" --host "$host_info" "${logs[@]}"; then
    vm_die "no benchmark result in ${logs[*]} (exit $rc)"
fi
cat "$out/results.md"
[ "$rc" -eq 0 ] || vm_die "the benchmark run failed (exit $rc): see ${logs[*]}; the report has what it measured"
vm_log "report: $out/results.md, $out/results.json"
