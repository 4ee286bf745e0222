#!/bin/sh
# Builds mcpauth and runs every test: the dependency and tree checks, the
# Check programs of `make check` (unit tests, then integration tests against
# real lighttpd and real Apache on loopback ports), then the end-to-end
# tests.  Installs what is missing first.  Ends with one line,
#   mcpauth: N passed, M failed
# and exits non-zero exactly when M > 0: a step that fails, a Check program
# that crashes, exits non-zero or prints no Check summary, or one that never
# ran, counts as a failure.
#   tests/run.sh              build in $BUILD_DIR (default _build/) and run all
#   tests/run.sh --summary    print the summary of the last run in $BUILD_DIR
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$top/_build}
export BUILD_DIR
steps="$BUILD_DIR/run-steps" # "step exit-status" for each step of the last run

# The logs of every test `make check` runs, from the build's own TESTS, so a
# new check program is counted without being listed here.
test_logs() {
    mk=$(mktemp)
    # shellcheck disable=SC2016
    printf 'mcpauth-test-logs:\n\t@echo "TEST_LOGS: $(TEST_LOGS)"\n' > "$mk"
    (cd "$BUILD_DIR" && MAKEFLAGS='' make -s -f Makefile -f "$mk" mcpauth-test-logs 2>/dev/null) |
        sed -n 's/^TEST_LOGS: //p' | tr ' ' '\n' | grep -v '^$' || true
    rm -f "$mk"
}

step_status() { # step: its exit status in the last run, empty if it did not run
    sed -n "s/^$1 //p" "$steps" 2>/dev/null | tail -1
}

