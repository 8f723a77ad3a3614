#!/usr/bin/env bash
# Bounded fuzz runs: fuzz/run.sh [seconds-per-target] [target...]
# (default 60 s, every target of fuzz/fuzz_targets/). Corpora grow in fuzz/corpus/<target>
# (seeded from fuzz/seeds/<target>), crashes land in fuzz/artifacts/<target>/, each run's
# output in fuzz/logs/<target>.log. Prints seconds, executions and crashes per target and
# exits non-zero if any target crashed (or failed to run).
set -uo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# cargo-fuzz needs nightly flags (-Z sanitizer, ...): RUSTC_BOOTSTRAP lets stable take them.
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

mkdir -p fuzz/logs
failed=0
rows=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    log="fuzz/logs/$target.log"
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
    before=$(ls -1 "$artifacts" | sort)
    echo "== $target: ${seconds}s (log: $log)"
    start=$(date +%s)
    nice -n 19 cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    new=$(comm -13 <(echo "$before") <(ls -1 "$artifacts" | sort) | sed '/^$/d')
    crashes=$(echo -n "$new" | grep -c . || true)
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ]; then
        failed=1
        echo "   exit $rc, $crashes new artifact(s):"
        echo "$new" | sed "s|^|     $artifacts/|"
        grep -m1 -A3 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" | sed 's/^/     /'
    fi
    rows+=("$(printf '%-16s %8s %12s %8s %5s' "$target" "$elapsed" "${execs:-?}" "$crashes" "$rc")")
done

printf '\n%-16s %8s %12s %8s %5s\n' target seconds executions crashes exit
printf '%s\n' "${rows[@]}"
exit "$failed"
