#!/usr/bin/env bash
# Resolves, downloads and caches the newest Debian cloud-amd64 kernel that KERNEL selects:
#   KERNEL=7 (default)   newest 7.x from trixie-backports (linux-binary-unsigned-* + linux-modules-*)
#   KERNEL=7.N           newest 7.N.x from trixie-backports
#   KERNEL=6.12          newest 6.12 LTS from bookworm-backports (linux-image-*-cloud-amd64-unsigned)
#
# Run it to print shell assignments (eval "$(scripts/vm/kernel.sh)"):
#   KVER=7.3.4+deb13-cloud-amd64
#   VMLINUZ=<cache>/kernels/7.3.4+deb13/vmlinuz
#   MODDIR=<cache>/kernels/7.3.4+deb13/modules      (the kernel's lib/modules/KVER tree)
# or source it and call vm_fetch_kernel, which sets VM_KVER, VM_VMLINUZ and VM_MODDIR.
#
# Cache: ${UBLK_VM_CACHE:-~/.cache/ublk-vm}/kernels/<version>/, one directory per kernel, so a
# re-run whose newest version is cached downloads nothing (it only refreshes the package index,
# once per run: a few hundred milliseconds). Without network, the newest cached kernel that
# matches KERNEL is used, with a warning.
#
# The system's apt sources are never touched: a private apt configuration under the cache lists
# the one suite needed, and is only used to download packages, never to install them (adding
# trixie or a backports suite to the system's sources would upgrade the machine's libc).

# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# apt-get or apt-cache against one extra suite through the private configuration:
#   vm_apt SUITE apt-get|apt-cache ARGS...
vm_apt() {
    local suite=$1 tool=$2
    shift 2
    local dir="$VM_CACHE/apt/$suite"
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/cache"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
        "$suite" >"$dir/sources.list"
    local -a opts=(
        -o "Dir::Etc::SourceList=$dir/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists"
        -o "Dir::Cache=$dir/cache"
        -o "Dir::Cache::archives=$dir/archives"
        -o Dir::State::status=/var/lib/dpkg/status
        # Fail fast when the network is down, so the cached kernel is used without a long wait.
        -o Acquire::Retries=0
        -o Acquire::http::Timeout=20
    )
    # As root, apt drops to the _apt user, which cannot write into root's home: stay root.
    [ "$(id -u)" -ne 0 ] || opts+=(-o APT::Sandbox::User=root)
    "$tool" -q "${opts[@]}" "$@"
}

# Sets VM_SUITE and VM_VERSION_RE (an ERE matching the versions KERNEL allows, e.g.
# 7.3.4+deb13 or 6.12.90+deb12.1) from KERNEL.
vm_kernel_choice() {
    vm_check_kernel_choice
    # "7.2" must match 7.2.12+deb13, not 7.20.1+deb13: the prefix is followed by .N parts, then +.
    local prefix=${VM_KERNEL_WANTED//./\\.}
    VM_VERSION_RE="${prefix}(\\.[0-9]+)*\\+[^-]+"
    case "$VM_KERNEL_WANTED" in
        6.12*) VM_SUITE=bookworm-backports ;;
        *) VM_SUITE=trixie-backports ;;
    esac
}

# The packages of kernel version $1 (e.g. 7.3.4+deb13) in VM_SUITE: 7.x ships the image and
# the modules apart; bookworm's 6.12 ships both in one package.
vm_kernel_packages() {
    case "$VM_SUITE" in
        trixie-backports) echo "linux-binary-unsigned-$1-cloud-amd64 linux-modules-$1-cloud-amd64" ;;
        bookworm-backports) echo "linux-image-$1-cloud-amd64-unsigned" ;;
    esac
}

# Prints the newest version in VM_SUITE's (already updated) package index that matches KERNEL.
vm_kernel_newest_in_index() {
    local stem re
    case "$VM_SUITE" in
        trixie-backports) stem=linux-binary-unsigned- re="^linux-binary-unsigned-(${VM_VERSION_RE})-cloud-amd64\$" ;;
        bookworm-backports) stem=linux-image- re="^linux-image-(${VM_VERSION_RE})-cloud-amd64-unsigned\$" ;;
    esac
    vm_apt "$VM_SUITE" apt-cache pkgnames "$stem" | sed -nE "s/${re}/\\1/p" | sort -V | tail -n 1
}

