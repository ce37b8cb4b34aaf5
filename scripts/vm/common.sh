# shellcheck shell=bash disable=SC2034 # the VM_* settings are used by the files sourcing this
# Settings and helpers shared by the VM scripts (kernel.sh, initramfs.sh, boot.sh, lib.sh).
# Sourced, never run; it defines vm_* functions and VM_* variables and changes no shell option.
#
# Every setting can be given in the environment:
#   KERNEL          which kernel: 7 (default: newest 7.x of trixie-backports), 7.N (newest 7.N.x),
#                   6.12 (newest 6.12 LTS of bookworm-backports)
#   UBLK_VM_CACHE   kernel and apt cache (default ${XDG_CACHE_HOME:-~/.cache}/ublk-vm)
#   VM_MEMORY       guest memory (default 2G)
#   VM_CPUS         guest vCPUs (default 2)
#   VM_CPU          QEMU CPU model (default max,-cx16: see boot.sh)
#   VM_TIMEOUT      seconds before a hung guest is killed (default 1200)
#   VM_APPEND       extra kernel command-line arguments
#   VM_DISK         raw image attached to the guest as /dev/vda (virtio-blk), if set

[ -n "${VM_COMMON_SOURCED:-}" ] && return 0
VM_COMMON_SOURCED=1

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_REPO=$(cd "$VM_DIR/../.." && pwd)
VM_CACHE=${UBLK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-vm}
VM_KERNEL_WANTED=${KERNEL:-7}
VM_MEMORY=${VM_MEMORY:-2G}
VM_CPUS=${VM_CPUS:-2}
VM_TIMEOUT=${VM_TIMEOUT:-1200}

vm_log() { printf '[vm] %s\n' "$*" >&2; }
vm_warn() { printf '[vm] warning: %s\n' "$*" >&2; }
# Exits the script (not only the function): every caller treats these errors as fatal.
vm_die() {
    printf '[vm] error: %s\n' "$*" >&2
    exit 1
}

# Prints the comment block at the top of script $1 (after the #! line) as its usage text.
vm_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

# Runs a command as root: directly when we are root, through sudo otherwise.
vm_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Prints the path of command $1, looking in the sbin directories too (they are not in every
# user's PATH); fails if there is none.
vm_find_command() {
    local dir
    if command -v "$1" 2>/dev/null | grep -q '^/'; then
        command -v "$1"
        return 0
    fi
    for dir in /usr/local/sbin /usr/sbin /sbin; do
        if [ -x "$dir/$1" ]; then
            echo "$dir/$1"
            return 0
        fi
    done
    return 1
}

# True if $1 is a static ELF executable: ldd says "not a dynamic executable" (exit 1), or
# "statically linked" (exit 0) for a static-pie, which is what rustc's crt-static builds are.
vm_is_static() {
    local out
    out=$(ldd "$1" 2>&1) || return 0
    case "$out" in
        *"statically linked"*) return 0 ;;
        *) return 1 ;;
    esac
}

# Installs the Debian packages that provide the given commands or files, from the system's own
# apt sources, for those that are missing. Arguments are COMMAND:PACKAGE or /FILE:PACKAGE pairs.
vm_need_commands() {
    local pair cmd pkg
    local -a need=()
    for pair in "$@"; do
        cmd=${pair%%:*} pkg=${pair#*:}
        case "$cmd" in
            /*) [ -e "$cmd" ] || need+=("$pkg") ;;
            *) vm_find_command "$cmd" >/dev/null || need+=("$pkg") ;;
        esac
    done
    [ "${#need[@]}" -eq 0 ] || vm_apt_install "${need[@]}"
}

# Installs Debian packages from the system's own apt sources.
vm_apt_install() {
    local -a pkgs
    mapfile -t pkgs < <(printf '%s\n' "$@" | sort -u)
    vm_log "installing: ${pkgs[*]}"
    vm_as_root apt-get update -qq
    vm_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# Checks KERNEL before minutes of building are spent, not after.
vm_check_kernel_choice() {
    case "$VM_KERNEL_WANTED" in
        6.12 | 6.12.* | 7 | 7.*) ;;
        *) vm_die "KERNEL=$VM_KERNEL_WANTED: choose 7 (or 7.N) from trixie-backports, or 6.12 from bookworm-backports" ;;
    esac
}