summary() {
    cd "$BUILD_DIR"
    passed=0 failed=0
    fail() { # count how-many reason
        failed=$((failed + $1)); shift
        echo "FAILED: $*"
    }
    # A step whose log (NAME.log) has one "ok - " or "not ok - " line per
    # check and ends with a summary line matching $2; exit status 77 means
    # it was skipped, which counts as a failure.
    tap_step() { # name summary-regex
        st=$(step_status "$1")
        if [ -z "$st" ]; then
            fail 1 "$1: did not run"
        elif [ ! -f "$1.log" ]; then
            fail 1 "$1: no $BUILD_DIR/$1.log"
        elif [ "$st" = 77 ]; then
            fail 1 "$1: skipped (needs root); see $BUILD_DIR/$1.log"
        else
            grep -E "^(== |$1: )|^not ok - " "$1.log" || true
            # shellcheck disable=SC2046
            set -- "$1" $(awk -v re="^$2" '/^ok - /{p++} /^not ok - /{f++} $0 ~ re {d=1}
                END{print p+0, f+0, d+0}' "$1.log")
            passed=$((passed + $2))
            [ "$3" -eq 0 ] || fail "$3" "$1: $3 checks failed; see $BUILD_DIR/$1.log"
            if [ "$st" != 0 ] && [ "$3" -eq 0 ]; then
                [ "$4" = 1 ] || tail -40 "$1.log"
                fail 1 "$1: exit status $st$([ "$4" = 1 ] || echo ', stopped before its summary'); see $BUILD_DIR/$1.log"
            fi
        fi
    }
    for s in check-deps check-tree build; do
        st=$(step_status $s)
        case "$st" in
            0) passed=$((passed + 1)) ;;
            "") fail 1 "$s: did not run" ;;
            *) fail 1 "$s: exit status $st" ;;
        esac
    done
    if [ "$(step_status build)" = 0 ]; then
        before=$failed
        logs=$(test_logs)
        [ -n "$logs" ] || fail 1 "make check: no tests found in $BUILD_DIR/Makefile (TEST_LOGS)"
        for log in $logs; do
            name=${log%.log} trs=${log%.log}.trs
            if [ ! -f "$trs" ]; then
                fail 1 "$name: did not run (not built?)"
                continue
            fi
            result=$(sed -n 's/^:test-result: //p' "$trs" | sort -u | tr '\n' ' ' | sed 's/ $//')
            sums=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" || true)
            case "${name##*/}" in
                check_*) # a Check program: count its checks
                    if [ -z "$sums" ]; then
                        fail 1 "$name: no Check summary (crashed?), result $result; see $BUILD_DIR/$log"
                        continue
                    fi
                    printf '%s: %s\n' "$name" "$(echo "$sums" | tr '\n' ' ')"
                    grep -E '^[^ ]+:[0-9]+:[FE]:' "$log" || true
                    # shellcheck disable=SC2046
                    set -- $(echo "$sums" | tr -d ',' | awk '{ c += $3; f += $5 + $7 } END { print c, f }')
                    passed=$((passed + $1 - $2))
                    [ "$2" -eq 0 ] || fail "$2" "$name: $2 of $1 checks failed; see $BUILD_DIR/$log"
                    case "$result" in
                        PASS) ;;
                        *) [ "$2" -gt 0 ] || fail 1 "$name: result $result after its summary (crash, leak, exit status); see $BUILD_DIR/$log" ;;
                    esac
                    ;;
                *) # any other test counts once; a skip is not a pass
                    case "$result" in
                        PASS) passed=$((passed + 1)); echo "$name: $result" ;;
                        *) fail 1 "$name: result $result; see $BUILD_DIR/$log" ;;
                    esac
                    ;;
            esac
        done
        st=$(step_status make-check)
        if [ -n "$st" ] && [ "$st" != 0 ] && [ "$failed" -eq "$before" ]; then
            fail 1 "make check: exit status $st; see $BUILD_DIR/test-suite.log"
        fi
        # End to end: every flow prints its own count; one that crashed
        # printed "not ok: exit status N" instead.
        st=$(step_status e2e)
        if [ -z "$st" ]; then
            fail 1 "e2e: did not run"
        elif [ ! -f e2e.log ]; then
            fail 1 "e2e: no $BUILD_DIR/e2e.log"
        else
            grep -E '^(== |e2e: )|not ok' e2e.log || true
            # shellcheck disable=SC2046
            set -- $(awk '
                { tag = match($0, /^  \[[^]]*\]/) ? substr($0, 1, RLENGTH) : "" }
                match($0, /-flow: [0-9]+ passed, [0-9]+ failed/) {
                    split(substr($0, RSTART + 7), a, /[ ,]+/)
                    p += a[1]; f += a[3]; counted[tag] = a[3]
                }
                / not ok: exit status / { if (!(tag in counted) || counted[tag] == 0) f++ }
                /^e2e: [0-9]+ passed, [0-9]+ failed/ { done = 1 }
                END { print p + 0, f + 0, done + 0 }' e2e.log)
            passed=$((passed + $1))
            [ "$2" -eq 0 ] || fail "$2" "e2e: $2 checks failed; see $BUILD_DIR/e2e.log"
            if [ "$st" != 0 ] && [ "$2" -eq 0 ]; then
                [ "$3" = 1 ] || tail -40 e2e.log
                fail 1 "e2e: exit status $st$([ "$3" = 1 ] || echo ', stopped before its summary'); see $BUILD_DIR/e2e.log"
            fi
        fi
        # Shared hosting, several hosts, the Debian package: one "ok - " line
        # per check and a summary; each needs root (to create its user,
        # start PostgreSQL as its user, install packages), and a skip is
        # not a pass.
        tap_step shared 'shared: [0-9]+ passed'
        tap_step multihost 'multihost: [0-9]+ passed'
        tap_step debian 'debian: [0-9]+ passed'
        # Fuzz smoke: one "fuzz: NAME ok:" line per harness that found nothing.
        st=$(step_status fuzz)
        if [ -z "$st" ]; then
            fail 1 "fuzz: did not run"
        else
            grep -E '^fuzz: [^ ]+ (ok|FAILED)|^fuzz: [0-9]+ of' fuzz.log || true
            # shellcheck disable=SC2046
            set -- $(awk '/^fuzz: [^ ]+ ok:/{p++} /^fuzz: [^ ]+ (FAILED|is not built)/{f++}
                /^fuzz: [0-9]+ of [0-9]+ harnesses passed/{d=1} END{print p+0, f+0, d+0}' fuzz.log)
            passed=$((passed + $1))
            [ "$2" -eq 0 ] || fail "$2" "fuzz: $2 harnesses failed; see $BUILD_DIR/fuzz.log and $BUILD_DIR/fuzz/artifacts"
            if [ "$st" != 0 ] && [ "$2" -eq 0 ]; then
                [ "$3" = 1 ] || tail -40 fuzz.log
                fail 1 "fuzz: exit status $st$([ "$3" = 1 ] || echo ', stopped before its summary'); see $BUILD_DIR/fuzz.log"
            fi
        fi
        # Soak: the same, with its own summary line.
        tap_step soak 'soak: [0-9]+ requests, [0-9]+ checks passed, [0-9]+ failed'
    fi
    summarised=yes
    echo "mcpauth: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

if [ "${1:-}" = --summary ]; then
    [ -f "$steps" ] || { echo "tests/run.sh: no run recorded in $BUILD_DIR" >&2; exit 2; }
    summary
    exit
fi

# Whatever stops this script early still ends with a summary line that
# agrees with the exit status.
summarised=""
# shellcheck disable=SC2154
trap 'rc=$?; [ -n "$summarised" ] || [ "$rc" -eq 0 ] ||
    echo "mcpauth: 0 passed, 1 failed (tests/run.sh stopped early, exit status $rc)"' EXIT
sh "$top/scripts/deps.sh"
mkdir -p "$BUILD_DIR"
: > "$steps"
step() { # name command...: runs it, records its exit status, goes on
    name=$1; shift
    st=0
    "$@" || st=$?
    echo "$name $st" >> "$steps"
}
step check-deps sh "$top/scripts/check-deps.sh"
step check-tree sh "$top/scripts/check-tree.sh"
step build sh "$top/scripts/build.sh" --enable-werror --with-postgresql --with-redis
if [ "$(step_status build)" = 0 ]; then
    # results of an earlier run must not count if a program fails to build
    for log in $(test_logs); do
        rm -f "$BUILD_DIR/$log" "$BUILD_DIR/${log%.log}.trs"
    done
    rm -f "$BUILD_DIR/e2e.log" "$BUILD_DIR/shared.log" "$BUILD_DIR/fuzz.log" "$BUILD_DIR/soak.log" \
        "$BUILD_DIR/multihost.log" "$BUILD_DIR/debian.log"
    step make-check make -C "$BUILD_DIR" -k -j1 check
    # The official MCP SDK client, the MCP reference server, an external AS
    # and a browser against the demo deployment on lighttpd and Apache.
    # shellcheck disable=SC2016
    step e2e sh -c 'sh "$1" > "$2" 2>&1' e2e "$top/tests/e2e/run.sh" "$BUILD_DIR/e2e.log"
    # Shared hosting (doc/shared-hosting.md): an unprivileged user builds,
    # installs and deploys mcpauth from its home with the .htaccess kit;
    # the SDK client's whole flow under mod_fcgid and as plain CGI.
    # shellcheck disable=SC2016
    step shared sh -c 'BUILD_DIR="$1" sh "$2" > "$3" 2>&1' shared "$BUILD_DIR" \
        "$top/tests/shared/run.sh" "$BUILD_DIR/shared.log"
    # Fuzzing (tests/fuzz/README): every harness a few seconds from its
    # seeds, which include the inputs of past findings.
    # shellcheck disable=SC2016
    step fuzz sh -c 'make -C "$1" fuzz-smoke > "$2" 2>&1' fuzz "$BUILD_DIR" "$BUILD_DIR/fuzz.log"
    # Soak (tests/soak/soak.c): mixed traffic through lighttpd and Apache for
    # SOAK_SECONDS (60) in all; no unexpected status or 5xx, flat memory,
    # every code redeemed once, refresh families consistent.
    # shellcheck disable=SC2016
    step soak sh -c 'make -C "$1" soak > "$2" 2>&1' soak "$BUILD_DIR" "$BUILD_DIR/soak.log"
    # Several hosts (doc/deploy.md): two lighttpd and one Apache as one
    # deployment, on SQLite + shared memory and on PostgreSQL + Redis.
    # shellcheck disable=SC2016
    step multihost sh -c 'make -C "$1" multihost > "$2" 2>&1' multihost "$BUILD_DIR" \
        "$BUILD_DIR/multihost.log"
    # The Debian package (doc/debian.md): built, installed, enabled in
    # Apache and lighttpd, upgraded, purged.  Last: it installs into /usr.
    # shellcheck disable=SC2016
    step debian sh -c 'BUILD_DIR="$1" sh "$2" > "$3" 2>&1' debian "$BUILD_DIR" \
        "$top/tests/debian/run.sh" "$BUILD_DIR/debian.log"
fi
summary
