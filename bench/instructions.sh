#!/usr/bin/env bash
# Instructions per frame on each thread of the `hop` graph (premade -> count),
# on the hashing thread of `checksum` at 64 KiB (premade -> checksum -> count,
# fused: XXH3 itself and time spent waiting for room left out), and on
# `generate`'s thread at 4 KiB (throughput's graphs A and B; its waits left
# out), counted
# by valgrind's callgrind: the runtime's per-frame cost without the noise
# of a shared machine. Timings drift 2-4x here; an instruction count of the same
# build does not drift at all, so it shows a change of a few percent that no
# timing can. It is a diagnostic for work on the per-frame path, not a speed
# claim: instructions are not time (a cache miss costs no instructions), and
# the claims stay the same-run ratios of `hidra-bench`.
#
#   bench/instructions.sh              # build (release), count, print a table
#   bench/instructions.sh BINARY       # count an existing hidra-bench binary
#   TOP=15 bench/instructions.sh       # also list each thread's 15 costliest functions
#
# Needs valgrind (Debian: valgrind). valgrind 3.19 cannot read the DWARF that
# Swift writes, so the binary is counted from a copy stripped of debug info
# (function names stay).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

binary=${1:-}
if [ -z "$binary" ]; then
  swift build -c release --product hidra-bench >&2
  binary=.build/release/hidra-bench
fi
frames=200000         # what `hidra-bench hop --quick` sends
checksumFrames=32768  # what `hidra-bench checksum --quick --size=64KiB` sends: two runs (in situ, separate) of 1 GiB
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$binary" "$work/hidra-bench"
strip -g "$work/hidra-bench"
count() { # OUT [CALLGRIND-OPTIONS... --] ARGS...: run the benchmark under callgrind, one file per thread
  local out=$1
  shift
  local options=()
  if printf '%s\n' "$@" | grep -qx -- '--'; then
    while [ "$1" != "--" ]; do options+=("$1"); shift; done
    shift
  fi
  (cd "$work" && valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out" "${options[@]}" \
    ./hidra-bench "$@" >/dev/null 2>valgrind.log) || {
    cat "$work/valgrind.log" >&2
    exit 1
  }
}
top() { # FILE: the costliest functions, when TOP is set
  if [ "${TOP:-0}" -gt 0 ]; then
    callgrind_annotate --inclusive=no "$1" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n "2,$((TOP + 1))p" \
      | sed -E 's/ \[[^]]*\]$//' | cut -c1-150 | sed 's/^/    /'
  fi
}
count cg.out hop --quick --rounds=1
count sum.out checksum --quick --rounds=1 --size=64KiB
# generate's own thread at 4 KiB (graphs A and B of `throughput --quick`, 50,000
# frames each): counted only inside its body, and not while it waits for room.
# Its thread's file may also hold a raw baseline thread that ran before it.
count gen.out --collect-atstart=no \
  '--toggle-collect=$s10HidraNodes14GenerateSourceO4BodyV3runyy0A7Runtime12StageContextCKF' \
  '--toggle-collect=*EdgeQueueC11waitForRoom*SendResultOSi_tF' \
  -- throughput --quick --rounds=1 --size=4KiB
generateFrames=100000

# Each thread has its own file; the stage threads are told apart by their body.
printf '%-16s %14s %16s\n' thread instructions "per frame"
for file in "$work"/cg.out-*; do
  if grep -q 'PremadeSource.*run' "$file"; then name=source
  elif grep -q 'CountSink.*run' "$file"; then name=sink
  else continue; fi
  total=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
  printf '%-16s %14d %16.0f\n' "hop $name" "$total" "$(awk -v t="$total" -v f="$frames" 'BEGIN { print t / f }')"
  top "$file"
done
# The hashing thread of checksum, less XXH3 and the wait for room (under
# valgrind the threads take turns, so the producer waits whenever the edge is full).
for file in "$work"/sum.out-*; do
  grep -q 'PremadeSource.*run' "$file" || continue
  total=$(callgrind_annotate --threshold=100 --inclusive=no "$file" 2>/dev/null | grep -E '^ *[0-9,]+ \(' \
    | grep -vE 'PROGRAM TOTALS|XXH3|waitForRoom' | awk '{gsub(",", "", $1); sum += $1} END {print sum}')
  printf '%-16s %14d %16.0f\n' "checksum source" "$total" "$(awk -v t="$total" -v f="$checksumFrames" 'BEGIN { print t / f }')"
  top "$file"
done
total=$(cat "$work"/gen.out-* | awk '/^summary:/ {sum += $2} END {print sum}')
printf '%-16s %14d %16.0f\n' "generate 4 KiB" "$total" "$(awk -v t="$total" -v f="$generateFrames" 'BEGIN { print t / f }')"
