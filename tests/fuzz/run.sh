#!/bin/sh
# Runs every libFuzzer harness built by tests/fuzz/build.sh (or the ones
# named) for FUZZ_SECONDS each (default 60), one after the other, from its
# checked-in seeds (tests/fuzz/corpus/NAME, read only) and the corpus grown
# so far ($FUZZ_OUT/corpus/NAME, kept out of git), with its dictionary.
# Fails when any harness finds a crash, a leak, a timeout or an
# out-of-memory; the input is kept as $FUZZ_OUT/artifacts/NAME-crash-...
#   FUZZ_OUT=... FUZZ_SECONDS=600 tests/fuzz/run.sh [HARNESS...]
# Extra libFuzzer options go in FUZZ_FLAGS (e.g. -jobs=4 -workers=4).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-${BUILD_DIR:-$top/_build}/fuzz}
secs=${FUZZ_SECONDS:-60}
harnesses=${*:-$(ls "$top"/tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | grep -v '^common$')}

dict_of() {
    case $1 in
        token|authz) echo "$top/tests/fuzz/jwt.dict" ;;
        config) echo "$top/tests/fuzz/config.dict" ;;
        claims|jsonrpc|jwks|cimd|introspect|register|proxy|as) echo "$top/tests/fuzz/json.dict" ;;
        *) echo "" ;;
    esac
}

mkdir -p "$out/artifacts" "$out/logs"
failed=""
passed=0
for h in $harnesses; do
    bin="$out/$h"
    if [ ! -x "$bin" ]; then
        echo "fuzz: $h is not built (run tests/fuzz/build.sh)" >&2
        failed="$failed $h"
        continue
    fi
    mkdir -p "$out/corpus/$h"
    dict=$(dict_of "$h")
    log="$out/logs/$h.log"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$h-" ${dict:+-dict="$dict"} ${FUZZ_FLAGS:-} \
        "$out/corpus/$h" "$top/tests/fuzz/corpus/$h" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    persec=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "fuzz: $h ok: ${runs:-?} runs, ${persec:-?}/s, $cov"
    else
        failed="$failed $h"
        echo "fuzz: $h FAILED (exit $rc); log $log; input in $out/artifacts/" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5 >&2
    fi
done
n=$(echo $harnesses | wc -w)
echo "fuzz: $passed of $n harnesses passed${failed:+; failed:$failed}"
[ -z "$failed" ]