# Prints the newest fully cached version that matches KERNEL (empty if none).
vm_kernel_newest_cached() {
    local d
    for d in "$VM_CACHE"/kernels/*/.ready; do
        [ -e "$d" ] || continue
        d=${d%/.ready}
        basename "$d"
    done | { grep -E "^${VM_VERSION_RE}\$" || true; } | sort -V | tail -n 1
}

# Downloads kernel version $1 into the cache as <version>/{vmlinuz,modules/,config,packages}.
# Returns non-zero (leaving nothing behind) if a download fails.
vm_kernel_download() {
    local version=$1 kver="$1-cloud-amd64"
    local final="$VM_CACHE/kernels/$version" tmp="$VM_CACHE/kernels/.download-$version-$$"
    local -a pkgs
    read -r -a pkgs <<<"$(vm_kernel_packages "$version")"
    vm_log "downloading kernel $kver from $VM_SUITE: ${pkgs[*]}"
    rm -rf "$tmp"
    mkdir -p "$tmp/debs" "$tmp/root"
    if ! (cd "$tmp/debs" && vm_apt "$VM_SUITE" apt-get download "${pkgs[@]}" >&2); then
        rm -rf "$tmp"
        return 1
    fi
    local deb
    for deb in "$tmp"/debs/*.deb; do
        dpkg-deb -x "$deb" "$tmp/root"
        printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >>"$tmp/packages"
    done
    # Keep only what a VM needs, at the same place for both layouts: 7.x has
    # usr/lib/modules/KVER/vmlinuz.unsigned, bookworm's 6.12 boot/vmlinuz-KVER and lib/modules/KVER.
    local vmlinuz moddir
    vmlinuz=$(find "$tmp/root" -type f \( -name vmlinuz.unsigned -o -name "vmlinuz-$kver" \) | head -n 1)
    moddir=$(find "$tmp/root" -type d -path "*/lib/modules/$kver" | head -n 1)
    if [ -z "$vmlinuz" ] || [ -z "$moddir" ]; then
        vm_warn "packages ${pkgs[*]} hold no vmlinuz or lib/modules/$kver"
        rm -rf "$tmp"
        return 1
    fi
    mv "$vmlinuz" "$tmp/vmlinuz"
    mv "$moddir" "$tmp/modules"
    [ ! -f "$tmp/root/boot/config-$kver" ] || mv "$tmp/root/boot/config-$kver" "$tmp/config"
    rm -rf "$tmp/root" "$tmp/debs"
    touch "$tmp/.ready"
    rm -rf "$final"
    mv "$tmp" "$final"
}

# Sets VM_KVER (e.g. 7.3.4+deb13-cloud-amd64), VM_VMLINUZ and VM_MODDIR for the kernel KERNEL
# selects, downloading it unless the newest matching version is cached.
vm_fetch_kernel() {
    vm_kernel_choice
    mkdir -p "$VM_CACHE/kernels"

    # Refresh the suite's index at most once per run (the variable is exported to child scripts).
    local version="" log="$VM_CACHE/apt/$VM_SUITE.update.log"
    mkdir -p "$VM_CACHE/apt"
    case " ${VM_APT_UPDATED:-} " in
        *" $VM_SUITE "*) ;;
        *)
            # --error-on=any: without it, an unreachable mirror is only a warning (exit 0).
            if vm_apt "$VM_SUITE" apt-get update --error-on=any >"$log" 2>&1; then
                export VM_APT_UPDATED="${VM_APT_UPDATED:-} $VM_SUITE"
            else
                vm_warn "cannot refresh the $VM_SUITE package index (network down?): $(grep -E '^(E|W):' "$log" | head -n 1)"
            fi
            ;;
    esac
    case " ${VM_APT_UPDATED:-} " in
        *" $VM_SUITE "*)
            version=$(vm_kernel_newest_in_index)
            [ -n "$version" ] || vm_die "no cloud-amd64 kernel matching KERNEL=$VM_KERNEL_WANTED in $VM_SUITE"
            ;;
    esac

    # Serialise downloads between concurrent runs sharing the cache.
    local lock_fd
    exec {lock_fd}>"$VM_CACHE/kernels/.lock"
    flock "$lock_fd"
    # Under the lock no download is in progress: what one that died left behind can go.
    rm -rf "$VM_CACHE"/kernels/.download-*
    if [ -n "$version" ] && [ ! -f "$VM_CACHE/kernels/$version/.ready" ]; then
        vm_kernel_download "$version" || {
            vm_warn "downloading kernel $version failed"
            version=""
        }
    fi
    exec {lock_fd}>&-
    if [ -z "$version" ]; then
        version=$(vm_kernel_newest_cached)
        [ -n "$version" ] || vm_die "no kernel matching KERNEL=$VM_KERNEL_WANTED could be downloaded, and none is cached in $VM_CACHE/kernels"
        vm_warn "using the cached kernel $version: it may not be the newest"
    fi

    VM_KVER="$version-cloud-amd64"
    VM_VMLINUZ="$VM_CACHE/kernels/$version/vmlinuz"
    VM_MODDIR="$VM_CACHE/kernels/$version/modules"
    vm_log "kernel $VM_KVER ($VM_SUITE)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        -h | --help)
            vm_usage "$0"
            exit 0
            ;;
        "") ;;
        *) vm_die "kernel.sh takes no arguments (KERNEL selects the kernel; see --help)" ;;
    esac
    vm_need_commands apt-get:apt dpkg-deb:dpkg flock:util-linux \
        /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
    vm_fetch_kernel
    printf 'KVER=%q\nVMLINUZ=%q\nMODDIR=%q\n' "$VM_KVER" "$VM_VMLINUZ" "$VM_MODDIR"
fi
