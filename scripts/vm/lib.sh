# shellcheck shell=bash
# The VM toolkit shared by vm-test.sh (and later bench.sh and demo.sh): install what the VM needs,
# fetch and cache a Debian cloud kernel, pack an initramfs, boot it under QEMU/TCG.
#
# Source it; it defines functions and variables prefixed vm_ / VM_ and changes no shell options.
#
# Why a VM: the build machine's kernel has io_uring but no ublk driver, and its /dev/kvm cannot
# boot a stock kernel, so every test that touches /dev/ublk-control runs in QEMU's software
# emulation (TCG). A Debian cloud kernel boots to a busybox initramfs in a few seconds there.

VM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_CACHE=${UBLK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-vm}
# Which kernel: a version prefix. "7" (default) is the newest 7.x from trixie-backports;
# "6.12" the newest 6.12 LTS from bookworm-backports; "7.2" the newest 7.2.x, and so on.
VM_KERNEL_WANTED=${KERNEL:-7}
VM_MEMORY=${VM_MEMORY:-2G}
VM_CPUS=${VM_CPUS:-2}
VM_TIMEOUT=${VM_TIMEOUT:-1200}

vm_log() { printf '[vm] %s\n' "$*" >&2; }
vm_die() { printf '[vm] error: %s\n' "$*" >&2; exit 1; }

# Refuse an unknown KERNEL choice before minutes of building, not after.
case "$VM_KERNEL_WANTED" in
    6.12 | 6.12.* | 7 | 7.*) ;;
    *) vm_die "KERNEL=$VM_KERNEL_WANTED: choose 7 (or 7.N) from trixie-backports, or 6.12 from bookworm-backports" ;;
esac

