#!/usr/bin/env bash
# Boots a VM whose root file system is served by ublk (the recipe in scripts/root/, see "Root on
# ublk" in README.md) and checks it, in libtest's format (`test root::NAME ... ok`):
#   - in the booted root (scripts/vm/root-init, run as init=): served by the initramfs's server,
#     hardened (OOM score, locked memory, `@` name), files written with fsync, fio verify, the
#     server handed over while fio verify runs (`ublk quiesce` + `ublk recover` where the
#     kernel has QUIESCE; `kill -9` + `ublk recover` and `ublk recover --take-over` on every
#     kernel), the root usable after, a clean kernel log;
#   - on the host after the guest powered off: the shutdown made the root read-only and
#     stopped the device, `e2fsck -fn` finds the image clean, and the files read back from it
#     with the sums the guest printed;
#   - two short boots with a wrong `ublk.root=` (no such device, no such file): each ends in
#     one clear line and a reboot (panic=-1), not a hang.
#
#   scripts/root-test.sh               newest 7.x kernel (trixie-backports)
#   KERNEL=6.12 scripts/root-test.sh   newest 6.12 LTS kernel (bookworm-backports)
#   scripts/root-test.sh --help        this text
#
# The VM has two disks: /dev/vda, an ext4 file system holding the root image as the file
# /images/root.img, and /dev/vdb, the root image itself. ROOT_FORM says which the boot uses:
# `device` (ublk.root=loop:/dev/vdb; the default on 7.x) or `file`
# (ublk.root=loop:/dev/vda:/images/root.img; the default on 6.12), so that CI boots both forms.
# Exits non-zero if any check fails. Console logs: target/root-test.log (the root's boot),
# target/root-test-wrong-*.log (the wrong ones). The VM_* settings of scripts/vm-test.sh apply
# (VM_TIMEOUT: 600 s here).
set -euo pipefail

case "${1:-}" in
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    "") ;;
    *)
        echo "root-test.sh: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
esac

cd "$(dirname "$0")/.."
# shellcheck source=scripts/vm/lib.sh
source scripts/vm/lib.sh
# shellcheck source=scripts/root/mkinitramfs.sh
source scripts/root/mkinitramfs.sh
vm_check_kernel_choice
case "${ROOT_FORM:-}" in
    device | file) ;;
    "") case "$VM_KERNEL_WANTED" in 6.12*) ROOT_FORM="file" ;; *) ROOT_FORM="device" ;; esac ;;
    *) vm_die "ROOT_FORM=$ROOT_FORM: choose device or file" ;;
esac
export VM_TIMEOUT=${VM_TIMEOUT:-600}

# --- Build: the static ublk, the kernel, the initramfs, the disks ------------------------------
vm_install_deps
work=target/vm/root
mkdir -p "$work"
vm_build_payload "$work/payload"
ublk="$work/payload/bin/ublk"
vm_fetch_kernel
initramfs="$work/initramfs.cpio"
root_build_initramfs "$initramfs" "$ublk" virtio_blk

# The root: busybox, fio with its libraries, the root's own ublk, the test as its init. Sparse
# images: 512 MiB of which about 100 are used.
tree="$work/tree"
vm_busybox_tree "$tree"
install -m 0755 "$ublk" "$tree/usr/sbin/ublk"
vm_copy_program "$tree" fio
install -m 0755 scripts/vm/root-init "$tree/sbin/root-test"
mkdir -p "$tree/var/tmp" "$tree/var/lib"
root_img="$work/root.img"
rm -f "$root_img"
mke2fs -q -F -t ext4 -L ublk-root -E root_owner=0:0 -d "$tree" "$root_img" 512M
# The disk that holds it as a file, for the file form.
rm -rf "$tree" "$work/host"
mkdir -p "$work/host/images"
cp --sparse=always "$root_img" "$work/host/images/root.img"
host_img="$work/host.img"
rm -f "$host_img"
mke2fs -q -F -t ext4 -L ublk-host -E root_owner=0:0 -d "$work/host" "$host_img" 768M
rm -rf "$work/host"

