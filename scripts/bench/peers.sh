# shellcheck shell=bash
# Builds, once, the peer servers the benchmark compares ublk with, statically so that the
# busybox guest needs no library, into a cache that later runs reuse (a re-run builds nothing):
#   kublk   the kernel's reference server, tools/testing/selftests/ublk of Debian's
#           linux-source-X.Y (trixie-backports: the series of the VM's kernel, else the newest),
#           with the UAPI headers of the same version's linux-libc-dev and the static liburing.a
#           of liburing-dev (trixie-backports if it has one, else trixie)
#   rublk   crates.io's rublk (on libublk-rs), `cargo install --no-default-features`, crt-static
#   go-ublk the ublk-mem example (a RAM disk) of go-ublk (MIT; github.com/ehrlich-b/go-ublk), from
#           the source GO_UBLK_SRC names: a directory (a clone) or a tarball (git archive, e.g.
#           ../shared/peers/go-ublk-41989fa.tar.gz); CGO_ENABLED=0, so static. Go 1.25 and
#           golang.org/x/sys come from Debian (golang-1.25-go and -src, golang-golang-x-sys-dev),
#           and the build is offline (GOPROXY=off). Without GO_UBLK_SRC it is not built.
# Packages are only downloaded (apt-get download through scripts/vm/kernel.sh's private apt
# configuration) and unpacked with dpkg-deb -x: nothing is installed from those suites.
#
# Cache: ${UBLK_BENCH_CACHE:-~/.cache/ublk-bench}: kublk/<linux-source version>/kublk,
# rublk/bin/rublk, go-ublk/<commit>/ublk-mem (the commit of the source: its git HEAD, or the one a
# git-archive tarball records; a hash of the files for anything else). A failed build is remembered (<dir>/failed holds the reason) and not tried
# again until BENCH_REBUILD_PEERS=1, which also rebuilds the ones that worked.
#
# Source it (after scripts/vm/lib.sh) and call bench_peers BIN_DIR INFO_FILE: copies kublk,
# rublk and go-ublk's ublk-mem (as go-ublk-mem) into BIN_DIR, or writes BIN_DIR/NAME.missing
# (NAME: kublk, rublk, go-ublk) with the reason; appends a line per peer to INFO_FILE (what was
# built from what). A peer that cannot be built never fails the caller.

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

# Prints an identifier of go-ublk source $1 (a directory or a tarball) for its cache directory:
# the commit (12 hex digits) of a clean git clone, or the one a `git archive` tarball records in
# its pax header; else "src-" and 12 hex digits of a hash of the contents (an edited clone, a
# tarball from elsewhere), so that a changed source is built again.
bench_go_ublk_commit() {
    local src=$1 commit=""
    if [ -d "$src" ]; then
        if [ -e "$src/.git" ] && command -v git >/dev/null \
            && [ -z "$(git -C "$src" status --porcelain 2>/dev/null)" ]; then
            commit=$(git -C "$src" rev-parse HEAD 2>/dev/null | cut -c 1-12 || true)
        fi
        if [ -z "$commit" ]; then
            commit=src-$( (cd "$src" && find . -path ./.git -prune -o -type f -print0 \
                | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c 1-12)
        fi
    else
        commit=$(python3 -c 'import sys, tarfile; print(tarfile.open(sys.argv[1]).pax_headers.get("comment", ""))' \
            "$src" 2>/dev/null || true)
        if echo "$commit" | grep -qE '^[0-9a-f]{40}$'; then
            commit=${commit:0:12}
        else
            commit=src-$(sha256sum <"$src" | cut -c 1-12)
        fi
    fi
    echo "$commit"
}

# Prints the path of the cached go-ublk ublk-mem binary, building it from GO_UBLK_SRC when
# needed; prints the reason and returns non-zero when there is none. Progress goes to stderr.
bench_build_go_ublk() {
    local src=${GO_UBLK_SRC:-}
    if [ -z "$src" ]; then
        echo "no go-ublk source: run with GO_UBLK_SRC=DIR-or-tarball (a clone of https://github.com/ehrlich-b/go-ublk, or ../shared/peers/go-ublk-41989fa.tar.gz)"
        return 1
    fi
    [ -e "$src" ] || { echo "GO_UBLK_SRC=$src does not exist"; return 1; }
    src=$(realpath "$src")
    local commit dir cached=0
    commit=$(bench_go_ublk_commit "$src")
    dir="$BENCH_CACHE/go-ublk/$commit"
    bench_cached "$dir" ublk-mem || cached=$?
    [ "$cached" -eq 2 ] || return "$cached"
    rm -rf "$dir"
    mkdir -p "$dir"
    if bench_go_ublk_from_source "$dir" "$src" "$commit" >&2; then
        rm -rf "$dir/build"
        echo "$dir/ublk-mem"
        return 0
    fi
    rm -rf "$dir/build"
    cat "$dir/failed"
    # A download that failed (network) is worth trying again next time; a build that failed is not.
    case "$(cat "$dir/failed")" in downloading*) rm -rf "$dir" ;; esac
    return 1
}

