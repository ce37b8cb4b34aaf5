#!/bin/sh
# The benchmark's guest side (busybox sh, or any POSIX sh on a --host run), copied by
# scripts/bench.sh into the payload as run.sh, next to bench.env (the settings) and bin/ (ublk,
# and the peers kublk, rublk and go-ublk-mem when they were built). For each repetition, for each
# case (a block device: a kernel driver, or a ublk server), it sets the device up, runs each fio
# workload on it, and tears it down again, so that a slow minute of the host (another VM on the
# machine) spreads over every case instead of falling on one.
#
#   run.sh          the benchmark
#   run.sh --plan   prints the cases and workloads the settings select, one case a line
#                   ("CASE WORKLOAD..."), and exits: bench.sh sizes the VM's timeout with it
#
# Cases: the kernel's drivers null_blk, brd and loop, the kernel's NBD client nbd-Nc (nbd.ko,
# set up by nbd-client with N connections), and servers, named SERVER-TARGET[-MODE]-Nq[Mj]:
#   SERVER  ublk (this project), kublk (the kernel's selftest server), rublk, go-ublk (the one
#           name with a dash; its binary is go-ublk-mem, the ublk-mem example of go-ublk)
#   TARGET  null, mem (a RAM disk), loop (over the file in tmpfs), nbd (our NBD client, with
#           one connection per queue)
#   MODE    the data path, when not the server's default: for ublk copy, uc and zc are
#           `--data-path copy|user-copy|zero-copy` (zero copy is AUTO_BUF_REG); for kublk uc
#           is -u (USER_COPY), zc -z (SUPPORT_ZERO_COPY with REGISTER_IO_BUF) and autozc
#           --auto_zc (AUTO_BUF_REG); for rublk zc is -z (AUTO_BUF_REG, with SUPPORT_ZERO_COPY).
#           kublk's and rublk's default is copying, so ublk-null-copy-1q compares with
#           kublk-null-1q. A mode the kernel lacks gives an error record "kernel lacks X".
#   Nq      queues (depth 128 each); Mj: M fio jobs, one per CPU (numjobs=M, cpus_allowed_policy
#           =split, group_reporting: IOPS summed, each job at the workload's depth), default 1
# e.g. ublk-null-1q, ublk-null-2q2j, ublk-loop-zc-1q, kublk-null-autozc-1q, go-ublk-mem-2q.
# Every 2-queue case runs with 1 job (all I/O through the queue of fio's CPU) and 2 jobs (both
# queues busy); mode cases run only read-128k-qd16 and randread-4k-qd64.
# The NBD cases, nbd-Nc (the kernel's client) and ublk-nbd-Nq (ours), are clients of one NBD
# server, qemu-nbd serving the file in tmpfs as export "bench" on 127.0.0.1, started for each
# case and stopped after it; they run only randread-4k-qd64, randwrite-4k-qd64 and
# read-128k-qd16, with 1 fio job (nbd-2c compares with ublk-nbd-2q).
#
# Output, on stdout (the serial console in a VM), one line per record, for scripts/bench/report.py:
#   BENCH-JSON {"type":"meta", ...}             once: kernel, CPUs, settings, the plan
#   BENCH-JSON {"type":"run","case":C,"workload":W,"rep":N,"jobs":J,"iops":..., ...}  per fio run
#   BENCH-JSON {"type":"error","case":C,"workload":W|null,"rep":N,"reason":"..."}
# plus human-readable "bench:" lines. A case that fails (a peer that cannot start, a fio that
# errors) gives an error record and the run goes on with the next case; the script exits 0
# once every case was tried, so that the report gets what there is.
#
# Per run: IOPS, mean and p99 total latency (fio's lat_ns: submission to completion), p50, p99
# and p99.9 completion latency (clat_ns), and for a server case the server's CPU time and
# context switches over the fio run, divided by the I/Os the block layer completed meanwhile
# (/sys/block/DEV/stat), and its VmHWM (peak RSS): for ublk-nbd-Nq our ublk server's, not the
# NBD server's (which nbd-Nc has as much as ours). CPU time is /proc/PID/stat's utime+stime in
# clock ticks, USER_HZ: 100 on x86 whatever the kernel's HZ (busybox has no getconf; a --host run
# asks getconf when it exists).
cd "$(dirname "$0")" || exit 1
# shellcheck source=/dev/null
. ./bench.env
export PATH="$PWD/bin:/usr/local/bin:$PATH"