# --- Results -------------------------------------------------------------------------------------
passed=0 failed=0 ignored=0
# ok NAME [NOTE...] / fail NAME WHY...: one libtest line, notes indented below.
ok() {
    echo "test root::$1 ... ok"
    shift
    [ $# -eq 0 ] || printf '  %s\n' "$@"
    passed=$((passed + 1))
}
fail() {
    echo "test root::$1 ... FAILED"
    shift
    printf '  %s\n' "$@"
    failed=$((failed + 1))
}

# --- The boot with root on ublk -------------------------------------------------------------------
case "$ROOT_FORM" in
    device) root_arg="ublk.root=loop:/dev/vdb" ;;
    file) root_arg="ublk.root=loop:/dev/vda:/images/root.img" ;;
esac
log=target/root-test.log
vm_log "root test: $root_arg"
rc=0
VM_UP_MARKER='^ublk-root: ' VM_APPEND="$root_arg init=/sbin/root-test ${VM_APPEND:-}" \
    vm_boot "$initramfs" "$log" "$host_img" "$root_img" || rc=$?

# The guest's own tests, as it reported them (again, away from the console's other lines); each
# one it should have run must be there.
echo "root-test: the results of $root_arg on $VM_KVER:"
guest_tests="boot_from_initramfs_server fsync_files fio_verify handover_quiesce_during_fio_verify
    kill_during_fio_verify_then_recover take_over_during_fio_verify kernel_log_clean"
for name in $guest_tests; do
    line=$(grep -E "^test root::$name \.\.\. " "$log" | tail -n 1 || true)
    [ -z "$line" ] || echo "$line"
    case "$line" in
        *" ... ok") passed=$((passed + 1)) ;;
        *" ... ignored"*) ignored=$((ignored + 1)) ;;
        *" ... FAILED") failed=$((failed + 1)) ;;
        *) fail "$name" "the guest never reported it (exit code $rc; see $log)" ;;
    esac
done

# The poweroff: the guest's /run/initramfs/shutdown made / read-only and stopped the device.
if [ "$rc" -eq 124 ] || [ "$rc" -eq 125 ]; then
    fail poweroff_clean "the guest did not power off by itself (exit code $rc; see $log)"
elif ! grep -Eq '^ublk-root: shutdown: / (remounted read-only|unmounted)' "$log" \
    || ! grep -q '^ublk-root: shutdown: ublk devices stopped and deleted' "$log" \
    || grep -Eq '^ublk-root: shutdown: (error|.*still mounted)' "$log"; then
    fail poweroff_clean "the shutdown did not make / read-only, stop the device and unmount:" \
        "$(grep '^ublk-root: shutdown:' "$log" || echo 'it said nothing')"
else
    ok poweroff_clean "$(grep '^ublk-root: shutdown:' "$log" | tr '\n' ';' | sed 's/;$//')"
fi

# The image, after the poweroff: clean, and holding the files as the guest wrote them.
# (The file form: the image is a file on /dev/vda's file system, which must be clean too.)
image=$root_img
host_fsck=""
if [ "$ROOT_FORM" = file ]; then
    image="$work/root-from-host.img"
    rm -f "$image"
    e2fsck -fn "$host_img" >"$work/e2fsck-host.log" 2>&1 || host_fsck=$(tail -n 20 "$work/e2fsck-host.log")
    debugfs -R "dump /images/root.img $image" "$host_img" >/dev/null 2>&1 || true
fi
if [ ! -s "$image" ]; then
    fail image_fsck_clean "no root image to check: debugfs could not dump /images/root.img"
elif ! e2fsck -fn "$image" >"$work/e2fsck.log" 2>&1; then
    fail image_fsck_clean "e2fsck -fn $image:" "$(tail -n 20 "$work/e2fsck.log")"
