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
#
# A member crate's file is mutated with `-p` (cargo-mutants tests that package with the
# selection), in passes separated by `;`: the crate's own tests first, then, for the mutants
# they miss (`--iterate`), the root suites that drive it, named with `-p tower-bearer`.
suites() {
    case "$1" in
        crates/provider/src/*.rs)
            echo "@tower-bearer-provider --lib; --all-features -p tower-bearer-oauth2 -p tower-bearer-apivideo --lib" ;;
        # The DPoP suites over loopback, the mock's verifier, tonic's and reqwest's.
        crates/oauth2/src/dpop/*.rs | crates/oauth2/src/grant_proof.rs | crates/oauth2/src/answer.rs)
            echo "@tower-bearer-oauth2 --lib; --all-features -p tower-bearer --test dpop --test dpop_mock --test dpop_reqwest --test dpop_layer --test dpop_allocations --test tonic_dpop --test oauth2_hostile --test oauth2_discovery --test oauth2_errors --test secrets" ;;
        # Credentials read at each grant, the client's authentication, Azure workload identity:
        # the crate's own tests, then the grants against the mock over loopback.
        crates/oauth2/src/source.rs | crates/oauth2/src/azure.rs | crates/oauth2/src/client_auth.rs)
            echo "@tower-bearer-oauth2 --lib; -p tower-bearer --test oauth2_platform --test oauth2_grants --test secrets" ;;
        # The platform's providers: their own tests, then against their mocks over loopback.
        crates/platform/src/*.rs)
            echo "@tower-bearer-platform --lib; -p tower-bearer-platform --test azure --test gcp" ;;
        # The store without its features, with them, then against real Redis servers (started by
        # the suites: redis-server on PATH).
        crates/redis/src/*.rs)
            echo "@tower-bearer-redis --lib; --all-features --lib; --all-features -p tower-bearer --test redis --test redis_cluster" ;;
        src/verdict.rs)
            echo "--lib --test middleware" ;;
        # No unit test drives the engine: the library's suite (a build of its own, and property
        # tests) would only add minutes to every mutant.
        src/engine.rs)
            echo "--test middleware --test dpop_layer --test origins --test metrics" ;;
        # Many tokens behind one layer: its keys, eviction, and the reqwest middleware.
        src/keyed.rs | src/reqwest/keyed.rs)
            echo "--test keyed" ;;
        # The saved head's URI tells which origin answered a redirect followed below the layer.
        src/head.rs)
            echo "--lib --test origins" ;;
        # A channel's scope makes a proof's path-only URI absolute (tonic_dpop).
        src/scope.rs)
            echo "--lib --test origins --test tonic --test tonic_dpop" ;;
        src/cache/store_link.rs | src/store/mod.rs | src/store/memory.rs | src/store/failure.rs)
            echo "--lib --test store" ;;
        # The counts the engine reports: DPoP nonces (dpop_layer), requests out of scope
        # (origins), refused retries (metrics).
        src/cache/stats.rs)
            echo "--lib --test middleware --test store --test model --test metrics --test dpop_layer --test origins" ;;
        # A refresh's span and its outcome's name (traces, metrics).
        src/cache/flight.rs)
            echo "--lib --test middleware --test store --test model --test traces --test metrics" ;;
        # A refusal in gRPC trailers reaches the cache by its header (tonic_streams).
        src/cache/mod.rs)
            echo "--features tonic --lib --test middleware --test store --test model --test tonic --test tonic_streams" ;;
        # What each metric reports, and when.
        src/cache/metrics.rs)
            echo "--lib --test metrics --test middleware" ;;
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
    outputs+=("$output")
    examine=()
    for file in "${group[@]}"; do examine+=(--file "$file"); done
    package=()
    if [[ $selection == @* ]]; then
        package=(-p "${selection%% *}")
        package[1]=${package[1]#@}
        selection=${selection#* }
    fi
    mkdir -p "$output"
    rm -rf "$output/mutants.out" "$output"/*.all
    iterate=()
    IFS=';' read -r -a passes <<<"$selection"
    for pass in "${passes[@]}"; do
        # The last pass's outcome is the group's: an earlier pass misses what a later catches.
        last=0
        echo "==> ${group[*]} with cargo test ${package[*]} $pass"
        if [ ${#package[@]} -eq 0 ]; then
            # The target selection goes to every cargo call (the build as well as the test
            # run), so that a mutant builds only the suites that run.
            cargo_args=()
            for arg in $pass; do cargo_args+=(--cargo-arg="$arg"); done
            cargo mutants --test-tool cargo "${jobs[@]}" --output "$output" \
                "${examine[@]}" "${cargo_args[@]}" "$@" || last=$?
        else
            # After `--`, the selection goes to the test run only: the build is the package's.
            # shellcheck disable=SC2086
            cargo mutants --test-tool cargo "${jobs[@]}" --output "$output" "${iterate[@]}" \
                "${package[@]}" "${examine[@]}" "$@" -- $pass || last=$?
        fi
        # A later pass lists earlier passes' caught and unviable mutants as "previously caught",
        # together: each pass's own outcomes are kept here, for the summary.
        for outcome in caught unviable; do
            cat "$output/mutants.out/$outcome.txt" >>"$output/$outcome.all" 2>/dev/null || true
        done
        iterate=(--iterate)
    done
    [ "$last" -eq 0 ] || status=$last
done

echo
echo "file | mutants | caught | missed | unviable | timeouts | equivalent (not run)"
for file in "${files[@]}"; do
    # Caught and unviable add up over a file's passes; missed and timeouts are the last pass's.
    count() {
        local n=0
        for out in "${outputs[@]}"; do
            [ -f "$out/$1" ] || continue
            n=$((n + $(grep -c "^$file:" "$out/$1" || true)))
        done
        echo "$n"
    }
    caught=$(count caught.all) unviable=$(count unviable.all)
    missed=$(count mutants.out/missed.txt) timeout=$(count mutants.out/timeout.txt)
    package=()
    if [[ $file == crates/* ]]; then
        package=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$(echo "$file" | cut -d/ -f1-2)/Cargo.toml" | head -1)")
    fi
    listed() { cargo mutants --list "${package[@]}" --file "$file" "$@" | wc -l; }
    equivalent=$(($(listed --no-config) - $(listed)))
    echo "$file | $((caught + missed + unviable + timeout)) | $caught | $missed | $unviable | $timeout | $equivalent"
done
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout.
exit "$status"
