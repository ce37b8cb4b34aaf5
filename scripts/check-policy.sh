#!/usr/bin/env bash
# Checks two properties of the build that no compiler error would catch:
#  1. ublk-core is `no_std` and cannot allocate: it declares #![no_std], never links the
#     `alloc` crate outside tests, and builds on its own (`cargo build -p ublk-core`);
#  2. the workspace depends on libc and static_assertions only, dev-dependencies included;
#  3. the `ublk` command's layers hold: no file in cmd/ uses another command's module (what
#     commands share lives in server/ and support/), and the command makes no libc call of
#     its own (every raw call of std-shell is in std-shell/src/os.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-policy: $*" >&2; exit 1; }

grep -q '^#!\[no_std\]' core/src/lib.rs || fail "core/src/lib.rs lacks #![no_std]"
# `extern crate alloc` or `alloc::` paths outside #[cfg(test)] modules would allow allocation.
# Test modules live at the end of files after `#[cfg(test)]`; strip them before searching.
# Test-only files are skipped: the randomized tests (`fuzz_tests.rs`, each declared under
# #[cfg(test)], checked next) and `testing.rs`, the `testing` feature's test support, which
# links std and is enabled by no normal build (checked below). So is `std_io.rs`, the `std`
# feature's conversion into std::io::Error: its module is declared only with that feature
# (checked below), and the plain build that ends this check has it off.
while IFS= read -r -d '' f; do
    if sed '/#\[cfg(test)\]/,$d' "$f" | grep -vE '^\s*//' \
        | grep -nE 'extern crate (alloc|std)|\balloc::|\bstd::' >/dev/null; then
        fail "$f uses alloc or std outside tests"
    fi
done < <(find core/src -name '*.rs' -not -name testing.rs -not -name fuzz_tests.rs \
    -not -name std_io.rs -print0)
grep -B1 -E '^mod std_io;' core/src/lib.rs | grep -qF '#[cfg(feature = "std")]' \
    || fail "core/src/lib.rs declares std_io without #[cfg(feature = \"std\")]"
find core/src -name '*.rs' -exec awk '
    FNR == 1 { prev = "" }
    /^[[:space:]]*mod fuzz_tests;/ && prev !~ /^[[:space:]]*#\[cfg\(test\)\]/ {
        print FILENAME ":" FNR; bad = 1
    }
    { prev = $0 }
    END { exit bad }' {} + >&2 || fail "a fuzz_tests module is declared without #[cfg(test)]"
if cargo tree --workspace --edges normal,build --prefix none --format '{p} {f}' \
    | grep -qE '^ublk-core .*\btesting\b'; then
    fail "a normal build enables ublk-core's \`testing\` feature (std): dev-dependencies only"
fi
cargo build -p ublk-core --quiet
echo "ublk-core: no_std, no alloc, builds alone"

# Every package in the resolved graph (all targets, all dependency kinds).
allowed="libc static_assertions ublk ublk-core ublk-tests"
packages=$(cargo tree --workspace --edges all --prefix none --format '{p}' \
    | awk 'NF {print $1}' | sort -u)
for p in $packages; do
    case " $allowed " in
        *" $p "*) ;;
        *) fail "dependency '$p' is not allowed (only libc and static_assertions)";;
    esac
done
echo "dependencies: $(echo "$packages" | tr '\n' ' ')"

# 3. The CLI's layers. A `use` may span lines (`use crate::cmd::{\n add,\n del};`): each
# statement is joined into one line before it is searched, and it may name a sibling command
# as `super::NAME`, `cmd::NAME` or inside braces after either.
cli=std-shell/src/bin/ublk
commands=$(find "$cli/cmd" -name '*.rs' ! -name mod.rs -printf '%f\n' | sed 's/\.rs$//' | sort)
for f in "$cli"/cmd/*.rs; do
    [ "$(basename "$f")" = mod.rs ] && continue
    self=$(basename "$f" .rs)
    uses=$(awk '/^[[:space:]]*(pub[^ ]* )?use / { s = ""; on = 1 }
                on { s = s $0; if ($0 ~ /;/) { print s; on = 0 } }' "$f" | tr -s ' \t' ' ')
    for other in $commands; do
        [ "$other" = "$self" ] && continue
        if echo "$uses" | grep -qE "(super|cmd)::(\{[^}]*\b)?$other\b"; then
            fail "$f uses the command module '$other' (commands share through server/ and support/)"
        fi
    done
done
if grep -rnE '\blibc::[a-z_0-9]+\(' "$cli" --include='*.rs' >/dev/null; then
    grep -rnE '\blibc::[a-z_0-9]+\(' "$cli" --include='*.rs' >&2
    fail "the ublk command calls libc itself: raw calls belong in std-shell/src/os.rs"
fi
echo "ublk command: no command uses another, no libc call outside os.rs"