RUNTIME=${BENCH_RUNTIME:-3}
RAMP=${BENCH_RAMP:-1}
REPEAT=${BENCH_REPEAT:-3}
CASES_RE=${BENCH_CASES:-.}
WORKLOADS_RE=${BENCH_WORKLOADS:-.}
SIZE_MB=${BENCH_SIZE_MB:-1024}
DEPTH=128
WORK=${BENCH_DIR:-/dev/shm/ublk-bench}
FILE=$WORK/loop.img
# Device ids for the ublk servers: a new one per case, so that a device a failed case could not
# delete makes no later case fail with EEXIST.
NEXT_ID=${BENCH_FIRST_ID:-0}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
# util-linux's losetup (busybox's has no --direct-io), called by path: busybox sh runs its own
# applet before a program of the same name in PATH.
LOSETUP=/usr/local/bin/losetup
[ -x "$LOSETUP" ] || LOSETUP=$(command -v losetup)

# The matrix, in the order each repetition runs it. Servers sit next to their peers on the same
# target, so that their cells are measured minutes apart at most.
CASES="null_blk brd loop
ublk-null-1q ublk-null-2q ublk-null-2q2j ublk-null-copy-1q ublk-null-uc-1q ublk-null-zc-1q
kublk-null-1q kublk-null-2q kublk-null-2q2j kublk-null-uc-1q kublk-null-zc-1q kublk-null-autozc-1q
rublk-null-1q rublk-null-2q rublk-null-2q2j rublk-null-zc-1q
ublk-mem-1q ublk-mem-2q ublk-mem-2q2j ublk-mem-copy-1q ublk-mem-uc-1q ublk-mem-zc-1q
go-ublk-mem-1q go-ublk-mem-2q go-ublk-mem-2q2j
ublk-loop-1q ublk-loop-2q ublk-loop-2q2j ublk-loop-copy-1q ublk-loop-uc-1q ublk-loop-zc-1q
kublk-loop-1q kublk-loop-2q kublk-loop-2q2j kublk-loop-uc-1q kublk-loop-zc-1q kublk-loop-autozc-1q
rublk-loop-1q rublk-loop-2q rublk-loop-2q2j rublk-loop-zc-1q
nbd-1c ublk-nbd-1q nbd-2c ublk-nbd-2q"
# name:rw:bs:iodepth. 128k sequential reads at QD16: 2 MiB in flight, enough to keep a
# server busy without making the run about memory bandwidth.
WORKLOADS="randread-4k-qd1:randread:4k:1 randread-4k-qd64:randread:4k:64
randwrite-4k-qd64:randwrite:4k:64 read-128k-qd16:read:128k:16"
# The data-path (MODE) cases run only these: large reads, where the copy costs most, and small
# random reads at depth, where the cost per request shows.
MODE_WORKLOADS="read-128k-qd16 randread-4k-qd64"
# The NBD cases run only these: small random reads and writes at depth, and large reads.
NBD_WORKLOADS="randread-4k-qd64 randwrite-4k-qd64 read-128k-qd16"
# The NBD server of the NBD cases: its port on 127.0.0.1 (NBD's own) and the export's name.
NBD_PORT=10809
NBD_EXPORT=bench

# Human-readable progress goes to fd 3, the original stdout: setup's stdout is its failure reason.
exec 3>&1
say() { echo "bench: $*" >&3; }
# A string made safe to put between JSON quotes: no quote, backslash or control character.
# shellcheck disable=SC1003 # '"\\' is a quote and a backslash for tr, not an escaped quote
jsafe() { printf '%s' "$*" | tr -d '"\\' | tr '\n\r\t' '   ' | cut -c 1-300; }
emit() { printf 'BENCH-JSON {%s}\n' "$1"; }
# error CASE WORKLOAD|"" REP REASON: an error record, and the same for a human.
error() {
    local_wl=null
    [ -z "$2" ] || local_wl="\"$2\""
    emit "\"type\":\"error\",\"case\":\"$1\",\"workload\":$local_wl,\"rep\":$3,\"reason\":\"$(jsafe "$4")\""
    say "$1${2:+ $2} (rep $3): FAILED: $4"
}

# Runs "$@" with a bound of $1 seconds (busybox and coreutils timeout alike); output to $OUT.
OUT=$WORK/out
bounded() {
    secs=$1
    shift
    timeout "$secs" "$@" >"$OUT" 2>&1
}
last_output() { tail -n 5 "$OUT" 2>/dev/null | tr '\n' ' '; }

