#!/bin/sh
# Runs a libFuzzer target for a bounded time from a fresh seed corpus, and fails on any
# crash, sanitizer report, leak or timeout it finds (libFuzzer exits non-zero then).
#   run_fuzzer.sh FUZZER SEED-GENERATOR SECONDS ARTIFACT-DIR
# The corpus lives in a temp dir removed at the end; crashing inputs are kept in
# ARTIFACT-DIR (in the build dir) to replay with `FUZZER FILE`.
set -eu
fuzzer=$1 seeds=$2 seconds=$3 artifacts=$4
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/corpus" "$work/seeds"
mkdir -p "$artifacts"
"$seeds" "$work/seeds"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$work/corpus" "$work/seeds"
