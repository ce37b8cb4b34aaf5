# shellcheck shell=bash
# Builds, once, the two peer servers the benchmark compares ublk with, statically so that the
# busybox guest needs no library, into a cache that later runs reuse (a re-run builds nothing):
#   kublk   the kernel's reference server, tools/testing/selftests/ublk of Debian's
#           linux-source-X.Y (trixie-backports: the series of the VM's kernel, else the newest),
#           with the UAPI headers of the same version's linux-libc-dev and the static liburing.a
#           of liburing-dev (trixie-backports if it has one, else trixie)
#   rublk   crates.io's rublk (on libublk-rs), `cargo install --no-default-features`, crt-static
# Packages are only downloaded (apt-get download through scripts/vm/kernel.sh's private apt
# configuration) and unpacked with dpkg-deb -x: nothing is installed from those suites.
#
# Cache: ${UBLK_BENCH_CACHE:-~/.cache/ublk-bench}: kublk/<linux-source version>/kublk,
# rublk/bin/rublk. A failed build is remembered (<dir>/failed holds the reason) and not tried
# again until BENCH_REBUILD_PEERS=1, which also rebuilds the ones that worked.
#
# Source it (after scripts/vm/lib.sh) and call bench_peers BIN_DIR INFO_FILE: copies kublk and
# rublk into BIN_DIR, or writes BIN_DIR/NAME.missing with the reason; appends a line per peer
# to INFO_FILE (what was built from what). A peer that cannot be built never fails the caller.

BENCH_CACHE=${UBLK_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-bench}

# Refreshes the private package index of suite $1 once per run (shared with kernel.sh through
# VM_APT_UPDATED); fails when it cannot.
bench_apt_update() {
    case " ${VM_APT_UPDATED:-} " in *" $1 "*) return 0 ;; esac
    local log="$VM_CACHE/apt/$1.update.log"
    mkdir -p "$VM_CACHE/apt"
    vm_apt "$1" apt-get update --error-on=any >"$log" 2>&1 || {
        vm_warn "cannot refresh the $1 package index: $(grep -E '^(E|W):' "$log" | head -n 1)"
        return 1
    }
    export VM_APT_UPDATED="${VM_APT_UPDATED:-} $1"
}

# Prints the newest version of package $2 in suite $1 (empty if it has none).
bench_apt_version() {
    vm_apt "$1" apt-cache show "$2" 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n 1
}

# What the cache in directory $1 holds for binary $2 (a path inside $1), unless
# BENCH_REBUILD_PEERS is set: the binary (its path printed, returns 0), a remembered build
# failure (its reason printed, returns 1), or nothing (returns 2: build it).
bench_cached() {
    [ -z "${BENCH_REBUILD_PEERS:-}" ] || return 2
    if [ -x "$1/$2" ]; then
        echo "$1/$2"
        return 0
    fi
    if [ -f "$1/failed" ]; then
        echo "$(cat "$1/failed") (remembered; BENCH_REBUILD_PEERS=1 tries again)"
        return 1
    fi
    return 2
}

# Prints the path of the cached kublk binary, building it when needed; prints the reason and
# returns non-zero when there is none. Progress goes to stderr.
bench_build_kublk() {
    local series version cached
    if ! bench_apt_update trixie-backports; then
        cached=$(find "$BENCH_CACHE/kublk" -name kublk -type f 2>/dev/null | sort -V | tail -n 1)
        [ -n "$cached" ] || { echo "no package index (offline?) and no cached kublk"; return 1; }
        vm_warn "using the cached $cached"
        echo "$cached"
        return 0
    fi
    # The selftest of the VM kernel's series (7.3 for 7.3.4+deb13-cloud-amd64), else the newest.
    series=$(vm_apt trixie-backports apt-cache pkgnames linux-source- \
        | sed -n 's/^linux-source-\([0-9.]*\)$/\1/p' | sort -V)
    [ -n "$series" ] || { echo "trixie-backports has no linux-source-X.Y package"; return 1; }
    local want
    want=$(echo "${VM_KVER:-}" | cut -d . -f 1,2)
    if echo "$series" | grep -qxF "$want"; then series=$want; else series=$(echo "$series" | tail -n 1); fi
    version=$(bench_apt_version trixie-backports "linux-source-$series")
    local dir="$BENCH_CACHE/kublk/$version" cached=0
    bench_cached "$dir" kublk || cached=$?
    [ "$cached" -eq 2 ] || return "$cached"
    rm -rf "$dir"
    mkdir -p "$dir"
    if bench_kublk_from_source "$dir" "$series" "$version" >&2; then
        echo "$dir/kublk"
        return 0
    fi
    cat "$dir/failed"
    # A download that failed (network) is worth trying again next time; a build that failed is not.
    case "$(cat "$dir/failed")" in downloading*) rm -rf "$dir" ;; esac
    return 1
}