# bench_go_ublk_from_source DIR SRC COMMIT: downloads Go and x/sys, and builds go-ublk's ublk-mem
# from SRC into DIR/ublk-mem, in DIR/build (removed by the caller); when it fails, DIR/failed
# says why. The caller's SRC is never written to: the build works on a copy.
bench_go_ublk_from_source() {
    local dir=$1 src=$2 commit=$3 go_suite="" sys_suite="" suite go_version sys_version
    local build="$dir/build"
    mkdir -p "$build/debs" "$build/go" "$build/sys" "$build/src"
    # Go 1.25: go-ublk's go.mod asks for it. trixie-backports has it (trixie itself stops at 1.24).
    for suite in trixie trixie-backports; do
        bench_apt_update "$suite" || continue
        go_version=$(bench_apt_version "$suite" golang-1.25-go)
        if [ -n "$go_version" ]; then go_suite=$suite; break; fi
    done
    [ -n "$go_suite" ] || { echo "downloading Go: no golang-1.25-go in trixie or trixie-backports" >"$dir/failed"; return 1; }
    # golang.org/x/sys from trixie (0.22), not trixie-backports: the backport (0.50) declares
    # "go 1.26" in its go.mod, which Go 1.25 refuses to build. go-ublk asks for 0.28 but uses
    # nothing 0.22 lacks.
    for suite in trixie trixie-backports; do
        bench_apt_update "$suite" || continue
        sys_version=$(bench_apt_version "$suite" golang-golang-x-sys-dev)
        if [ -n "$sys_version" ]; then sys_suite=$suite; break; fi
    done
    [ -n "$sys_suite" ] || { echo "downloading x/sys: no golang-golang-x-sys-dev in trixie" >"$dir/failed"; return 1; }
    vm_log "go-ublk: downloading golang-1.25-go and -src $go_version ($go_suite), golang-golang-x-sys-dev $sys_version ($sys_suite)"
    (cd "$build/debs" && vm_apt "$go_suite" apt-get download "golang-1.25-go=$go_version" \
        "golang-1.25-src=$go_version" && vm_apt "$sys_suite" apt-get download \
        "golang-golang-x-sys-dev=$sys_version") >&2 \
        || { echo "downloading Go and x/sys failed" >"$dir/failed"; return 1; }
    dpkg-deb -x "$build"/debs/golang-1.25-go_*.deb "$build/go"
    dpkg-deb -x "$build"/debs/golang-1.25-src_*.deb "$build/go"
    dpkg-deb -x "$build"/debs/golang-golang-x-sys-dev_*.deb "$build/sys"
    rm -rf "$build/debs"
    local goroot="$build/go/usr/lib/go-1.25" xsys="$build/sys/usr/share/gocode/src/golang.org/x/sys"
    if [ ! -x "$goroot/bin/go" ] || [ ! -f "$xsys/go.mod" ]; then
        echo "the Go packages hold no usr/lib/go-1.25/bin/go or golang.org/x/sys" >"$dir/failed"
        return 1
    fi
    # The source: the tarball unpacked, or the directory copied (without its .git).
    if [ -d "$src" ]; then
        (cd "$src" && tar -c --exclude=./.git .) | tar -x -C "$build/src"
    else
        tar -xf "$src" -C "$build/src" || { echo "unpacking $src failed" >"$dir/failed"; return 1; }
    fi
    local mod
    mod=$(find "$build/src" -maxdepth 2 -name go.mod | head -n 1)
    if [ -z "$mod" ] || [ ! -d "$(dirname "$mod")/examples/ublk-mem" ]; then
        echo "$src holds no go.mod with examples/ublk-mem beside it (not go-ublk?)" >"$dir/failed"
        return 1
    fi
    # Offline and self-contained: this Go only (GOTOOLCHAIN=local: no toolchain download), no
    # module proxy, x/sys from the package, caches and settings in the build directory only.
    local -a goenv=(
        env GOROOT="$goroot" GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0
        GOPATH="$build/gopath" GOCACHE="$build/gocache" GOENV=off GOWORK=off GOTELEMETRY=off
    )
    vm_log "go-ublk: building examples/ublk-mem of $commit ($(head -n 1 "$goroot/VERSION"), static)"
    if ! (cd "$(dirname "$mod")" && "${goenv[@]}" "$goroot/bin/go" mod edit \
        -replace "golang.org/x/sys=$xsys" && "${goenv[@]}" "$goroot/bin/go" build -trimpath \
        -o "$dir/ublk-mem" ./examples/ublk-mem) >"$dir/build.log" 2>&1; then
        echo "building go-ublk's ublk-mem failed: $(grep -v '^#' "$dir/build.log" | head -n 3 | tr '\n' ' ')" >"$dir/failed"
        return 1
    fi
    vm_is_static "$dir/ublk-mem" || { echo "go-ublk's ublk-mem was not linked statically" >"$dir/failed"; return 1; }
    printf 'go-ublk: examples/ublk-mem of %s (%s, golang-golang-x-sys-dev %s, static)\n' \
        "$commit" "$(head -n 1 "$goroot/VERSION")" "$sys_version" >"$dir/ublk-mem.info"
}

# bench_peers BIN_DIR INFO_FILE: see the top of this file.
bench_peers() {
    local bin=$1 info=$2 name dest out
    mkdir -p "$bin"
    for name in kublk rublk go-ublk; do
        # go-ublk's binary is its ublk-mem example: go-ublk-mem in the payload.
        dest=$name
        [ "$name" != go-ublk ] || dest=go-ublk-mem
        rm -f "$bin/$dest" "$bin/$name.missing"
        if out=$("bench_build_${name//-/_}"); then
            install -m 0755 "$out" "$bin/$dest"
            cat "$out.info" >>"$info" 2>/dev/null || echo "$name: $out" >>"$info"
        else
            vm_warn "$name is not available, its cases will be n/a: $out"
            echo "$out" >"$bin/$name.missing"
            echo "$name: not available: $out" >>"$info"
        fi
    done
}