# Waits up to $1 tenths of a second for the command after it to succeed.
wait_for() {
    tenths=$1
    shift
    i=0
    until "$@"; do
        [ "$i" -lt "$tenths" ] || return 1
        sleep 0.1
        i=$((i + 1))
    done
}
# True once process $1 has exited: no such process, or a zombie (go-ublk's server is this
# shell's child, and stays a zombie until it is waited for).
gone() {
    ! kill -0 "$1" 2>/dev/null \
        || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1)" = Z ]
}

# (Re)loads kernel module $1 with parameters $2: the VM's /init loaded it with its defaults.
reload_module() {
    if grep -q "^$1 " /proc/modules; then
        bounded 30 rmmod "$1" || return 1
    fi
    insert_module "$1" "$2"
}

# Loads kernel module $1 with parameters $2. The initramfs holds it decompressed in
# /lib/modules (busybox insmod); a --host run modprobes.
insert_module() {
    if [ -f "/lib/modules/$1.ko" ]; then
        # shellcheck disable=SC2086 # the parameters are split on spaces on purpose
        bounded 30 insmod "/lib/modules/$1.ko" $2
    else
        # shellcheck disable=SC2086
        bounded 30 modprobe "$1" $2
    fi
}

# Fills block device $1 with one sequential pass of writes, so that reads hit allocated pages
# (brd and a mem server allocate on first write) and the measured writes overwrite.
precondition() {
    bounded 300 fio --name=fill --filename="$1" --ioengine=io_uring --direct=1 --rw=write \
        --bs=1M --iodepth=8 --size=100% --eta=never
}

# Sets SERVER, TARGET, MODE (empty: the server's default data path), QUEUES and JOBS from server
# case $1 (SERVER-TARGET[-MODE]-Nq[Mj], see the top); a kernel driver's case gets JOBS=1 only.
parse_case() {
    SERVER="" TARGET="" MODE="" QUEUES="" JOBS=1
    case "$1" in
        *-*q | *-*q[0-9]j) ;;
        *) return 0 ;;
    esac
    case "$1" in
        go-ublk-*) SERVER=go-ublk rest=${1#go-ublk-} ;;
        *) SERVER=${1%%-*} rest=${1#*-} ;;
    esac
    TARGET=${rest%%-*}
    rest=${rest#*-}
    case "$rest" in
        *-*) MODE=${rest%-*} rest=${rest##*-} ;;
    esac
    QUEUES=${rest%%q*}
    rest=${rest#*q}
    [ -z "$rest" ] || JOBS=${rest%j}
}

# Prints the workloads case $1 runs, of those selected ($workloads, one a line): a data-path
# (MODE) case only those of MODE_WORKLOADS, an NBD case only those of NBD_WORKLOADS.
case_workloads() {
    parse_case "$1"
    only=""
    [ -z "$MODE" ] || only=$MODE_WORKLOADS
    case "$1" in
        nbd-* | *-nbd-*) only=$NBD_WORKLOADS ;;
    esac
    for w in $workloads; do
        [ -z "$only" ] || case " $only " in *" $w "*) ;; *) continue ;; esac
        echo "$w"
    done
}

# Prints "BIT NAME" of the kernel feature SERVER's data path MODE needs (nothing for none).
# rublk's -z asks for SUPPORT_ZERO_COPY too, which every kernel with AUTO_BUF_REG has.
mode_feature() {
    case "$SERVER:$MODE" in
        kublk:zc) echo "0 SUPPORT_ZERO_COPY" ;;
        *:zc | *:autozc) echo "11 AUTO_BUF_REG" ;;
        *:uc) echo "7 USER_COPY" ;;
    esac
}

