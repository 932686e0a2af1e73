#!/usr/bin/env bash
# The performance table of docs/performance.md: runs the load tester against a
# release build of Hydrant for each workload, with the `discard` sink and with the
# `file` sink, and reads Hydrant's CPU time and peak RSS from /proc.
#
#   bash loadtest/matrix.sh [seconds per run]      (default 15)
#   bash loadtest/matrix.sh --end-to-end [seconds] (the end-to-end table only)
#   bash loadtest/matrix.sh --binaries             (print the two binaries' paths)
#
# HYDRANT=/path/to/hydrant runs that binary instead of building this checkout's,
# so two versions can be measured in turns in one sitting (before and after a
# change), each against the same load tester.
#
# Everything runs on this machine, on loopback; each run is bounded in time. The
# binaries are found where Cargo puts them, CARGO_TARGET_DIR included.
set -euo pipefail
cd "$(dirname "$0")/.."

# Cargo's target directory of a manifest, as Cargo itself resolves it
# (CARGO_TARGET_DIR, build.target-dir in a config file, or <crate>/target).
target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
hydrant=${HYDRANT:-$(target_dir Cargo.toml)/release/hydrant}
loadtest=$(target_dir loadtest/Cargo.toml)/release/hydrant-loadtest
if [ "${1:-}" = --binaries ]; then
  printf '%s\n%s\n' "$hydrant" "$loadtest"
  exit 0
fi
scaling_table=yes
if [ "${1:-}" = --end-to-end ]; then
  scaling_table=no
  shift
fi
SECONDS_PER_RUN=${1:-15}
PORT=18180
ADMIN=18181
KEY=matrix-key
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

if [ -z "${HYDRANT:-}" ]; then
  cargo build --release --quiet
fi
cargo build --release --quiet --manifest-path loadtest/Cargo.toml

cat > "$work/discard.toml" <<'TOML'
[[sinks]]
name = "null"
type = "discard"
[routing]
default_sinks = ["null"]
TOML
printf '' > "$work/file.toml"

# name | load tester arguments
workloads=(
  "cloudwatch-logs 1.6MB/500 records|--kind cloudwatch-logs --records 500 --events-per-record 20 --concurrency 4"
  "cloudwatch-logs 1MiB/500 records|--kind cloudwatch-logs --records 500 --request-size 1MiB --concurrency 4"
  "metric-stream JSON 4MiB|--kind metrics-json --request-size 4MiB --concurrency 4"
  "raw JSON 64KiB|--kind raw-json --request-size 64KiB --concurrency 8"
  "cloudwatch-logs 64MiB|--kind cloudwatch-logs --request-size 64MiB --concurrency 1 --pool-size 1"
)
# Cost against size: one sender, so every row runs under the same conditions.
scaling=(
  "cloudwatch-logs 256KiB|--kind cloudwatch-logs --request-size 256KiB --concurrency 1"
  "cloudwatch-logs 1MiB|--kind cloudwatch-logs --request-size 1MiB --concurrency 1"
  "cloudwatch-logs 4MiB|--kind cloudwatch-logs --request-size 4MiB --concurrency 1"
  "cloudwatch-logs 16MiB|--kind cloudwatch-logs --request-size 16MiB --concurrency 1 --pool-size 2"
  "cloudwatch-logs 64MiB|--kind cloudwatch-logs --request-size 64MiB --concurrency 1 --pool-size 1"
  "raw JSON 500 records of 1KiB|--kind raw-json --records 500 --record-size 1KiB --concurrency 1"
  "raw JSON 10,000 records of 1KiB|--kind raw-json --records 10000 --record-size 1KiB --concurrency 1"
)

# Runs one workload against a fresh Hydrant and prints its table row.
run() {
  local name=$1 sink=$2 args=$3
  rm -rf "$work/data"
  "$hydrant" --config "$work/$sink.toml" --data-dir "$work/data" --access-key "m=$KEY" \
    --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN 2> "$work/hydrant.log" &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086
  "$loadtest" --url "http://127.0.0.1:$PORT/matrix" --access-key "$KEY" $args \
    --duration "${SECONDS_PER_RUN}s" --warmup 2s --json > "$work/report.json"
  local ticks hwm
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM $pid; wait $pid || true
  python3 - "$work/report.json" "$ticks" "$(getconf CLK_TCK)" "$hwm" "$name" "$sink" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
ticks, hz, hwm_kib, name, sink = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
rates, counts = report["throughput"], report["requests"]
latency = report["latency_us"]["attempt"]
cpu_s = ticks / hz
gigabytes = max(counts["body_bytes"] / 1e9, 1e-9)
errors = sum(report["errors"].values())
note = f" ({errors} errors)" if errors else ""
print(f"| {name} | {sink} | {rates['requests_per_s']:.1f} | {rates['events_per_s']:,.0f} | "
      f"{rates['body_mb_per_s']:.1f} | {latency['p50'] / 1000:.1f} | {latency['p99'] / 1000:.1f} | "
      f"{cpu_s / gigabytes:.1f} | {hwm_kib / 1024:.0f}{note} |")
PY
}

header() {
  printf '| workload | sink | requests/s | events/s | body MB/s | p50 ms | p99 ms | CPU s per GB of body | peak RSS MiB |\n'
  printf '|---|---|---|---|---|---|---|---|---|\n'
}

header
for sink in discard file; do
  for entry in "${workloads[@]}"; do
    run "${entry%%|*}" "$sink" "${entry#*|}"
  done
done
if [ "$scaling_table" = yes ]; then
  printf '\nScaling (one sender, discard sink):\n\n'
  header
  for entry in "${scaling[@]}"; do
    run "${entry%%|*}" discard "${entry#*|}"
  done
fi
