#!/bin/sh
# The benchmark's guest side (busybox sh, or any POSIX sh on a --host run), copied by
# scripts/bench.sh into the payload as run.sh, next to bench.env (the settings) and bin/ (ublk,
# and the peers kublk and rublk when they were built). For each repetition, for each case
# (a block device: a kernel driver, or a ublk server), it sets the device up, runs each fio
# workload on it, and tears it down again, so that a slow minute of the host (another VM on the
# machine) spreads over every case instead of falling on one.
#
# Output, on stdout (the serial console in a VM), one line per record, for scripts/bench/report.py:
#   BENCH-JSON {"type":"meta", ...}                       once: kernel, CPUs, settings
#   BENCH-JSON {"type":"run","case":C,"workload":W,"rep":N, "iops":..., ...}   one per fio run
#   BENCH-JSON {"type":"error","case":C,"workload":W|null,"rep":N,"reason":"..."}
# plus human-readable "bench:" lines. A case that fails (a peer that cannot start, a fio that
# errors) gives an error record and the run goes on with the next case; the script exits 0
# once every case was tried, so that the report gets what there is.
#
# Per run: IOPS, mean and p99 total latency (fio's lat_ns: submission to completion), and for a
# server case the server's CPU time and context switches over the fio run, divided by the I/Os
# the block layer completed meanwhile (/sys/block/DEV/stat), and its VmHWM (peak RSS). CPU time
# is /proc/PID/stat's utime+stime in clock ticks, USER_HZ: 100 on x86 whatever the kernel's HZ
# (busybox has no getconf; a --host run asks getconf when it exists).
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

CASES="null_blk brd loop
ublk-null-1q ublk-null-2q kublk-null-1q kublk-null-2q rublk-null-1q rublk-null-2q
ublk-mem-1q ublk-mem-2q
ublk-loop-1q ublk-loop-2q kublk-loop-1q kublk-loop-2q rublk-loop-1q rublk-loop-2q"
# name:rw:bs:iodepth. 128k sequential reads at QD16: 2 MiB in flight, enough to keep a
# server busy without making the run about memory bandwidth.
WORKLOADS="randread-4k-qd1:randread:4k:1 randread-4k-qd64:randread:4k:64
randwrite-4k-qd64:randwrite:4k:64 read-128k-qd16:read:128k:16"

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
# True once process $1 has exited.
gone() { ! kill -0 "$1" 2>/dev/null; }

# (Re)loads kernel module $1 with parameters $2: the VM's /init loaded it with its defaults.
# The initramfs holds it decompressed in /lib/modules (busybox insmod); a --host run modprobes.
reload_module() {
    if grep -q "^$1 " /proc/modules; then
        bounded 30 rmmod "$1" || return 1
    fi
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

# Sets DEV (the block device) and PID (the server, empty for a kernel driver) for case $1,
# repetition $2; prints the reason and returns non-zero when the case cannot be set up.
setup() {
    DEV="" PID="" ID=""
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
        *-*-*q) setup_server "$1" ;;
        *)
            echo "unknown case"
            return 1
            ;;
    esac || return 1
    wait_for 100 test -b "$DEV" || { echo "$DEV did not appear within 10 s"; return 1; }
    case "$1" in
        brd | ublk-mem-*)
            say "$1: preconditioning $DEV (one sequential write pass)"
            precondition "$DEV" || { echo "preconditioning: $(last_output)"; return 1; }
            ;;
    esac
}

