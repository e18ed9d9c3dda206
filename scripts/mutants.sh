#!/usr/bin/env bash
# Mutation testing of the core's decisions: cargo-mutants on the given source files, each run
# with the test suites that cover it (the table below), for an engineer to run on what they
# change. Not part of .ci/run: every mutant is a build and a test run, hours for the whole core
# on two cores.
#
#   scripts/mutants.sh                          # the core decision files (DEFAULT below)
#   scripts/mutants.sh src/cache/entry.rs       # one file
#   scripts/mutants.sh src/verdict.rs -- --list # arguments after -- go to cargo-mutants
#   scripts/mutants.sh -- --in-place            # mutate this tree, reusing its target/
#
# Needs cargo-mutants 27 (`cargo install cargo-mutants --locked`). Equivalent mutants are
# listed in .cargo/mutants.toml, each with why. Each group of files that share their suites is
# one cargo-mutants run, whose results land in mutants.out/<group>/mutants.out/; the summary at
# the end counts each file's outcomes (tests/README.md keeps the last figures).
set -euo pipefail
cd "$(dirname "$0")/.."

# The files a plain run examines: where the cache and the layer decide.
DEFAULT=(src/verdict.rs src/cache/flight.rs src/cache/entry.rs)

# The suites that cover a source file: cargo test's target selection and any features. The
# library's own tests run wherever unit tests sit beside the code or drive it.
suites() {
    case "$1" in
        src/verdict.rs)
            echo "--lib --test middleware" ;;
        # No unit test drives the engine: the library's suite (a build of its own, and property
        # tests) would only add minutes to every mutant.
        src/engine.rs)
            echo "--test middleware --test dpop_layer --test origins --test metrics" ;;
        # The saved head's URI tells which origin answered a redirect followed below the layer.
        src/head.rs)
            echo "--lib --test origins" ;;
        # A channel's scope makes a proof's path-only URI absolute (tonic_dpop).
        src/scope.rs)
            echo "--lib --test origins --test tonic --test tonic_dpop" ;;
        src/cache/store_link.rs | src/store/mod.rs | src/store/memory.rs)
            echo "--lib --test store" ;;
        src/cache/*.rs)
            echo "--lib --test middleware --test store --test model" ;;
        # The replay body's own tests sit beside it; `bodies` sends it through the layer.
        src/body/*.rs)
            echo "--lib --test bodies" ;;
        src/layer.rs | src/service.rs | src/future.rs)
            echo "--lib --test middleware --test bodies --test model" ;;
        src/tonic/*.rs)
            echo "--features tonic --lib --test tonic --test tonic_streams" ;;
        src/reqwest/*.rs)
            echo "--features reqwest --lib --test reqwest --test reqwest_decisions --test reqwest_oauth2" ;;
        *)
            return 1 ;;
    esac
}

files=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    files+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
[ ${#files[@]} -eq 0 ] && files=("${DEFAULT[@]}")

if ! cargo mutants --version 2>/dev/null | grep -q '^cargo-mutants 27\.'; then
    echo "cargo-mutants 27 is needed: cargo install cargo-mutants --locked" >&2
    exit 2
fi

# Files grouped by the suites that cover them: one cargo-mutants run per group.
declare -A groups=()
for file in "${files[@]}"; do
    if ! selection=$(suites "$file"); then
        echo "no suites listed for $file: add it to the table in $0" >&2
        exit 2
    fi
    groups[$selection]+=" $file"
done

# One job, for a two-core machine; --in-place (mutating this tree, built where it is, rather
# than a copy built from scratch) runs one anyway and refuses --jobs.
jobs=(--jobs 1)
for arg in "$@"; do [ "$arg" = "--in-place" ] && jobs=(); done

status=0
outputs=()
for selection in "${!groups[@]}"; do
    read -r -a group <<<"${groups[$selection]}"
    name=$(printf '%s\n' "${group[@]}" | sed 's|^src/||; s|\.rs$||; s|/|-|g' | paste -sd+ -)
    output="mutants.out/$name"
    outputs+=("$output/mutants.out")
    examine=()
    for file in "${group[@]}"; do examine+=(--file "$file"); done
    # The target selection goes to every cargo call (the build as well as the test run), so
    # that a mutant builds only the suites that run; one job, for a two-core machine.
    cargo_args=()
    for arg in $selection; do cargo_args+=(--cargo-arg="$arg"); done
    echo "==> ${group[*]} with cargo test $selection"
    mkdir -p "$output"
    cargo mutants --test-tool cargo "${jobs[@]}" --output "$output" \
        "${examine[@]}" "${cargo_args[@]}" "$@" || status=$?
done

echo
echo "file | mutants | caught | missed | unviable | timeouts | equivalent (not run)"
for file in "${files[@]}"; do
    count() {
        local n=0
        for out in "${outputs[@]}"; do
            [ -f "$out/$1.txt" ] || continue
            n=$((n + $(grep -c "^$file:" "$out/$1.txt" || true)))
        done
        echo "$n"
    }
    caught=$(count caught) missed=$(count missed) unviable=$(count unviable) timeout=$(count timeout)
    listed() { cargo mutants --list --file "$file" "$@" | wc -l; }
    equivalent=$(($(listed --no-config) - $(listed)))
    echo "$file | $((caught + missed + unviable + timeout)) | $caught | $missed | $unviable | $timeout | $equivalent"
done
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout.
exit "$status"
