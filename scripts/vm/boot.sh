#!/usr/bin/env bash
# Boots a kernel and initramfs (scripts/vm/initramfs.sh) in QEMU with software emulation (TCG:
# this machine's /dev/kvm cannot boot a stock kernel), streams the serial console to stdout and
# to a log file, and exits with the code the guest's /init reports on its last line,
# UBLK-VM-EXIT=<code>. Fails with a clear message when the guest hangs past VM_TIMEOUT seconds
# (exit 124: QEMU is killed) or stops without reporting (exit 125: kernel panic, /init crash).
#
#   scripts/vm/boot.sh -k VMLINUZ -i INITRD [-l LOG] [-d DISK]...
#
#   -l LOG    console log (default target/vm-boot.log)
#   -d DISK   raw disk image attached as /dev/vda (virtio-blk: the initramfs needs virtio_blk);
#             VM_DISK does the same; a second -d is /dev/vdb, and so on
# Environment: VM_MEMORY (2G), VM_CPUS (2), VM_CPU (max,-cx16), VM_TIMEOUT (1200 s),
# VM_BOOT_RETRIES (1: boots again after a kernel crash before /init, see vm_boot),
# VM_UP_MARKER (the console line, an ERE, that says /init runs: '^init: up after'),
# VM_APPEND (extra kernel command line).
#
# Source it to call vm_boot INITRD LOG [DISK...], which boots VM_VMLINUZ.

# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Prints the kernel release a bzImage announces (its header points to the version string).
vm_bzimage_version() {
    local offset
    offset=$(od -An -tu2 -j 526 -N 2 "$1" | tr -d ' ')
    [ -n "$offset" ] || return 1
    dd if="$1" bs=1 skip="$((offset + 512))" count=100 status=none | tr '\0' '\n' | head -n 1 | cut -d ' ' -f 1
}

# vm_boot INITRD LOG [DISK...]: boots VM_VMLINUZ with INITRD and the disks (/dev/vda, vdb, ...;
# empty names are skipped; none given: VM_DISK, if set); returns the guest's exit code.
#
# A guest kernel that crashes before it reaches /init (before a console line matches
# VM_UP_MARKER, by default scripts/vm/init's first) is booted again, VM_BOOT_RETRIES times
# (default 1), with a warning: no test has run then, so the crash cannot come from the code under
# test, and QEMU 7.2's multi-threaded TCG does rarely crash a booting kernel (seen: an "Oops: int3"
# while the kernel patched its own code on the other vCPU, about 1 boot in 30, on 7.3). The
# crashed boot's console stays in LOG.crash-N.
vm_boot() {
    local initrd=$1 log=$2 disk
    shift 2
    local -a disks=()
    for disk in "$@"; do
        [ -z "$disk" ] || disks+=("$disk")
    done
    [ "${#disks[@]}" -gt 0 ] || [ -z "${VM_DISK:-}" ] || disks=("$VM_DISK")
    local attempt=0 rc
    rm -f "$log".crash-*
    while :; do
        rc=0
        vm_boot_once "$initrd" "$log" "${disks[@]+"${disks[@]}"}" || rc=$?
        if [ "$rc" -ne 125 ] || grep -Eq "${VM_UP_MARKER:-^init: up after}" "$log" \
            || [ "$attempt" -ge "${VM_BOOT_RETRIES:-1}" ]; then
            return "$rc"
        fi
        attempt=$((attempt + 1))
        cp "$log" "$log.crash-$attempt"
        vm_warn "the guest kernel crashed before reaching /init (no test ran; console in $log.crash-$attempt): booting again"
    done
}

