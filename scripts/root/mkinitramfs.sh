#!/usr/bin/env bash
# Packs an initramfs that boots a root file system served by ublk (see "Root on ublk" in
# README.md): scripts/root/init as /init, scripts/root/shutdown as /shutdown (copied to
# /run/initramfs at boot), static busybox with its applets, the static `ublk` as /sbin/ublk
# (and /sbin/@ublk, the name the server runs under), and ublk_drv with the modules asked for
# and every module they depend on, decompressed, in /lib/modules (load-order: the order /init
# loads them in).
#
#   scripts/root/mkinitramfs.sh -o OUT [-u UBLK] [-M MODDIR] [-m "MODULES"]
#
#   -o OUT      the archive (newc cpio; OUT ending in .gz or .zst is compressed)
#   -u UBLK     a static `ublk` binary (default: target/x86_64-unknown-linux-gnu/release/ublk,
#               as `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target
#               x86_64-unknown-linux-gnu --bin ublk` builds it)
#   -M MODDIR   the lib/modules/KVER tree of the kernel to boot (default:
#               /lib/modules/$(uname -r))
#   -m MODULES  what else the boot needs before the root mounts, if they are modules: the
#               disk's driver (virtio_blk, nvme, ahci, ...) and the file systems of the root
#               and of what holds its image (ext4, ...)
#
# Then boot the kernel with it and `ublk.root=loop:/dev/DISK` (or loop:DEVICE:PATH for an
# image file on a file system) on the command line: scripts/root/init lists the parameters.
# Needs busybox-static, cpio, and xz/zstd for compressed modules.
#
# Source it to call root_build_initramfs OUT UBLK "MODULES" with VM_MODDIR set (the root test,
# scripts/root-test.sh, does).

# shellcheck source=scripts/vm/initramfs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../vm/initramfs.sh"
ROOT_RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# root_build_initramfs OUT UBLK "MODULES": see the top of this file.
root_build_initramfs() {
    local out=$1 ublk=$2 modules=$3
    [ -f "$ublk" ] || vm_die "no ublk binary at $ublk (build it first, see --help)"
    vm_is_static "$ublk" || vm_die "$ublk is dynamically linked: build it with crt-static (see --help)"
    local tree="$out.d"
    vm_busybox_tree "$tree"
    vm_install_modules "$tree" "$modules"
    install -m 0755 "$ublk" "$tree/sbin/ublk"
    ln -s ublk "$tree/sbin/@ublk"
    install -m 0755 "$ROOT_RECIPE_DIR/init" "$tree/init"
    install -m 0755 "$ROOT_RECIPE_DIR/shutdown" "$tree/shutdown"
    vm_pack_cpio "$tree" "$out"
    rm -rf "$tree"
    vm_log "root-on-ublk initramfs $out: $(du -h "$out" | cut -f 1), modules: ${VM_MODULE_ORDER[*]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    out="" ublk="$VM_REPO/target/x86_64-unknown-linux-gnu/release/ublk" modules=""
    VM_MODDIR="/lib/modules/$(uname -r)"
    while getopts 'o:u:M:m:h' opt; do
        case "$opt" in
            o) out=$OPTARG ;;
            u) ublk=$OPTARG ;;
            M) VM_MODDIR=$OPTARG ;;
            m) modules=$OPTARG ;;
            h)
                vm_usage "$0"
                exit 0
                ;;
            *)
                vm_usage "$0" >&2
                exit 2
                ;;
        esac
    done
    if [ -z "$out" ]; then
        vm_usage "$0" >&2
        exit 2
    fi
    vm_need_commands busybox:busybox-static cpio:cpio xz:xz-utils zstd:zstd
    root_build_initramfs "$out" "$ublk" "$modules"
fi