elif [ -n "$host_fsck" ]; then
    fail image_fsck_clean "e2fsck -fn $host_img (/dev/vda, holding /images/root.img):" "$host_fsck"
elif [ "$ROOT_FORM" = file ]; then
    ok image_fsck_clean "e2fsck -fn: $(tail -n 1 "$work/e2fsck.log")" \
        "and /dev/vda, which holds it as /images/root.img: clean"
else
    ok image_fsck_clean "e2fsck -fn: $(tail -n 1 "$work/e2fsck.log")"
fi

mapfile -t sums < <(sed -nE 's/^  sha256 ([0-9a-f]{64})  (\/.*)$/\1 \2/p' "$log")
bad=()
for entry in "${sums[@]}"; do
    sum=${entry%% *} path=${entry#* }
    rm -f "$work/readback"
    debugfs -R "dump $path $work/readback" "$image" >/dev/null 2>&1 || true
    got=$(sha256sum "$work/readback" 2>/dev/null | cut -d ' ' -f 1 || true)
    [ "$got" = "$sum" ] || bad+=("$path: ${got:-missing}, the guest wrote $sum")
done
rm -f "$work/readback"
if [ "${#sums[@]}" -lt 9 ]; then
    fail files_read_back "the guest reported ${#sums[@]} files' sums, not 9 (see $log)"
elif [ "${#bad[@]}" -gt 0 ]; then
    fail files_read_back "${bad[@]}"
else
    ok files_read_back "${#sums[@]} files read back from the image after poweroff, sha256 as written"
fi

# --- Wrong ublk.root=: one clear line, then a reboot (panic=-1), fast ------------------------------
# wrong_boot NAME "KERNEL ARGUMENTS" EXPECTED-ERE
wrong_boot() {
    local name=$1 args=$2 want=$3 wlog="target/root-test-wrong-$1.log" wrc=0 start=$SECONDS
    vm_log "root test: wrong root ($args): this boot must end in one error line, without a result"
    VM_TIMEOUT=180 VM_UP_MARKER='^ublk-root: ' VM_APPEND="$args init=/sbin/root-test ${VM_APPEND:-}" \
        vm_boot "$initramfs" "$wlog" "$host_img" "$root_img" || wrc=$?
    local took=$((SECONDS - start)) lines
    lines=$(grep '^ublk-root: ' "$wlog" || true)
    if [ "$wrc" -eq 124 ]; then
        fail "$name" "the boot hung (killed after ${VM_TIMEOUT}s... see $wlog)"
    elif [ "$wrc" -ne 125 ]; then
        fail "$name" "the boot went on (exit code $wrc), see $wlog"
    elif [ "$(printf '%s\n' "$lines" | grep -c .)" -ne 1 ] || ! grep -Eq "$want" <<<"$lines"; then
        fail "$name" "want one line matching: $want" "got:" "${lines:-nothing}"
    else
        ok "$name" "$lines" "(the VM ran ${took}s)"
    fi
}
wrong_boot missing_device "ublk.root=loop:/dev/vdz ublk.rootwait=2" \
    '^ublk-root: error: ublk.root=loop:/dev/vdz: no block device /dev/vdz after 2s; rebooting'
wrong_boot missing_file "ublk.root=loop:/dev/vda:/images/no-such.img" \
    '^ublk-root: error: ublk.root=loop:/dev/vda:/images/no-such.img: no such file /images/no-such.img on /dev/vda; rebooting'

# --- Summary ---------------------------------------------------------------------------------------
result=ok
[ "$failed" -eq 0 ] || result=FAILED
echo "test result: $result. $passed passed; $failed failed; $ignored ignored (root on ublk, kernel $VM_KVER, ROOT_FORM=$ROOT_FORM, ${SECONDS}s)"
[ "$failed" -eq 0 ]
