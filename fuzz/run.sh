#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time; fails on a crash,
# a panic, a broken invariant, a leak or a hang (libFuzzer's -timeout).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# nightly-only flags it uses (-Zsanitizer=address) are allowed with
# RUSTC_BOOTSTRAP=1, which this script sets. New inputs go to a scratch
# corpus; the seeds in fuzz/corpus/<target>/ are only read. A crashing input
# is kept in fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
targets=(config dispatch)
export RUSTC_BOOTSTRAP=1
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}

for target in "${targets[@]}"; do
    cargo fuzz build -O --target-dir "$target_dir" "$target"
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    log="$scratch/$target.log"
    start=$(date +%s)
    if cargo fuzz run -O --target-dir "$target_dir" "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        tail -n 60 "$log"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    corpus=$(find "$scratch/$target" -type f | wc -l)
    elapsed=$(( $(date +%s) - start ))
    echo "FIGURE fuzz $target: $result, ${runs:-?} inputs in ${elapsed}s (${seconds}s budget), coverage ${cov:-?} edges, $corpus new corpus entries"
done
exit "$status"
