#!/usr/bin/env bash
# Every test: the host tests (ABI, ring, parsing: `cargo test`), then the end-to-end suite in a
# VM on the newest 7.x kernel and on the 6.12 LTS kernel, and on each the root-on-ublk boot
# (scripts/root-test.sh). Exits non-zero if anything fails.
# (The benchmark, scripts/bench.sh, is not run: only its report's parser, on a recorded log.)
# Arguments are passed to scripts/vm-test.sh (e.g. `-- add_dev` to filter the VM tests).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== host tests: cargo test --workspace"
cargo test --workspace

# The randomized tests again in release: overflow checks and debug assertions are off there,
# so only their invariant checks stand between wrapped arithmetic and a wrong answer.
echo "== randomized tests in release: cargo test --workspace --release fuzz"
cargo test --workspace --release fuzz

echo "== benchmark report parser: scripts/bench/test_report.py"
python3 scripts/bench/test_report.py

failed=()
for kernel in 7 6.12; do
    echo "== end-to-end tests in a VM: KERNEL=$kernel scripts/vm-test.sh $*"
    KERNEL=$kernel scripts/vm-test.sh "$@" || failed+=("$kernel")
    cp target/vm-test.log "target/vm-test-$kernel.log"
    echo "== root on ublk in a VM: KERNEL=$kernel scripts/root-test.sh"
    KERNEL=$kernel scripts/root-test.sh || failed+=("$kernel (root on ublk)")
    [ ! -f target/root-test.log ] || cp target/root-test.log "target/root-test-$kernel.log"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "test.sh: the end-to-end tests failed on kernel(s): ${failed[*]} (logs: target/vm-test-*.log, target/root-test-*.log)" >&2
    exit 1
fi
echo "test.sh: all tests passed"
