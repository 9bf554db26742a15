#!/usr/bin/env bash
# Long fuzz campaigns over every parser (issue 23): runs the fsvfm-fuzz binary for SECONDS
# (default 3600) with a new seed each round, saving what it finds to crates/fsvfm-fuzz/corpus/
# (replayed as regression tests by `cargo test -p fsvfm-fuzz`). A case that aborts the process (an
# allocation refused beyond the hard memory limit, a stack overflow) cannot be saved by the binary:
# it is left in the --current folder under its target's name, and this script moves it into the
# corpus before starting again with the next seed.
#
#   bash tools/fuzz.sh [SECONDS] [--target NAME]...        e.g. bash tools/fuzz.sh 600 --target pth
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3600}"
shift || true
cargo build -q --release -p fsvfm-fuzz || exit 2
bin=target/release/fsvfm-fuzz
corpus=crates/fsvfm-fuzz/corpus
current="$(mktemp -d)"
trap 'rm -rf "$current"' EXIT
end=$(( $(date +%s) + seconds ))
seed="${FSVFM_FUZZ_SEED:-$(date +%s)}"
found=0
while [ "$(date +%s)" -lt "$end" ]; do
  left=$(( end - $(date +%s) ))
  "$bin" --seconds "$left" --seed "$seed" --cases 500 --current "$current" "$@"
  rc=$?
  case "$rc" in
    0) ;;
    1) found=1 ;;  # findings, saved by the binary
    2) exit 2 ;;   # a usage error
    *)
      # Killed by a signal (134: abort, 139: stack overflow): keep the case it was running.
      for f in "$current"/*; do
        [ -f "$f" ] || continue
        target="$(basename "$f")"
        mkdir -p "$corpus/$target"
        # At most three aborting cases per target (one bug aborts again and again).
        if [ "$(ls "$corpus/$target" | grep -c '^abort-')" -ge 3 ]; then
          echo "fuzz.sh: exit $rc on a $target case (the corpus has three aborting ones; not kept)"
          rm -f "$f"
        else
          name="abort-$("$bin" --case-name "$f")"
          mv "$f" "$corpus/$target/$name"
          echo "fuzz.sh: exit $rc on a $target case, kept as $corpus/$target/$name"
        fi
        found=1
      done
      ;;
  esac
  seed=$(( seed + 1000 ))
done
exit "$found"
