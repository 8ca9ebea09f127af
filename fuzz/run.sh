#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60) and prints one line per target:
#   target  executions  crashes  (corpus size; crash inputs under fuzz/artifacts/<target>/)
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). New inputs the
# fuzzer finds go to fuzz/work/<target>/ (not committed); the seeds in fuzz/corpus/<target>/ are
# read only. FUZZ_SANITIZER (default: none; the code is safe Rust) and FUZZ_JOBS (default 1)
# can be set.
set -u
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
san=${FUZZ_SANITIZER:-none}
for t in "${targets[@]}"; do
    cargo +nightly fuzz build -s "$san" -a "$t" >/dev/null 2>&1 || { cargo +nightly fuzz build -s "$san" -a "$t"; exit 1; }
done
mkdir -p logs
printf '%-16s %12s %8s %8s\n' target executions crashes corpus
status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    # -fork keeps going after a crash so one run reports every distinct finding.
    cargo +nightly fuzz run -s "$san" -a "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -fork="${FUZZ_JOBS:-1}" -ignore_crashes=1 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -Eo '[0-9]+$' | awk '{s+=$1} END {print s+0}')
    if [ "$execs" = 0 ]; then
        # Fork mode reports progress lines instead of final stats.
        execs=$(grep -Eo '#[0-9]+:? ' "logs/$t.log" | tail -1 | tr -dc '0-9')
    fi
    crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
    corpus=$(ls "work/$t" | wc -l)
    printf '%-16s %12s %8s %8s\n' "$t" "${execs:-?}" "$crashes" "$corpus"
    [ "$crashes" -gt 0 ] && status=1
done
exit $status
