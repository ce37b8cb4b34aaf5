#!/usr/bin/env bash
# Packs the test VM's initramfs (a newc cpio archive):
#   /init                 scripts/vm/init: mounts, loads the modules, runs /ublk/run.sh
#   /bin/busybox          static busybox, and a link per applet where it usually lives (bin/sh,
#                         sbin/insmod, usr/bin/env...). Note that busybox sh runs its own applet
#                         before any program of that name in PATH: scripts call host tools that
#                         busybox also has (mktemp, mke2fs) by path, /usr/local/bin/mktemp
#   /lib/modules/*.ko     ublk_drv, the extra modules asked for and every module they depend
#                         on, decompressed (busybox insmod cannot read .ko.xz/.ko.zst), and
#                         load-order, the order /init loads them in (dependencies first)
#   /usr/local/bin/       host programs asked for (fio, mkfs.ext4, ...), with the shared
#                         libraries ldd lists and the dynamic loader at their host paths; a
#                         program given as an absolute path (a file a program loads, such as an
#                         nbdkit plugin) goes to that same path, with its libraries
#   /ublk/                the caller's payload directory, which must hold run.sh
#
#   scripts/vm/initramfs.sh -o OUT -p PAYLOAD [-m "MODULES"] [-t "PROGRAMS"] [-M MODDIR]
#
# MODDIR is the kernel's lib/modules/KVER tree; without -M the kernel KERNEL selects is fetched
# (scripts/vm/kernel.sh). OUT ending in .gz is gzip-compressed, in .zst zstd-compressed, anything
# else is left uncompressed: the fastest to boot under TCG (the guest's decompression is emulated:
# ~4 s for a 100 MB archive, while QEMU loads an uncompressed one at host speed).
#
# Source it to call vm_build_initramfs OUT PAYLOAD "MODULES" "PROGRAMS" with VM_MODDIR set.

# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Fills VM_MODULE_PATH (module name, with _ for - → path of its .ko*) for VM_MODDIR, once.
declare -gA VM_MODULE_PATH=()
VM_MODULE_INDEXED=""
vm_module_index() {
    [ "$VM_MODULE_INDEXED" != "$VM_MODDIR" ] || return 0
    [ -d "$VM_MODDIR/kernel" ] || vm_die "no kernel modules under $VM_MODDIR"
    VM_MODULE_PATH=()
    local path name
    while IFS= read -r path; do
        name=${path##*/}
        name=${name%%.ko*}
        VM_MODULE_PATH[${name//-/_}]=$path
    done < <(find "$VM_MODDIR/kernel" -name '*.ko*')
    VM_MODULE_INDEXED=$VM_MODDIR
}

# Prints module file $1 decompressed.
vm_module_cat() {
    case "$1" in
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -qdc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
    esac
}

# True if module $1 is built into the kernel (according to modules.builtin, when shipped).
vm_module_builtin() {
    [ -f "$VM_MODDIR/modules.builtin" ] \
        && sed 's|.*/||; s|\.ko$||; s|-|_|g' "$VM_MODDIR/modules.builtin" | grep -qx "$1"
}

# Sets VM_MODULE_ORDER to the modules to load for names "$@", dependencies first, each once.
# The dependencies come from each module's own .modinfo (depends=), which is what depmod writes
# to modules.dep (Debian's packages ship no modules.dep: their postinst runs depmod).
vm_module_order() {
    vm_module_index
    VM_MODULE_ORDER=()
    VM_MODULE_SEEN=()
    local m
    for m in "$@"; do
        vm_module_visit "$m"
    done
}
declare -gA VM_MODULE_SEEN=()
vm_module_visit() {
    local name=${1//-/_} dep deps
    [ -z "${VM_MODULE_SEEN[$name]:-}" ] || return 0
    VM_MODULE_SEEN[$name]=1
    if [ -z "${VM_MODULE_PATH[$name]:-}" ]; then
        if vm_module_builtin "$name"; then
            vm_log "module $name is built into this kernel: nothing to load"
            return 0
        fi
        vm_die "kernel module $name not found under $VM_MODDIR (nor listed as built in)"
    fi
    deps=$(vm_module_cat "${VM_MODULE_PATH[$name]}" | tr '\0' '\n' | sed -n 's/^depends=//p')
    for dep in ${deps//,/ }; do
        vm_module_visit "$dep"
    done
    VM_MODULE_ORDER+=("$name")
}

# Copies host program $2 into /usr/local/bin of root $1 under the name asked for (mkfs.ext4 is a
# link to mke2fs, which picks the file system by its name), with the libraries ldd lists. An
# absolute path $2 (a shared object a program loads at run time, e.g. an nbdkit plugin, which
# it finds at its configured path) is copied to that same path, with its libraries.
vm_copy_program() {
    local root=$1 prog=$2 path lib
    case "$prog" in
        /*)
            path=$prog
            [ -f "$path" ] || vm_die "host file $path not found (install it first)"
            install -D -m 0755 "$(readlink -f "$path")" "$root$path"
            ;;
        *)
            path=$(vm_find_command "$prog") || vm_die "host program $prog not found (install it first)"
            install -D -m 0755 "$(readlink -f "$path")" "$root/usr/local/bin/$prog"
            ;;
    esac
    vm_is_static "$path" && return 0
    if ldd "$path" | grep -q 'not found'; then
        vm_die "$path: ldd cannot resolve every library: $(ldd "$path" | grep 'not found' | tr -s ' \t\n' ' ')"
    fi
    # Lines are "libX.so => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)" (the
    # loader); linux-vdso has no path. Each file goes to the path ldd printed.
    for lib in $(ldd "$path" | sed -nE 's|.*=> (/[^ ]+) .*|\1|p; s|^[[:space:]]*(/[^ ]+) .*|\1|p'); do
        [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

# Lays out a minimal busybox system in directory $1 (created, or emptied first): the usual
# directories, static busybox with a link per applet where it usually lives (bin/sh,
# sbin/insmod, usr/bin/env, ...), root in /etc/passwd and /etc/group, /etc/mtab. The base of
# the test VM's initramfs, of the root-on-ublk initramfs and of the root image the root test
# boots (scripts/root/, scripts/root-test.sh).
vm_busybox_tree() {
    local root=$1 busybox applet
    busybox=$(vm_find_command busybox) || vm_die "busybox not found (apt-get install busybox-static)"
    vm_is_static "$busybox" || vm_die "$busybox is dynamically linked: install busybox-static"
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,dev,proc,sys,tmp,run,root,etc,mnt}
    install -m 0755 "$busybox" "$root/bin/busybox"
    # Each applet at its usual place, for scripts that name a program by its path.
    for applet in $("$busybox" --list-full); do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    ln -s /proc/mounts "$root/etc/mtab"
}

# Puts kernel modules "$2" (names; ublk_drv is always first) and every module they depend on
# into $1/lib/modules/, decompressed, with load-order: the order to insmod them in. Sets
# VM_MODULE_ORDER. Needs VM_MODDIR.
vm_install_modules() {
    local root=$1 modules=$2 m
    [ -n "${VM_MODDIR:-}" ] || vm_die "vm_install_modules: VM_MODDIR is not set (call vm_fetch_kernel)"
    mkdir -p "$root/lib/modules"
    # shellcheck disable=SC2086 # the module list is split on spaces on purpose
    vm_module_order ublk_drv $modules
    for m in "${VM_MODULE_ORDER[@]}"; do
        vm_module_cat "${VM_MODULE_PATH[$m]}" >"$root/lib/modules/$m.ko"
    done
    printf '%s\n' "${VM_MODULE_ORDER[@]}" >"$root/lib/modules/load-order"
}

# Packs directory $1 into newc cpio archive $2 (compressed by its name: see the top of this
# file), owned by root, in a stable order.
vm_pack_cpio() {
    local root=$1 out=$2
    local -a compress=(cat)
    case "$out" in
        *.gz) compress=(gzip -1) ;;
        *.zst) compress=(zstd -q -1) ;;
    esac
    mkdir -p "$(dirname "$out")"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) \
        | "${compress[@]}" >"$out"
}

# vm_build_initramfs OUT PAYLOAD "MODULES" "PROGRAMS": see the top of this file. ublk_drv is
# always included and loaded first.
vm_build_initramfs() {
    local out=$1 payload=$2 modules=$3 programs=$4
    [ -n "${VM_MODDIR:-}" ] || vm_die "vm_build_initramfs: VM_MODDIR is not set (call vm_fetch_kernel)"
    [ -d "$payload" ] || vm_die "payload directory $payload does not exist"
    [ -f "$payload/run.sh" ] || vm_warn "$payload/run.sh is missing: the guest will have nothing to run"

    local root="$out.d" m
    vm_busybox_tree "$root"
    vm_install_modules "$root" "$modules"
    for m in $programs; do
        vm_copy_program "$root" "$m"
    done
    # mke2fs reads its defaults (ext4 features) from here.
    [ ! -f /etc/mke2fs.conf ] || cp /etc/mke2fs.conf "$root/etc/"

    cp -RL --preserve=mode,timestamps "$payload" "$root/ublk"
    install -m 0755 "$VM_DIR/init" "$root/init"
    vm_pack_cpio "$root" "$out"
    rm -rf "$root"
    vm_log "initramfs $out: $(du -h "$out" | cut -f 1), modules: ${VM_MODULE_ORDER[*]}${programs:+, programs: $programs}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    usage() { vm_usage "$0"; }
    out="" payload="" modules="" programs="" moddir=""
    while getopts 'o:p:m:t:M:h' opt; do
        case "$opt" in
            o) out=$OPTARG ;;
            p) payload=$OPTARG ;;
            m) modules=$OPTARG ;;
            t) programs=$OPTARG ;;
            M) moddir=$OPTARG ;;
            h) usage; exit 0 ;;
            *) usage >&2; exit 2 ;;
        esac
    done
    if [ -z "$out" ] || [ -z "$payload" ]; then
        usage >&2
        exit 2
    fi
    vm_need_commands busybox:busybox-static cpio:cpio xz:xz-utils zstd:zstd
    if [ -n "$moddir" ]; then
        VM_MODDIR=$moddir
    else
        # shellcheck source=scripts/vm/kernel.sh
        source "$VM_DIR/kernel.sh"
        vm_fetch_kernel
    fi
    vm_build_initramfs "$out" "$payload" "$modules" "$programs"
fi
