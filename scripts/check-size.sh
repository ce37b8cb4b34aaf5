#!/usr/bin/env bash
# Checks what the static `ublk` binary adds to a Rust "hello world": both are built as the
# project builds `ublk` for the test VM and for an initramfs (scripts/vm/lib.sh: release
# profile, static glibc, x86_64-unknown-linux-gnu), the hello world with a copy of this
# workspace's [profile.release], so the difference is what ublk's own code and what it pulls
# in weigh. Fails when that exceeds UBLK_SIZE_LIMIT_KIB (README, "The binary's size"), or when
# the static binary does not run (a smoke test that needs no driver).
#
#   scripts/check-size.sh          prints the sizes; exits 1 over the limit
set -euo pipefail
cd "$(dirname "$0")/.."

limit_kib=${UBLK_SIZE_LIMIT_KIB:-504}
target=x86_64-unknown-linux-gnu
rustflags="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
out=target/size
mkdir -p "$out"

RUSTFLAGS=$rustflags cargo build --quiet --release --target "$target" --bin ublk \
    --target-dir "$out/ublk"
ublk="$out/ublk/$target/release/ublk"

# The hello world, in a crate of its own with this workspace's release profile.
hello_dir="$out/hello"
mkdir -p "$hello_dir/src"
cat >"$hello_dir/src/main.rs" <<'EOF'
fn main() {
    println!("Hello, world!");
}
EOF
{
    printf '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2024"\n\n[workspace]\n\n'
    awk '/^\[profile\.release\]/ { on = 1; print; next } /^\[/ { on = 0 } on' Cargo.toml
} >"$hello_dir/Cargo.toml"
(cd "$hello_dir" && RUSTFLAGS=$rustflags cargo build --quiet --release --offline \
    --target "$target" --target-dir ../hello-target)
hello="$out/hello-target/$target/release/hello"

# The static binary must also run: a loop target opened on this host (no driver needed) must
# fail at the control device, not crash. (Statically linked with LTO, a libc symbol that std
# declares weak once resolved to address 0 in exactly this path.)
image="$out/smoke.img"
truncate -s 1M "$image"
status=0
smoke=$(UBLK_CONTROL=/nonexistent/ublk-control "$ublk" add -t loop -f "$image" --foreground 2>&1) \
    || status=$?
case "$status:$smoke" in
    "1:"*"/nonexistent/ublk-control: it does not exist"*) ;;
    *) echo "check-size: the static ublk did not fail as expected (exit $status): $smoke" >&2
       exit 1 ;;
esac

u=$(stat -c %s "$ublk")
h=$(stat -c %s "$hello")
over_kib=$(((u - h) / 1024))
echo "ublk: $u bytes; hello world: $h bytes; ublk adds $over_kib KiB (limit $limit_kib KiB)"
if [ "$over_kib" -gt "$limit_kib" ]; then
    echo "check-size: the static ublk grew past the limit: see README, \"The binary's size\"" >&2
    exit 1
fi