# bench_kublk_from_source DIR SERIES VERSION: downloads, unpacks and compiles kublk into DIR;
# when it fails, DIR/failed says why.
bench_kublk_from_source() {
    local dir=$1 series=$2 version=$3 suite uring_version="" libc_version
    local debs="$dir/debs" root="$dir/root"
    mkdir -p "$debs" "$root/hdr" "$root/uring"
    # liburing: trixie-backports first (newer, if there is one), else trixie.
    for suite in trixie-backports trixie; do
        bench_apt_update "$suite" || continue
        uring_version=$(bench_apt_version "$suite" liburing-dev)
        [ -z "$uring_version" ] || break
    done
    [ -n "$uring_version" ] || { echo "no liburing-dev in trixie-backports or trixie" >"$dir/failed"; return 1; }
    # The UAPI headers (ublk_cmd.h, io_uring.h) of the same kernel version, if published.
    libc_version=$version
    [ -n "$(vm_apt trixie-backports apt-cache show "linux-libc-dev=$version" 2>/dev/null)" ] \
        || libc_version=$(bench_apt_version trixie-backports linux-libc-dev)
    vm_log "kublk: downloading linux-source-$series $version, linux-libc-dev $libc_version, liburing-dev $uring_version ($suite)"
    (cd "$debs" && vm_apt trixie-backports apt-get download "linux-source-$series=$version" \
        "linux-libc-dev=$libc_version" && vm_apt "$suite" apt-get download "liburing-dev=$uring_version") >&2 \
        || { echo "downloading the kublk sources failed" >"$dir/failed"; return 1; }
    dpkg-deb -x "$debs"/linux-libc-dev_*.deb "$root/hdr"
    dpkg-deb -x "$debs"/liburing-dev_*.deb "$root/uring"
    # Only the selftest and the tools' headers out of the 160 MB source tarball.
    local tree="linux-source-$series"
    dpkg-deb --fsys-tarfile "$debs"/linux-source-"$series"_*.deb \
        | tar -xO "./usr/src/$tree.tar.xz" | xz -dc \
        | tar -x -C "$root" --wildcards "$tree/tools/testing/selftests/ublk/*" "$tree/tools/include/*" \
        || { echo "unpacking $tree.tar.xz failed" >"$dir/failed"; return 1; }
    rm -rf "$debs"
    local src="$root/$tree/tools/testing/selftests/ublk" uring_a
    uring_a=$(find "$root/uring" -name liburing.a | head -n 1)
    [ -n "$uring_a" ] || { echo "liburing-dev $uring_version has no liburing.a" >"$dir/failed"; return 1; }
    # The selftest's Makefile builds every .c but metadata_size.c (a second main) into kublk.
    local -a sources
    mapfile -t sources < <(find "$src" -maxdepth 1 -name '*.c' ! -name metadata_size.c | sort)
    vm_log "kublk: compiling ${#sources[@]} files of $tree's selftests/ublk (static, liburing $uring_version)"
    if ! gcc -D_GNU_SOURCE -O3 -static -I"$root/hdr/usr/include" \
        -I"$root/hdr/usr/include/x86_64-linux-gnu" -I"$root/uring/usr/include" \
        -I"$root/$tree/tools/include" "${sources[@]}" "$uring_a" -lpthread -lm \
        -o "$dir/kublk" 2>"$dir/gcc.log"; then
        echo "compiling kublk failed (liburing $uring_version's headers too old for it?): $(grep -m 3 'error' "$dir/gcc.log" | tr '\n' ' ')" >"$dir/failed"
        return 1
    fi
    vm_is_static "$dir/kublk" || { echo "kublk was not linked statically" >"$dir/failed"; return 1; }
    printf 'kublk: selftests/ublk of linux-source-%s %s, linux-libc-dev %s, liburing-dev %s (%s)\n' \
        "$series" "$version" "$libc_version" "$uring_version" "$suite" >"$dir/kublk.info"
}

# Prints the path of the cached rublk binary, building it when needed; prints the reason and
# returns non-zero when there is none. Progress goes to stderr.
bench_build_rublk() {
    local dir="$BENCH_CACHE/rublk" cached=0
    bench_cached "$dir" bin/rublk || cached=$?
    [ "$cached" -eq 2 ] || return "$cached"
    rm -rf "$dir"
    mkdir -p "$dir"
    # Its libublk-rs-sys runs bindgen, which needs libclang.
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || vm_apt_install libclang-dev >&2
    vm_log "rublk: cargo install rublk --no-default-features (static; a few minutes, once)"
    # The explicit --target keeps crt-static away from build scripts and proc macros.
    if ! RUSTFLAGS="-C target-feature=+crt-static" cargo install rublk --no-default-features \
        --root "$dir" --target "$VM_TARGET" >"$dir/build.log" 2>&1; then
        echo "cargo install rublk failed: $(grep -m 3 -E '^error' "$dir/build.log" | tr '\n' ' ')" >"$dir/failed"
    elif ! vm_is_static "$dir/bin/rublk"; then
        echo "rublk was not linked statically" >"$dir/failed"
    fi
    if [ -f "$dir/failed" ]; then
        rm -f "$dir/bin/rublk"
        cat "$dir/failed"
        return 1
    fi
    printf 'rublk: %s (crates.io, --no-default-features, crt-static)\n' \
        "$(sed -n 's/^"\(rublk [^ ]*\) .*/\1/p' "$dir/.crates.toml" | head -n 1)" >"$dir/bin/rublk.info"
    echo "$dir/bin/rublk"
}

# bench_peers BIN_DIR INFO_FILE: see the top of this file.
bench_peers() {
    local bin=$1 info=$2 name out
    mkdir -p "$bin"
    for name in kublk rublk; do
        rm -f "$bin/$name" "$bin/$name.missing"
        if out=$("bench_build_$name"); then
            install -m 0755 "$out" "$bin/$name"
            cat "$out.info" >>"$info" 2>/dev/null || echo "$name: $out" >>"$info"
        else
            vm_warn "$name is not available, its cases will be n/a: $out"
            echo "$out" >"$bin/$name.missing"
            echo "$name: not available: $out" >>"$info"
        fi
    done
}