# Sets DEV (the block device), PID (the server, empty for a kernel driver) and NBD_PID (the
# NBD server of an NBD case) for case $1, repetition $2; prints the reason and returns non-zero
# when the case cannot be set up.
setup() {
    DEV="" PID="" ID="" NBD_PID=""
    parse_case "$1"
    case "$1" in
        nbd-* | *-nbd-*) start_nbd_server || return 1 ;;
    esac
    case "$1" in
        null_blk)
            reload_module null_blk "queue_mode=2 irqmode=0 hw_queue_depth=$DEPTH nr_devices=1" \
                || { echo "loading null_blk: $(last_output)"; return 1; }
            DEV=/dev/nullb0
            ;;
        brd)
            reload_module brd "rd_nr=1 rd_size=$((SIZE_MB * 1024))" \
                || { echo "loading brd: $(last_output)"; return 1; }
            DEV=/dev/ram0
            ;;
        loop)
            DEV=$(timeout 20 "$LOSETUP" -f --show --direct-io=on "$FILE" 2>"$OUT") \
                || { echo "losetup --direct-io=on: $(last_output)"; return 1; }
            dio=$(cat "/sys/block/${DEV#/dev/}/loop/dio" 2>/dev/null)
            [ "$dio" = 1 ] || { echo "$DEV is not in direct-I/O mode (loop/dio=$dio)"; return 1; }
            ;;
        nbd-[0-9]c) setup_nbd_client "${1#nbd-}" ;;
        go-ublk-*) setup_go_ublk ;;
        *-*q | *-*q[0-9]j) setup_server ;;
        *)
            echo "unknown case"
            false
            ;;
    esac || return 1
    wait_for 100 test -b "$DEV" || { echo "$DEV did not appear within 10 s"; return 1; }
    case "$1" in
        brd | *-mem-*)
            say "$1: preconditioning $DEV (one sequential write pass)"
            precondition "$DEV" || { echo "preconditioning: $(last_output)"; return 1; }
            ;;
    esac
}

# Prints why the server binary for SERVER is missing from the payload, if it is.
server_missing() {
    bin=$SERVER
    [ "$SERVER" != go-ublk ] || bin=go-ublk-mem
    command -v "$bin" >/dev/null 2>&1 && return 1
    echo "$SERVER is not in the payload: $(cat "bin/$SERVER.missing" 2>/dev/null || echo 'not built')"
}

# Prints why the kernel cannot run SERVER's data path MODE, if it cannot (KFEATURES: the
# kernel's feature bits, empty when unknown: then the server finds out for itself).
mode_missing() {
    need=$(mode_feature)
    [ -n "$need" ] && [ -n "$KFEATURES" ] || return 1
    [ $((KFEATURES >> ${need% *} & 1)) -eq 0 ] || return 1
    printf 'kernel lacks %s (its ublk features: 0x%x)\n' "${need#* }" "$KFEATURES"
}

# setup for a server case of ublk, kublk or rublk (parse_case has run): adds the device, and
# finds the server's pid.
setup_server() {
    server_missing && return 1
    mode_missing && return 1
    ID=$NEXT_ID
    NEXT_ID=$((NEXT_ID + 1))
    case "$SERVER-$TARGET" in
        ublk-null) set -- ublk add -t null ;;
        ublk-mem) set -- ublk add -t mem --size "${SIZE_MB}M" ;;
        ublk-loop) set -- ublk add -t loop -f "$FILE" ;;
        ublk-nbd)
            set -- ublk add -t nbd --host 127.0.0.1 --port "$NBD_PORT" --export "$NBD_EXPORT" \
                --connections "$QUEUES"
            ;;
        kublk-null) set -- kublk add -t null ;;
        kublk-loop) set -- kublk add -t loop ;;
        rublk-null) set -- rublk add null ;;
        rublk-loop) set -- rublk add loop -f "$FILE" ;;
        *)
            echo "no such server case"
            return 1
            ;;
    esac
    set -- "$@" -n "$ID" -q "$QUEUES" -d "$DEPTH"
    case "$SERVER:$MODE" in
        *:) ;;
        ublk:copy) set -- "$@" --data-path copy ;;
        ublk:uc) set -- "$@" --data-path user-copy ;;
        ublk:zc) set -- "$@" --data-path zero-copy ;;
        kublk:uc) set -- "$@" -u ;;
        kublk:zc) set -- "$@" -z ;;
        kublk:autozc) set -- "$@" --auto_zc ;;
        rublk:zc) set -- "$@" -z ;;
        *)
            echo "no data path $MODE for $SERVER"
            return 1
            ;;
    esac
    # kublk takes its backing file as an operand after the options.
    [ "$SERVER-$TARGET" != kublk-loop ] || set -- "$@" "$FILE"
    say "$ $*"
    bounded 30 "$@" || { echo "'$*' failed: $(last_output)"; return 1; }
    DEV=/dev/ublkb$ID
    # The server's pid, as each tool reports it (the kernel's ublksrv_pid): ublk's JSON,
    # kublk's and rublk's "daemon pid N" (both print the driver's device info).
    case "$SERVER" in
        ublk)
            bounded 10 ublk list -n "$ID" --json \
                && PID=$(tr -d '\n ' <"$OUT" | sed -n 's/.*"server_pid":\([0-9][0-9]*\).*/\1/p')
            ;;
        *)
            bounded 10 "$SERVER" list -n "$ID" \
                && PID=$(sed -n 's/.*daemon pid \([0-9][0-9]*\).*/\1/p' "$OUT" | head -n 1)
            ;;
    esac
    if [ -z "$PID" ] || gone "$PID"; then
        echo "cannot find the server's pid ('$SERVER list -n $ID': $(last_output))"
        return 1
    fi
}