# setup for SERVER-TARGET-Nq: ublk, kublk or rublk serving null, mem or loop with N queues.
setup_server() {
    server=${1%%-*}
    rest=${1#*-}
    target=${rest%-*}
    queues=${rest#*-}
    queues=${queues%q}
    command -v "$server" >/dev/null 2>&1 || {
        echo "$server is not in the payload: $(cat "bin/$server.missing" 2>/dev/null || echo 'not built')"
        return 1
    }
    ID=$NEXT_ID
    NEXT_ID=$((NEXT_ID + 1))
    case "$server-$target" in
        ublk-null) set -- ublk add -t null ;;
        ublk-mem) set -- ublk add -t mem --size "${SIZE_MB}M" ;;
        ublk-loop) set -- ublk add -t loop -f "$FILE" ;;
        kublk-null) set -- kublk add -t null ;;
        kublk-loop) set -- kublk add -t loop ;;
        rublk-null) set -- rublk add null ;;
        rublk-loop) set -- rublk add loop -f "$FILE" ;;
        *)
            echo "no such server case"
            return 1
            ;;
    esac
    set -- "$@" -n "$ID" -q "$queues" -d "$DEPTH"
    # kublk takes its backing file as an operand after the options.
    [ "$server-$target" != kublk-loop ] || set -- "$@" "$FILE"
    say "$ $*"
    bounded 30 "$@" || { echo "'$*' failed: $(last_output)"; return 1; }
    DEV=/dev/ublkb$ID
    # The server's pid, as each tool reports it (the kernel's ublksrv_pid): ublk's JSON,
    # kublk's and rublk's "daemon pid N" (both print the driver's device info).
    case "$server" in
        ublk)
            bounded 10 ublk list -n "$ID" --json \
                && PID=$(tr -d '\n ' <"$OUT" | sed -n 's/.*"server_pid":\([0-9][0-9]*\).*/\1/p')
            ;;
        *)
            bounded 10 "$server" list -n "$ID" \
                && PID=$(sed -n 's/.*daemon pid \([0-9][0-9]*\).*/\1/p' "$OUT" | head -n 1)
            ;;
    esac
    if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
        echo "cannot find the server's pid ('$server list -n $ID': $(last_output))"
        return 1
    fi
}

# Tears down what setup made for case $1 (whatever part of it exists); says what it could not.
teardown() {
    case "$1" in
        null_blk | brd)
            ! grep -q "^$1 " /proc/modules || bounded 30 rmmod "$1" \
                || say "$1: rmmod $1: $(last_output)"
            ;;
        loop)
            [ -z "$DEV" ] || timeout 20 "$LOSETUP" -d "$DEV" >"$OUT" 2>&1 \
                || say "loop: losetup -d $DEV: $(last_output)"
            ;;
        *)
            [ -n "$ID" ] || return 0
            server=${1%%-*}
            # A del that fails because add never made the device is no news.
            bounded 30 "$server" del -n "$ID" || [ ! -e "/dev/ublkc$ID" ] \
                || say "$1: '$server del -n $ID' failed: $(last_output)"
            if [ -n "$PID" ] && ! wait_for 150 gone "$PID"; then
                say "$1: server $PID still runs 15 s after del: killing it"
                kill -9 "$PID" 2>/dev/null
            fi
            ;;
    esac
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

# Prints "iops lat_mean_ns lat_p99_ns" from fio's JSON output file $1 (its first job; the
# direction that did the I/O). fio pretty-prints one key per line, which awk can follow.
fio_numbers() {
    awk '
function path(   i, p) { p = ""; for (i = 1; i <= depth; i++) p = p stack[i] "."; return p }
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
        }
    }
    if (best == 0 || p99 == "") exit 1
    printf "%.1f %.0f %s\n", iops, mean, p99
}' "$1"
}