# Runs a command as root: directly when we are root, through sudo otherwise.
vm_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages the VM needs, from the system's own apt sources, when missing.
vm_install_deps() {
    local -a need=()
    local cmd pkg
    for pair in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio \
        xz:xz-utils zstd:zstd fio:fio mkfs.ext4:e2fsprogs e2fsck:e2fsprogs \
        python3:python3 apt-get:apt gzip:gzip; do
        cmd=${pair%%:*} pkg=${pair#*:}
        if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/sbin/$cmd" ] && ! [ -x "/usr/sbin/$cmd" ]; then
            need+=("$pkg")
        fi
    done
    # A static busybox is needed: the dynamic one would need its libraries in the initramfs.
    if command -v busybox >/dev/null 2>&1 && ! file_is_static "$(command -v busybox)"; then
        need+=(busybox-static)
    fi
    # Static Rust binaries link glibc's static archives.
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
    # The private apt configuration verifies trixie/bookworm-backports with Debian's keys.
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
    if [ "${#need[@]}" -gt 0 ]; then
        mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
        vm_log "installing: ${need[*]}"
        vm_as_root apt-get update -qq
        vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

file_is_static() {
    # ELF static executables have no PT_INTERP; `ldd` says "not a dynamic executable".
    ! ldd "$1" >/dev/null 2>&1
}

# Builds the static binaries the guest runs into payload directory $1 (emptied first):
#   $1/e2e*     the end-to-end test binaries (profile VM_PROFILE, default dev)
#   $1/bin/     every binary and example of the workspace (release)
# and sets VM_TEST_NAMES to the test binaries' names.
#
# Static, so the guest needs no libraries: glibc's static archives on the gnu target (no musl
# target is available here). The explicit --target keeps RUSTFLAGS away from build scripts,
# which run on the host.
vm_build_payload() {
    local payload=$1 profile=${VM_PROFILE:-dev} target=x86_64-unknown-linux-gnu
    local -a tests
    export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
    vm_log "building the end-to-end tests (static, profile $profile)"
    mapfile -t tests < <(
        cd "$VM_REPO" && cargo test -p ublk-tests --tests --no-run --profile "$profile" --target "$target" \
            --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and msg["target"]["name"].startswith("e2e"):
        print(msg["target"]["name"] + "=" + msg["executable"])
')
    [ "${#tests[@]}" -gt 0 ] || vm_die "no e2e test binary was built"
    vm_log "building the workspace's binaries and examples (static, release)"
    (cd "$VM_REPO" && cargo build --workspace --release --bins --examples --target "$target" --quiet)

    rm -rf "$payload"
    mkdir -p "$payload/bin"
    VM_TEST_NAMES=()
    local t f
    for t in "${tests[@]}"; do
        install -m 0755 "${t#*=}" "$payload/${t%%=*}"
        VM_TEST_NAMES+=("${t%%=*}")
    done
    # Tests and demos call the tools and examples as a user would. Cargo's hashed copies
    # (name-hash) and dependency files are left out.
    for f in "$VM_REPO/target/$target/release"/* "$VM_REPO/target/$target/release/examples"/*; do
        if [ -f "$f" ] && [ -x "$f" ] && [[ "$(basename "$f")" != *-* ]]; then
            install -m 0755 "$f" "$payload/bin/"
        fi
    done
}

# For --host runs: checks for root and loads ublk_drv if /dev/ublk-control is missing.
vm_require_host_driver() {
    [ "$(id -u)" -eq 0 ] || vm_die "--host needs root (it creates and deletes ublk devices)"
    [ -e /dev/ublk-control ] || modprobe ublk_drv 2>/dev/null || true
    [ -e /dev/ublk-control ] \
        || vm_die "--host: no /dev/ublk-control and 'modprobe ublk_drv' failed; run without --host to use a VM"
}

# apt-get/apt-cache against ONE extra suite, through a private configuration under the cache.
# The system's sources are never touched: adding trixie or backports there would upgrade the
# machine's libc on the next install.
vm_apt() {
    local suite=$1; shift
    local dir="$VM_CACHE/apt/$suite"
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/cache"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
        "$suite" >"$dir/sources.list"
    local tool=$1; shift
    "$tool" -q \
        -o Dir::Etc::SourceList="$dir/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$dir/lists" \
        -o Dir::Cache="$dir/cache" \
        -o Dir::Cache::archives="$dir/archives" \
        -o Dir::State::status=/var/lib/dpkg/status \
        -o APT::Sandbox::User=root \
        "$@"
}

# Sets VM_KVER, VM_VMLINUZ and VM_MODDIR for the kernel KERNEL selects, downloading it into the
# cache unless the newest matching version is there already. Without network, falls back to the
# newest cached kernel that matches, with a warning.
vm_fetch_kernel() {
    local suite image_re
    case "$VM_KERNEL_WANTED" in
        6.12*) suite=bookworm-backports
            image_re="^linux-image-(${VM_KERNEL_WANTED//./\\.}[0-9.]*\\+[^ -]+)-cloud-amd64-unsigned " ;;
        *) suite=trixie-backports
            image_re="^linux-binary-unsigned-(${VM_KERNEL_WANTED//./\\.}[0-9.]*\\+[^ -]+)-cloud-amd64 " ;;
    esac

    local version=""
    if vm_apt "$suite" apt-get update >/dev/null 2>&1; then
        version=$(vm_apt "$suite" apt-cache search --names-only 'cloud-amd64' \
            | sed -nE "s/${image_re}.*/\\1/p" | sort -V | tail -n 1)
    else
        vm_log "warning: cannot reach the $suite package index; looking for a cached kernel"
    fi
    if [ -z "$version" ]; then
        version=$(find "$VM_CACHE/kernels" -mindepth 1 -maxdepth 1 -type d -name "${VM_KERNEL_WANTED}*" -printf '%f\n' \
            2>/dev/null | sort -V | tail -n 1)
        [ -n "$version" ] || vm_die "no $VM_KERNEL_WANTED kernel in $suite and none cached in $VM_CACHE/kernels"
        vm_log "warning: using cached kernel $version; it may not be the newest"
    fi

    local dir="$VM_CACHE/kernels/$version"
    if [ ! -f "$dir/.complete" ]; then
        local kver="$version-cloud-amd64"
        local -a pkgs
        case "$suite" in
            trixie-backports) pkgs=("linux-binary-unsigned-$kver" "linux-modules-$kver") ;;
            bookworm-backports) pkgs=("linux-image-$kver-unsigned") ;;
        esac
        vm_log "downloading kernel $kver from $suite: ${pkgs[*]}"
        rm -rf "$dir"
        mkdir -p "$dir/debs" "$dir/root"
        (cd "$dir/debs" && vm_apt "$suite" apt-get download "${pkgs[@]}" >/dev/null) \
            || vm_die "downloading ${pkgs[*]} failed"
        for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
        rm -rf "$dir/debs"
        touch "$dir/.complete"
    fi

    VM_KVER="$version-cloud-amd64"
    VM_MODDIR=$(find "$dir/root" -type d -path "*/modules/$VM_KVER" | head -n 1)
    VM_VMLINUZ=$(find "$dir/root" -type f \( -name 'vmlinuz.unsigned' -o -name "vmlinuz-$VM_KVER" \) | head -n 1)
    [ -n "$VM_MODDIR" ] && [ -n "$VM_VMLINUZ" ] || vm_die "kernel $VM_KVER: no vmlinuz or modules in $dir/root"
    vm_log "kernel $VM_KVER"
}

# Prints the path of module $1 (name with - or _) under VM_MODDIR.
vm_module_path() {
    local want=${1//-/_} path name
    while IFS= read -r path; do
        name=$(basename "$path"); name=${name%%.ko*}
        if [ "${name//-/_}" = "$want" ]; then printf '%s\n' "$path"; return 0; fi
    done < <(find "$VM_MODDIR/kernel" -name '*.ko*')
    return 1
}

# Prints a module's decompressed contents on stdout.
vm_module_cat() {
    case "$1" in
        *.xz) xz -dc "$1" ;;
        *.zst) zstd -qdc "$1" ;;
        *.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
    esac
}