# True while something listens on TCP port NBD_PORT (IPv4: /proc/net/tcp, state 0A).
nbd_listening() {
    awk -v port="$(printf ':%04X' "$NBD_PORT")" '
        $4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
        END { exit !found }' /proc/net/tcp
}
# True once the NBD server NBD_PID listens, or exited.
nbd_server_started() { nbd_listening || gone "$NBD_PID"; }

# Starts the NBD server of the NBD cases (sets NBD_PID): qemu-nbd serving FILE as export
# NBD_EXPORT on 127.0.0.1:NBD_PORT, raw, through the page cache (tmpfs's own pages), for up to
# 8 clients at once (so it offers CAN_MULTI_CONN, which our client needs for a second
# connection), and --persistent: a client's disconnect does not stop it.
start_nbd_server() {
    command -v qemu-nbd >/dev/null 2>&1 || { echo "qemu-nbd is not installed"; return 1; }
    # A server left by an earlier case would answer in place of the new one.
    ! nbd_listening || { echo "something already listens on port $NBD_PORT"; return 1; }
    set -- qemu-nbd -f raw --persistent -e 8 -b 127.0.0.1 -p "$NBD_PORT" -x "$NBD_EXPORT" \
        --cache=writeback "$FILE"
    say "$ $*"
    "$@" >"$WORK/qemu-nbd.log" 2>&1 3>&- &
    NBD_PID=$!
    wait_for 300 nbd_server_started
    if gone "$NBD_PID" || ! nbd_listening; then
        how="did not listen within 30 s"
        ! gone "$NBD_PID" || how="exited"
        echo "'$*' $how: $(tail -n 3 "$WORK/qemu-nbd.log" | tr '\n' ' ')"
        return 1
    fi
}

# Stops the NBD server NBD_PID, if there is one, and reaps it.
stop_nbd_server() {
    [ -n "$NBD_PID" ] || return 0
    kill "$NBD_PID" 2>/dev/null
    if ! wait_for 150 gone "$NBD_PID"; then
        say "qemu-nbd $NBD_PID still runs 15 s after SIGTERM: killing it"
        kill -9 "$NBD_PID" 2>/dev/null
    fi
    if wait_for 50 gone "$NBD_PID"; then wait "$NBD_PID" 2>/dev/null; fi
    NBD_PID=""
}

# True while /dev/nbd0 is connected: the pid attribute lives from the start of its connection
# to its end (whether nbd-client configured it by netlink or by ioctl).
nbd0_connected() { [ -e /sys/block/nbd0/pid ]; }
nbd0_disconnected() { ! nbd0_connected; }
# True once /dev/nbd0 is connected and has its size.
nbd0_ready() { nbd0_connected && [ "$(cat /sys/block/nbd0/size)" -gt 0 ]; }

# setup for the kernel's NBD client with $1 connections ("2c" for case nbd-2c): nbd.ko (loaded
# by the VM's /init), connected by nbd-client to the NBD server, as /dev/nbd0.
setup_nbd_client() {
    command -v nbd-client >/dev/null 2>&1 || { echo "nbd-client is not installed"; return 1; }
    if [ ! -d /sys/module/nbd ]; then
        insert_module nbd "" || { echo "loading nbd: $(last_output)"; return 1; }
    fi
    nbd0_connected && { echo "/dev/nbd0 is connected already (an earlier case's?)"; return 1; }
    set -- nbd-client -N "$NBD_EXPORT" 127.0.0.1 "$NBD_PORT" /dev/nbd0 -C "${1%c}"
    say "$ $*"
    bounded 30 "$@" || { echo "'$*' failed: $(last_output)"; return 1; }
    DEV=/dev/nbd0
    wait_for 100 nbd0_ready || { echo "$DEV is not connected 10 s after '$*'"; return 1; }
}