# run_fio CASE WORKLOAD REP: one measured fio run on DEV, and its record.
run_fio() {
    spec=$(echo "$WORKLOADS" | tr ' ' '\n' | grep "^$2:")
    rw=$(echo "$spec" | cut -d : -f 2)
    bs=$(echo "$spec" | cut -d : -f 3)
    qd=$(echo "$spec" | cut -d : -f 4)
    if [ -n "$PID" ]; then
        kill -0 "$PID" 2>/dev/null || { error "$1" "$2" "$3" "the server (pid $PID) is gone"; return 1; }
        ticks0=$(pid_ticks "$PID") ctx0=$(pid_ctx "$PID")
    fi
    ios0=$(dev_ios "$DEV")
    rm -f "$WORK/fio.json"
    if ! bounded $((RAMP + RUNTIME + 60)) fio --name="$2" --filename="$DEV" --ioengine=io_uring \
        --direct=1 --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 --time_based \
        --ramp_time="$RAMP" --runtime="$RUNTIME" --norandommap --randrepeat=0 \
        --lat_percentiles=1 --output-format=json --output="$WORK/fio.json"; then
        error "$1" "$2" "$3" "fio failed: $(last_output) $(tail -n 3 "$WORK/fio.json" 2>/dev/null)"
        return 1
    fi
    ios=$(($(dev_ios "$DEV") - ios0))
    # shellcheck disable=SC2046 # the three numbers become $4 $5 $6
    set -- "$1" "$2" "$3" $(fio_numbers "$WORK/fio.json")
    if [ $# -ne 6 ]; then
        error "$1" "$2" "$3" "cannot read IOPS and latency from fio's JSON output"
        return 1
    fi
    server='"cpu_ticks":null,"ctx_switches":null,"hwm_kb":null,"server_pid":null'
    if [ -n "$PID" ]; then
        if ! kill -0 "$PID" 2>/dev/null; then
            error "$1" "$2" "$3" "the server (pid $PID) died during the run"
            return 1
        fi
        server="\"cpu_ticks\":$(($(pid_ticks "$PID") - ticks0)),\"ctx_switches\":$(($(pid_ctx "$PID") - ctx0)),\"hwm_kb\":$(pid_hwm "$PID"),\"server_pid\":$PID"
    fi
    emit "\"type\":\"run\",\"case\":\"$1\",\"workload\":\"$2\",\"rep\":$3,\"device\":\"$DEV\",\"iops\":$4,\"lat_mean_ns\":$5,\"lat_p99_ns\":$6,\"ios\":$ios,$server"
    say "$1 $2 rep $3: $4 IOPS, mean $5 ns, p99 $6 ns"
}

# The cases and workloads the filters let through.
selected() { echo "$1" | tr ' ' '\n' | grep -E "$2" || true; }
# Words on one line, space-separated.
oneline() { echo "$1" | tr -s ' \n' '  ' | sed 's/ $//'; }
cases=$(selected "$CASES" "$CASES_RE")
workloads=$(selected "$(echo "$WORKLOADS" | tr ' ' '\n' | cut -d : -f 1)" "$WORKLOADS_RE")
[ -n "$cases" ] || { say "BENCH_CASES=$CASES_RE selects no case of: $(oneline "$CASES")"; exit 2; }
[ -n "$workloads" ] || { say "BENCH_WORKLOADS=$WORKLOADS_RE selects no workload"; exit 2; }

mkdir -p "$WORK"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

fio_version=$(fio --version 2>/dev/null)
emit "\"type\":\"meta\",\"kernel\":\"$(uname -r)\",\"cpus\":$(grep -c '^processor' /proc/cpuinfo),\"mem_kb\":$(awk '/^MemTotal/ { print $2 }' /proc/meminfo),\"hz\":$HZ,\"runtime\":$RUNTIME,\"ramp\":$RAMP,\"repeat\":$REPEAT,\"depth\":$DEPTH,\"size_mb\":$SIZE_MB,\"fio\":\"$(jsafe "$fio_version")\",\"peers\":\"$(jsafe "$(sed '$!s/$/;/' peers.txt 2>/dev/null)")\",\"cases\":\"$(oneline "$cases")\",\"workloads\":\"$(oneline "$workloads")\""
say "cases: $(oneline "$cases")"
say "workloads: $(oneline "$workloads"); ${RUNTIME}s each after ${RAMP}s of warm-up, $REPEAT repetitions"

# The loop cases' backing file, in tmpfs, written through so that its pages exist.
if echo "$cases" | grep -q loop; then
    say "writing the ${SIZE_MB} MiB backing file $FILE"
    bounded 300 dd if=/dev/zero of="$FILE" bs=1M count="$SIZE_MB" \
        || say "cannot write $FILE: $(last_output) (the loop cases will fail)"
fi

rep=1
while [ "$rep" -le "$REPEAT" ]; do
    for c in $cases; do
        say "--- $c, repetition $rep of $REPEAT"
        # Not in $(...): setup sets DEV, PID and ID for the runs and the teardown.
        if setup "$c" >"$WORK/reason" 2>&1; then
            for w in $workloads; do
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