# Prints the modules to load for the given names, dependencies first, each once.
vm_module_order() {
    local -A seen=()
    local -a order=()
    visit() {
        local name=${1//-/_} path dep
        [ -n "${seen[$name]:-}" ] && return 0
        seen[$name]=1
        path=$(vm_module_path "$name") || vm_die "module $name not found in $VM_MODDIR"
        # `depends=` in the module's .modinfo lists what must be loaded first.
        for dep in $(vm_module_cat "$path" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
            visit "$dep"
        done
        order+=("$name")
    }
    local m
    for m in "$@"; do visit "$m"; done
    printf '%s\n' "${order[@]}"
}

# Copies a host program and the shared libraries it needs into the initramfs root $1.
vm_copy_program() {
    local root=$1 prog=$2 path lib
    path=$(command -v "$prog" 2>/dev/null || true)
    [ -n "$path" ] || { [ -x "/sbin/$prog" ] && path=/sbin/$prog; } || { [ -x "/usr/sbin/$prog" ] && path=/usr/sbin/$prog; }
    [ -n "$path" ] || vm_die "host program $prog not found"
    install -D -m 0755 "$(readlink -f "$path")" "$root/usr/local/bin/$prog"
    if ! file_is_static "$path"; then
        # Every library ldd resolves, and the dynamic loader, at the same paths.
        for lib in $(ldd "$path" | grep -oE '/[^ ]+' ); do
            [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
    fi
}

# Builds an initramfs.
#   vm_build_initramfs OUT PAYLOAD_DIR "MODULES" "PROGRAMS"
# PAYLOAD_DIR is copied to /ublk and must hold run.sh, which /init runs after loading MODULES
# (space-separated names; ublk_drv first); PROGRAMS are host programs to copy in (with libraries).
vm_build_initramfs() {
    local out=$1 payload=$2 modules=$3 programs=$4
    local root
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,mnt,lib/modules,usr/local/bin}
    install -m 0755 "$(command -v busybox)" "$root/bin/busybox"
    local applet
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done

    local m path
    : >"$root/lib/modules/load-order"
    # shellcheck disable=SC2086 # word splitting of the module list is intended
    for m in $(vm_module_order $modules); do
        path=$(vm_module_path "$m")
        # busybox insmod cannot decompress: store modules uncompressed.
        vm_module_cat "$path" >"$root/lib/modules/$m.ko"
        echo "$m" >>"$root/lib/modules/load-order"
    done

    for m in $programs; do vm_copy_program "$root" "$m"; done
    cp -a "$payload" "$root/ublk"
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    install -m 0755 "$VM_REPO/scripts/vm/init" "$root/init"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$out"
    rm -rf "$root"
}

# Boots the kernel with initramfs $1 under TCG, streaming the console to stdout and to log $2.
# Returns the exit code /init reports (UBLK-VM-EXIT=N), or fails when the guest dies or hangs.
vm_boot() {
    local initramfs=$1 log=$2
    local cpu=max
    # The 6.12 kernel double-faults in the slab allocator's cmpxchg16b path under QEMU 7.2 TCG;
    # without cx16 it runs clean. 7.x does not need it, and keeps the CPU model unchanged.
    case "$VM_KVER" in 6.12.*) cpu=max,-cx16 ;; esac
    vm_log "booting $VM_KVER (TCG, $VM_CPUS vCPUs, $VM_MEMORY, timeout ${VM_TIMEOUT}s); log: $log"
    local rc=0
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
        -accel tcg,thread=multi -smp "$VM_CPUS" -m "$VM_MEMORY" -cpu "$cpu" \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$VM_VMLINUZ" -initrd "$initramfs" \
        -append "console=ttyS0 panic=-1 quiet loglevel=4 ${VM_APPEND:-}" \
        </dev/null 2>&1 | tr -d '\r' | tee "$log" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        vm_log "error: the VM did not finish within ${VM_TIMEOUT}s and was killed"
        return 1
    fi
    local code
    code=$(sed -n 's/^UBLK-VM-EXIT=\([0-9]\{1,3\}\)$/\1/p' "$log" | tail -n 1)
    if [ -z "$code" ]; then
        vm_log "error: the guest stopped without reporting a result (kernel panic or /init failure); see $log"
        return 1
    fi
    return "$code"
}