# One boot: see vm_boot (vm_boot_once INITRD LOG [DISK...]).
vm_boot_once() {
    local initrd=$1 log=$2 disk
    shift 2
    [ -f "${VM_VMLINUZ:-}" ] || vm_die "vm_boot: VM_VMLINUZ (${VM_VMLINUZ:-unset}) is not a file"
    [ -f "$initrd" ] || vm_die "vm_boot: initramfs $initrd does not exist"
    local kver=${VM_KVER:-$(vm_bzimage_version "$VM_VMLINUZ")}

    # -cx16: Debian's 6.12 kernel often double-faults in the slab allocator's cmpxchg16b path
    # under QEMU 7.2's TCG; without the instruction it runs clean. 7.x boots and passes either
    # way, so every kernel gets the same CPU: one fewer difference between the two runs.
    local cpu=${VM_CPU:-max,-cx16}
    # /init gives run.sh a minute less than the host does, so a hang is reported with the
    # blocked tasks' stacks rather than only as a killed VM.
    local guest_timeout=$((VM_TIMEOUT > 120 ? VM_TIMEOUT - 60 : VM_TIMEOUT / 2))
    local -a qemu=(
        qemu-system-x86_64
        -accel "tcg,thread=multi" -cpu "$cpu" -smp "$VM_CPUS" -m "$VM_MEMORY"
        # No default devices (network card, VGA, floppy, CD-ROM): only the serial console.
        -nodefaults -no-user-config -display none -serial stdio
        # A guest reboot (and so a panic, with panic=-1) ends QEMU instead of looping.
        -no-reboot
        -kernel "$VM_VMLINUZ" -initrd "$initrd"
        -append "console=ttyS0 panic=-1 quiet loglevel=4 ublk_vm.timeout=$guest_timeout ${VM_APPEND:-}"
    )
    for disk in "$@"; do
        [ -f "$disk" ] || vm_die "disk image $disk does not exist"
        qemu+=(-drive "file=$disk,format=raw,if=virtio,cache=unsafe,discard=unmap")
    done

    mkdir -p "$(dirname "$log")"
    vm_log "booting $kver (TCG, $VM_CPUS vCPUs, $VM_MEMORY, -cpu $cpu${1:+, disks $*}, timeout ${VM_TIMEOUT}s); console log: $log"
    local start=${EPOCHREALTIME//[!0-9]/}
    local -a status
    # --foreground keeps QEMU in our process group, so Ctrl-C stops it too. The console's CRs
    # are dropped, line by line (sed -u) so the output streams as the guest prints it.
    {
        timeout --foreground --kill-after=10 "$VM_TIMEOUT" "${qemu[@]}" </dev/null 2>&1 \
            | sed -u 's/\r$//' | tee "$log"
        status=("${PIPESTATUS[@]}")
    } || true
    local elapsed=$(((${EPOCHREALTIME//[!0-9]/} - start) / 100000))
    elapsed="$((elapsed / 10)).$((elapsed % 10))"

    if [ "${status[0]}" -eq 124 ] || [ "${status[0]}" -eq 137 ]; then
        vm_log "error: the VM did not finish within VM_TIMEOUT=${VM_TIMEOUT}s and was killed; see $log"
        return 124
    fi
    local code
    code=$(sed -nE 's/^UBLK-VM-EXIT=([0-9]{1,3}).*/\1/p' "$log" | tail -n 1)
    if [ -z "$code" ]; then
        if [ "${status[0]}" -ne 0 ]; then
            vm_log "error: QEMU failed (exit ${status[0]}) after ${elapsed}s; see $log"
        else
            vm_log "error: the guest stopped after ${elapsed}s without reporting a result: $(
                grep -m 1 -E 'Kernel panic|Attempted to kill init|BUG:|Oops' "$log" || echo 'no panic message either')"
            vm_log "see $log"
        fi
        return 125
    fi
    local booted
    booted=$(sed -nE 's/^init: up after ([0-9.]+)s.*/\1/p' "$log" | head -n 1)
    vm_log "guest exit code $code; QEMU ran ${elapsed}s (the kernel reached /init after ${booted:-?}s)"
    return "$code"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    usage() { vm_usage "$0"; }
    initrd="" log="$VM_REPO/target/vm-boot.log"
    disks=()
    VM_VMLINUZ=""
    while getopts 'k:i:l:d:h' opt; do
        case "$opt" in
            k) VM_VMLINUZ=$OPTARG ;;
            i) initrd=$OPTARG ;;
            l) log=$OPTARG ;;
            d) disks+=("$OPTARG") ;;
            h) usage; exit 0 ;;
            *) usage >&2; exit 2 ;;
        esac
    done
    if [ -z "$VM_VMLINUZ" ] || [ -z "$initrd" ]; then
        usage >&2
        exit 2
    fi
    vm_need_commands qemu-system-x86_64:qemu-system-x86
    rc=0
    vm_boot "$initrd" "$log" "${disks[@]+"${disks[@]}"}" || rc=$?
    exit "$rc"
fi