# True once go-ublk's server $PID said which device it made, or exited.
go_ublk_started() { grep -q '^Device created: /dev/ublkb' "$WORK/go-ublk.log" || gone "$PID"; }

# setup for go-ublk's RAM disk: its ublk-mem serves in the foreground (until SIGINT) and picks
# the device id itself; it prints "Device created: /dev/ublkbN" once the device is started.
setup_go_ublk() {
    server_missing && return 1
    set -- go-ublk-mem -size "${SIZE_MB}M" -queues "$QUEUES" -depth "$DEPTH"
    say "$ $*"
    "$@" >"$WORK/go-ublk.log" 2>&1 3>&- &
    PID=$!
    wait_for 300 go_ublk_started || { echo "'$*' did not start within 30 s: $(tail -n 3 "$WORK/go-ublk.log" | tr '\n' ' ')"; return 1; }
    DEV=$(sed -n 's|^Device created: \(/dev/ublkb[0-9][0-9]*\)$|\1|p' "$WORK/go-ublk.log" | head -n 1)
    if [ -z "$DEV" ] || gone "$PID"; then
        echo "'$*' failed: $(tail -n 3 "$WORK/go-ublk.log" | tr '\n' ' ')"
        return 1
    fi
    ID=${DEV#/dev/ublkb}
}

# Tears down what setup made for case $1 (whatever part of it exists), the NBD server last;
# says what it could not.
teardown() {
    parse_case "$1"
    case "$1" in
        nbd-[0-9]c)
            if nbd0_connected; then
                bounded 30 nbd-client -d /dev/nbd0 || say "$1: nbd-client -d /dev/nbd0: $(last_output)"
                wait_for 100 nbd0_disconnected \
                    || say "$1: /dev/nbd0 is still connected 10 s after nbd-client -d"
            fi
            ;;
        null_blk | brd)
            ! grep -q "^$1 " /proc/modules || bounded 30 rmmod "$1" \
                || say "$1: rmmod $1: $(last_output)"
            ;;
        loop)
            [ -z "$DEV" ] || timeout 20 "$LOSETUP" -d "$DEV" >"$OUT" 2>&1 \
                || say "loop: losetup -d $DEV: $(last_output)"
            ;;
        go-ublk-*)
            if [ -n "$PID" ]; then
                kill -INT "$PID" 2>/dev/null
                if ! wait_for 150 gone "$PID"; then
                    say "$1: server $PID still runs 15 s after SIGINT: killing it"
                    kill -9 "$PID" 2>/dev/null
                fi
                # Reaps it (a wait for a process that still runs would block).
                if wait_for 50 gone "$PID"; then wait "$PID" 2>/dev/null; fi
            fi
            # It deletes its device on SIGINT, but gives that 1 s before it exits anyway: what
            # it left, ublk deletes (any server's device, once its server is gone).
            if [ -n "$ID" ] && [ -e "/dev/ublkc$ID" ]; then
                bounded 30 ublk del -n "$ID" || say "$1: 'ublk del -n $ID' after go-ublk failed: $(last_output)"
            fi
            ;;
        *)
            # A del that fails because add never made the device is no news.
            if [ -n "$ID" ]; then
                bounded 30 "$SERVER" del -n "$ID" || [ ! -e "/dev/ublkc$ID" ] \
                    || say "$1: '$SERVER del -n $ID' failed: $(last_output)"
            fi
            if [ -n "$PID" ] && ! wait_for 150 gone "$PID"; then
                say "$1: server $PID still runs 15 s after del: killing it"
                kill -9 "$PID" 2>/dev/null
            fi
            ;;
    esac
    stop_nbd_server
}

