# shellcheck shell=bash
# The VM toolkit for scripts that run code against the real ublk driver (vm-test.sh, demo.sh):
# sources kernel.sh, initramfs.sh and boot.sh (each also usable on its own, see their headers)
# and adds what those scripts share: installing the tools, building the static payload, checking
# the host for --host runs.
#
# Why a VM: this machine's kernel has io_uring but no ublk driver, and its /dev/kvm cannot boot a
# stock kernel, so everything that touches /dev/ublk-control runs in QEMU's software emulation
# (TCG), on a Debian cloud kernel that boots to a busybox initramfs in about five seconds.
#
# Source it; it defines vm_* functions and VM_* variables and changes no shell option.

# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/vm/kernel.sh
source "$VM_DIR/kernel.sh"
# shellcheck source=scripts/vm/initramfs.sh
source "$VM_DIR/initramfs.sh"
# shellcheck source=scripts/vm/boot.sh
source "$VM_DIR/boot.sh"

VM_TARGET=x86_64-unknown-linux-gnu

# Installs what building the payload needs, when missing, from the system's own apt sources.
vm_install_build_deps() {
    command -v cargo >/dev/null 2>&1 || vm_die "cargo not found: install the Rust toolchain first"
    # Static Rust binaries link glibc's static archives (libc6-dev).
    vm_need_commands python3:python3 /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev
}

# Installs what building the payload and running the VM need, when missing.
vm_install_deps() {
    vm_install_build_deps
    vm_need_commands \
        qemu-system-x86_64:qemu-system-x86 cpio:cpio xz:xz-utils zstd:zstd \
        apt-get:apt dpkg-deb:dpkg flock:util-linux \
        fio:fio mkfs.ext4:e2fsprogs e2fsck:e2fsprogs mktemp:coreutils \
        nbd-server:nbd-server nbd-client:nbd-client nbdkit:nbdkit qemu-nbd:qemu-utils \
        /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring
    # The initramfs needs a static busybox: the "busybox" package's is dynamically linked.
    local busybox
    if ! busybox=$(vm_find_command busybox) || ! vm_is_static "$busybox"; then
        vm_apt_install busybox-static
    fi
}

# The nbdkit plugins and filters the guest gets (what the tests use): shared objects nbdkit
# loads from the directories `nbdkit --dump-config` names.
VM_NBDKIT_PLUGINS="memory"
VM_NBDKIT_FILTERS="exportname"

# Prints the NBD programs the guest gets, for vm_build_initramfs: the servers nbd-server,
# qemu-nbd and nbdkit (with the paths of VM_NBDKIT_PLUGINS and VM_NBDKIT_FILTERS), and
# nbd-client, the tool of the kernel's client.
vm_nbd_programs() {
    local config plugindir filterdir name
    config=$(nbdkit --dump-config) || vm_die "nbdkit --dump-config failed"
    plugindir=$(sed -n 's/^plugindir=//p' <<<"$config")
    filterdir=$(sed -n 's/^filterdir=//p' <<<"$config")
    if [ -z "$plugindir" ] || [ -z "$filterdir" ]; then
        vm_die "nbdkit --dump-config names no plugindir or filterdir"
    fi
    printf '%s' "nbd-server qemu-nbd nbdkit nbd-client"
    for name in $VM_NBDKIT_PLUGINS; do
        printf ' %s' "$plugindir/nbdkit-$name-plugin.so"
    done
    for name in $VM_NBDKIT_FILTERS; do
        printf ' %s' "$filterdir/nbdkit-$name-filter.so"
    done
    echo
}

# Builds, statically, what the guest runs into payload directory $1 (emptied first):
#   $1/e2e        the end-to-end test binary (cargo test -p ublk-tests --test 'e2e*'), in
#                 profile VM_PROFILE (default dev: the suite waits on the kernel, not on code)
#   $1/bin/       every binary and example of the workspace, in release
# and sets VM_TEST_NAMES to the test binaries' names (e2e, and any later e2e* target).
#
# Static, so the guest needs no libraries: glibc's static archives on the gnu target (no musl
# target is available here). The explicit --target keeps RUSTFLAGS away from build scripts and
# proc macros, which run on the host, and keeps these artifacts apart from target/debug.
vm_build_payload() {
    local payload=$1 profile=${VM_PROFILE:-dev}
    local rustflags="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
    local json="$VM_REPO/target/vm/cargo-messages.json"
    mkdir -p "$VM_REPO/target/vm"
    # Prints "name path" for each executable in cargo's JSON messages on stdin whose target
    # kind is $1 (test, bin, example) and, for tests, whose name starts with e2e.
    vm_cargo_executables() {
        python3 -c '
import json, sys
kinds = set(sys.argv[1].split(","))
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    msg = json.loads(line)
    target = msg.get("target") or {}
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not kinds & set(target.get("kind", [])):
        continue
    if "test" in kinds and not target["name"].startswith("e2e"):
        continue
    print(target["name"], msg["executable"])
' "$1" <"$json"
    }

    vm_log "building the end-to-end tests (static, profile $profile)"
    # json-render-diagnostics: compiler errors still go to the terminal as usual.
    (cd "$VM_REPO" && RUSTFLAGS=$rustflags cargo test -p ublk-tests --test 'e2e*' --no-run \
        --profile "$profile" --target "$VM_TARGET" --message-format=json-render-diagnostics) >"$json" \
        || vm_die "building the end-to-end tests failed"
    local -a tests bins
    mapfile -t tests < <(vm_cargo_executables test)
    [ "${#tests[@]}" -gt 0 ] || vm_die "cargo built no e2e test binary"

    vm_log "building the workspace's binaries and examples (static, release)"
    (cd "$VM_REPO" && RUSTFLAGS=$rustflags cargo build --workspace --release --bins --examples \
        --target "$VM_TARGET" --message-format=json-render-diagnostics) >"$json" \
        || vm_die "building the workspace's binaries and examples failed"
    mapfile -t bins < <(vm_cargo_executables bin,example)
    rm -f "$json"
    unset -f vm_cargo_executables

    rm -rf "$payload"
    mkdir -p "$payload/bin"
    VM_TEST_NAMES=()
    local entry name path
    for entry in "${tests[@]}"; do
        name=${entry%% *} path=${entry#* }
        vm_is_static "$path" || vm_die "$path is dynamically linked: the static build did not apply"
        install -m 0755 "$path" "$payload/$name"
        VM_TEST_NAMES+=("$name")
    done
    for entry in "${bins[@]}"; do
        [ -n "$entry" ] || continue
        install -m 0755 "${entry#* }" "$payload/bin/${entry%% *}"
    done
    vm_log "payload $payload: ${VM_TEST_NAMES[*]}; bin/: $(cd "$payload/bin" && echo *)"
}

# For --host runs: needs root, and loads ublk_drv when /dev/ublk-control is missing.
vm_require_host_driver() {
    [ "$(id -u)" -eq 0 ] || vm_die "--host needs root: the tests create and delete ublk devices"
    if [ ! -e /dev/ublk-control ]; then
        vm_log "no /dev/ublk-control: trying modprobe ublk_drv"
        modprobe ublk_drv 2>&1 | sed 's/^/[vm]   /' >&2 || true
    fi
    [ -e /dev/ublk-control ] || vm_die "--host: this machine has no /dev/ublk-control and 'modprobe ublk_drv' did not create it (kernel $(uname -r) lacks the ublk driver?); run without --host to test in a VM"
}
