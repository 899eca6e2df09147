#!/usr/bin/env bash
# Runs the cargo fuzz targets for N seconds each, one job, from the committed seed corpus; fails on a crash.
#
#   fuzz/run.sh [--seconds N] [target...]     # default: 60 seconds each, every target
#
# The committed fuzz/corpus/<target>/ is only read; new inputs go to fuzz/target/corpus/<target>/
# (kept between runs, ignored by git), so a run never dirties the tree. A crash, panic, timeout or
# out-of-memory stops that target; the script goes on with the others, then lists every artifact
# (fuzz/artifacts/<target>/...) and exits 1. Reproduce one with
# `cargo +nightly fuzz run <target> <artifact>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (use --seconds N and target names)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "run.sh: --seconds takes a whole number, not '$seconds'" >&2; exit 2 ;; esac

known=$(cargo +nightly fuzz list)
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets <<<"$known"
fi
for target in "${targets[@]}"; do
  grep -qx "$target" <<<"$known" || { echo "run.sh: no fuzz target '$target'; targets: $(echo $known)" >&2; exit 2; }
done

# One build for every target: they share the whole dependency tree.
start=$SECONDS
cargo +nightly fuzz build
echo "fuzz: built in $((SECONDS - start)) s"

failed=()
for target in "${targets[@]}"; do
  scratch="target/corpus/$target"
  mkdir -p "$scratch" "artifacts/$target"
  log="target/fuzz-$target.log"
  echo "fuzz: $target for ${seconds} s"
  # One job (cargo fuzz's default --jobs 1: libFuzzer in this process, no -fork, no workers);
  # an input running longer than 30 s counts as a hang.
  if cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | tail -1 | sed "s/^/fuzz: $target: /"
  else
    tail -40 "$log"
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz: $target FAILED; artifact: ${artifact:-none written (see $PWD/$log)}"
    failed+=("$target: ${artifact:-$PWD/$log}")
  fi
done

echo "fuzz: $((SECONDS - start)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: crashed: %s\n' "${failed[@]}" >&2
  exit 1
fi