# Prints the I/Os block device $1 completed so far (reads + writes, /sys/block/*/stat).
dev_ios() { awk '{ print $1 + $5 }' "/sys/block/${1#/dev/}/stat"; }
# Prints process $1's CPU time in clock ticks (utime + stime, every thread, live or gone): the
# fields after the command name, which may itself hold spaces.
pid_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Prints the context switches of process $1's threads (voluntary + involuntary).
pid_ctx() {
    cat /proc/"$1"/task/*/status 2>/dev/null \
        | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print s + 0 }'
}
# Prints process $1's peak resident set, in KiB.
pid_hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

# Prints "iops lat_mean_ns lat_p99_ns clat_p50_ns clat_p99_ns clat_p999_ns" from fio's JSON
# output file $1 (its one job: group_reporting sums the jobs into one; the direction that did
# the I/O; a missing clat percentile is "null"). fio pretty-prints one key per line, which awk
# can follow.
fio_numbers() {
    awk '
function path(   i, p) { p = ""; for (i = 1; i <= depth; i++) p = p stack[i] "."; return p }
function orNull(v) { return v == "" ? "null" : v }
{
    line = $0
    sub(/^[ \t]+/, "", line)
    if (line ~ /^"[^"]*" : [{[]$/) { k = line; sub(/^"/, "", k); sub(/" : .$/, "", k); stack[++depth] = k; next }
    if (line ~ /^[{[]$/) { stack[++depth] = "#"; next }
    if (line ~ /^[]}],?$/) { depth--; next }
    if (line ~ /^"[^"]*" : /) {
        k = line; sub(/^"/, "", k); sub(/" : .*$/, "", k)
        v = line; sub(/^"[^"]*" : /, "", v); sub(/,$/, "", v)
        val[path() k] = v
    }
}
END {
    for (d = 0; d < 2; d++) {
        p = "#.jobs.#." (d ? "write" : "read") "."
        iops += val[p "iops"]
        if (val[p "total_ios"] + 0 > best) {
            best = val[p "total_ios"] + 0
            mean = val[p "lat_ns.mean"]
            p99 = val[p "lat_ns.percentile.99.000000"]
            c50 = val[p "clat_ns.percentile.50.000000"]
            c99 = val[p "clat_ns.percentile.99.000000"]
            c999 = val[p "clat_ns.percentile.99.900000"]
        }
    }
    if (best == 0 || p99 == "") exit 1
    printf "%.1f %.0f %s %s %s %s\n", iops, mean, p99, orNull(c50), orNull(c99), orNull(c999)
}' "$1"
}

# run_fio CASE WORKLOAD REP: one measured fio run on DEV with JOBS jobs, and its record.
run_fio() {
    spec=$(echo "$WORKLOADS" | tr ' ' '\n' | grep "^$2:")
    rw=$(echo "$spec" | cut -d : -f 2)
    bs=$(echo "$spec" | cut -d : -f 3)
    qd=$(echo "$spec" | cut -d : -f 4)
    # Several jobs: one per CPU, so that each submits through its own CPU's queue.
    cpus=""
    [ "$JOBS" -eq 1 ] || cpus="--cpus_allowed=0-$((JOBS - 1)) --cpus_allowed_policy=split"
    if [ -n "$PID" ]; then
        gone "$PID" && { error "$1" "$2" "$3" "the server (pid $PID) is gone"; return 1; }
        ticks0=$(pid_ticks "$PID") ctx0=$(pid_ctx "$PID")
    fi
    ios0=$(dev_ios "$DEV")
    rm -f "$WORK/fio.json"
    # shellcheck disable=SC2086 # $cpus is two options or none
    if ! bounded $((RAMP + RUNTIME + 60)) fio --name="$2" --filename="$DEV" --ioengine=io_uring \
        --direct=1 --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$JOBS" $cpus --group_reporting \
        --time_based --ramp_time="$RAMP" --runtime="$RUNTIME" --norandommap --randrepeat=0 \
        --lat_percentiles=1 --percentile_list=50:99:99.9 --output-format=json \
        --output="$WORK/fio.json"; then
        error "$1" "$2" "$3" "fio failed: $(last_output) $(tail -n 3 "$WORK/fio.json" 2>/dev/null)"
        return 1
    fi
    ios=$(($(dev_ios "$DEV") - ios0))
    # shellcheck disable=SC2046 # the six numbers become $4 ... $9
    set -- "$1" "$2" "$3" $(fio_numbers "$WORK/fio.json")
    if [ $# -ne 9 ]; then
        error "$1" "$2" "$3" "cannot read IOPS and latency from fio's JSON output"
        return 1
    fi
    server='"cpu_ticks":null,"ctx_switches":null,"hwm_kb":null,"server_pid":null'
    if [ -n "$PID" ]; then
        if gone "$PID"; then
            error "$1" "$2" "$3" "the server (pid $PID) died during the run"
            return 1
        fi
        server="\"cpu_ticks\":$(($(pid_ticks "$PID") - ticks0)),\"ctx_switches\":$(($(pid_ctx "$PID") - ctx0)),\"hwm_kb\":$(pid_hwm "$PID"),\"server_pid\":$PID"
    fi
    emit "\"type\":\"run\",\"case\":\"$1\",\"workload\":\"$2\",\"rep\":$3,\"device\":\"$DEV\",\"jobs\":$JOBS,\"iops\":$4,\"lat_mean_ns\":$5,\"lat_p99_ns\":$6,\"clat_p50_ns\":$7,\"clat_p99_ns\":$8,\"clat_p999_ns\":$9,\"ios\":$ios,$server"
    say "$1 $2 rep $3: $4 IOPS, mean $5 ns, p99 $6 ns; completion p50 $7, p99 $8, p99.9 $9 ns"
}

# The cases and workloads the filters let through.
selected() { echo "$1" | tr ' ' '\n' | grep -E "$2" || true; }
# Words on one line, space-separated.
oneline() { echo "$1" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//'; }
workloads=$(selected "$(echo "$WORKLOADS" | tr ' ' '\n' | cut -d : -f 1)" "$WORKLOADS_RE")
[ -n "$workloads" ] || { say "BENCH_WORKLOADS=$WORKLOADS_RE selects no workload"; exit 2; }
# The plan: "CASE WORKLOAD..." for each selected case that has a selected workload.
plan=$(for c in $(selected "$CASES" "$CASES_RE"); do
    w=$(case_workloads "$c")
    [ -z "$w" ] || echo "$c $(oneline "$w")"
done)
[ -n "$plan" ] || { say "BENCH_CASES=$CASES_RE selects no case of: $(oneline "$CASES")"; exit 2; }
if [ "${1:-}" = --plan ]; then
    echo "$plan"
    exit 0
fi
cases=$(echo "$plan" | cut -d ' ' -f 1)

mkdir -p "$WORK"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# The kernel's ublk feature bits, for the data-path cases (empty if ublk cannot say).
KFEATURES=$(ublk features --json 2>/dev/null | tr -d '\n ' | sed -n 's/^{"kernel":\([0-9][0-9]*\),.*/\1/p')
fio_version=$(fio --version 2>/dev/null)
# The plan as JSON, {"case":["workload",...],...}: which cells the report should expect.
plan_json=$(echo "$plan" | sed 's/ /","/g; s/^\([^"]*\)","\(.*\)$/"\1":["\2"]/' | tr '\n' ',' | sed 's/,$//')
emit "\"type\":\"meta\",\"kernel\":\"$(uname -r)\",\"cpus\":$(grep -c '^processor' /proc/cpuinfo),\"mem_kb\":$(awk '/^MemTotal/ { print $2 }' /proc/meminfo),\"hz\":$HZ,\"runtime\":$RUNTIME,\"ramp\":$RAMP,\"repeat\":$REPEAT,\"depth\":$DEPTH,\"size_mb\":$SIZE_MB,\"ublk_features\":${KFEATURES:-null},\"fio\":\"$(jsafe "$fio_version")\",\"peers\":\"$(jsafe "$(sed '$!s/$/;/' peers.txt 2>/dev/null)")\",\"workloads\":\"$(oneline "$workloads")\",\"plan\":{$plan_json}"
say "cases: $(oneline "$cases")"
say "workloads: $(oneline "$workloads") (data-path cases: $MODE_WORKLOADS; NBD cases: $NBD_WORKLOADS); ${RUNTIME}s each after ${RAMP}s of warm-up, $REPEAT repetitions"

# The loop and NBD cases' backing file, in tmpfs, written through so that its pages exist.
if echo "$cases" | grep -qE 'loop|nbd'; then
    say "writing the ${SIZE_MB} MiB backing file $FILE"
    bounded 300 dd if=/dev/zero of="$FILE" bs=1M count="$SIZE_MB" \
        || say "cannot write $FILE: $(last_output) (the loop and NBD cases will fail)"
fi

rep=1
while [ "$rep" -le "$REPEAT" ]; do
    for c in $cases; do
        say "--- $c, repetition $rep of $REPEAT"
        # Not in $(...): setup sets DEV, PID and ID for the runs and the teardown.
        if setup "$c" >"$WORK/reason" 2>&1; then
            for w in $(echo "$plan" | grep "^$c " | cut -d ' ' -f 2-); do
                run_fio "$c" "$w" "$rep" || true
            done
        else
            error "$c" "" "$rep" "$(cat "$WORK/reason")"
        fi
        teardown "$c"
    done
    rep=$((rep + 1))
done
say "done"
