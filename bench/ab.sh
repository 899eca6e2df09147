#!/usr/bin/env bash
# Regression check between two moat binaries (e.g. the last release build and a change's): both
# run side by side on CPU 0 as bench/run.sh runs moat (one serving thread, audit log to a file,
# same PKI, CRL and upstream), and each client measures them in alternating rounds:
#   bench/loadgen  keep-alive (64 connections) and a full mTLS handshake per request (16)
#   openssl s_time a full handshake per connection, one at a time
#   oha            keep-alive (64 connections), a load generator that is not ours
#   curl           HTTP/1.1 keep-alive, 16 parallel connections, 20,000 requests
#
#   bench/ab.sh OLD_MOAT NEW_MOAT [ROUNDS]     (ROUNDS defaults to 4)
#
# MOAT_AB_OLD_ARGS and MOAT_AB_NEW_ARGS add flags to one side, so one binary can be measured
# against itself with a feature on and off, e.g. the request inspector's cost:
#   MOAT_AB_OLD_ARGS="--inspect off" MOAT_AB_NEW_ARGS="--inspect 127.0.0.1:0" \
#     bench/ab.sh target/release/moat target/release/moat
# (give both sides an explicit --inspect: by default each would try 127.0.0.1:4040).
#
# Prints one line per round, client and binary. The machine's speed drifts between and within
# rounds, so rounds alternate which binary goes first: run an even number of rounds, compare the
# two binaries within a round, and look at the medians.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: bench/ab.sh OLD_MOAT NEW_MOAT [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-4}
repo=$(cd "$(dirname "$0")/.." && pwd)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
timeout 1800 cargo build --release --locked --manifest-path "$repo/bench/loadgen/Cargo.toml" \
  --target-dir "$target_dir/loadgen" >/dev/null 2>&1
loadgen="$target_dir/loadgen/release/loadgen"
log() { printf 'ab: %s\n' "$*" >&2; }
die() { printf 'ab: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=bench/oha.sh
. "$repo/bench/oha.sh"
install_oha

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pki=$work/pki
"$new" pki init-ca --out "$pki/ca" --cn "moat A/B CA" >/dev/null
"$new" pki issue --ca "$pki/ca" --profile server --cn localhost --san dns:localhost \
  --san ip:127.0.0.1 --key-type rsa-2048 --out "$pki/server" >/dev/null
"$new" pki issue --ca "$pki/ca" --profile client --cn ab-client --key-type ecdsa-p256 \
  --out "$pki/client" >/dev/null
"$new" pki crl --ca "$pki/ca" --out "$pki/crl.pem" >/dev/null

upstream_http=$(free_port)
upstream_tcp=$(free_port)
taskset -c 1 "$loadgen" upstream --http "127.0.0.1:$upstream_http" --tcp "127.0.0.1:$upstream_tcp" \
  >"$work/upstream.log" 2>&1 &
pids+=($!)

declare -A port binary=([old]="$old" [new]="$new") extra=([old]="${MOAT_AB_OLD_ARGS:-}" [new]="${MOAT_AB_NEW_ARGS:-}")
for version in old new; do
  port[$version]=$(free_port)
  # The extra flags are split into words on purpose.
  # shellcheck disable=SC2086
  env TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "${binary[$version]}" http \
    "127.0.0.1:$upstream_http" --listen "127.0.0.1:${port[$version]}" --domain localhost \
    --crt "$pki/server.crt" --key "$pki/server.key" --mutual-tls-cas "$pki/ca/ca.crt" \
    --crl "$pki/crl.pem" --request-header-timeout 120s --idle-timeout 300s \
    --audit-log "$work/$version-audit.jsonl" ${extra[$version]} >"$work/$version.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/${port[$version]}") 2>/dev/null && break
    sleep 0.1
  done
  : >"$work/urls-$version"
  for _ in $(seq 20000); do
    printf 'url = "https://localhost:%s/small"\noutput = "/dev/null"\n' "${port[$version]}" \
      >>"$work/urls-$version"
  done
done

tls=(--server-name localhost --ca "$pki/ca/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key")
for round in $(seq "$rounds"); do
  # The machine drifts within a round (the second binary measured ran ~10 % slower either way):
  # odd rounds measure old first, even rounds new first.
  order=(old new)
  [ $((round % 2)) -eq 1 ] || order=(new old)
  for version in "${order[@]}"; do
    for scenario in keepalive handshake; do
      case $scenario in
        keepalive) shape=(--connections 64) ;;
        handshake) shape=(--connections 16 --new-connection-per-request) ;;
      esac
      line=$(timeout 60 taskset -c 1 "$loadgen" http --connect "127.0.0.1:${port[$version]}" \
        "${tls[@]}" --duration 7s "${shape[@]}")
      echo "round=$round client=loadgen scenario=$scenario moat=$version $line"
    done
  done
  for version in "${order[@]}"; do
    line=$(timeout 60 taskset -c 1 openssl s_time -connect "127.0.0.1:${port[$version]}" \
      -cert "$pki/client.crt" -key "$pki/client.key" -CAfile "$pki/ca/ca.crt" -new -time 7 \
      -www /small 2>/dev/null | grep -m1 'connections in')
    echo "round=$round client=s_time scenario=handshake moat=$version $line"
  done
  for version in "${order[@]}"; do
    # Counts only 200s: at its deadline oha abandons what is in flight.
    rps=$(timeout 60 taskset -c 1 "$oha" --no-tui --output-format json -z 7s -c 64 \
      --cacert "$pki/ca/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
      --connect-to "localhost:${port[$version]}:127.0.0.1:${port[$version]}" \
      "https://localhost:${port[$version]}/small" | python3 -c '
import json, sys
report = json.load(sys.stdin)
print(round(int(report.get("statusCodeDistribution", {}).get("200", 0)) / report["summary"]["total"]))')
    echo "round=$round client=oha scenario=keepalive moat=$version rps=$rps"
  done
  for version in "${order[@]}"; do
    start=$(date +%s.%N)
    timeout 120 taskset -c 1 curl -sS --fail --http1.1 --parallel --parallel-max 16 \
      --no-progress-meter --cacert "$pki/ca/ca.crt" --cert "$pki/client.crt" \
      --key "$pki/client.key" --resolve "localhost:${port[$version]}:127.0.0.1" \
      -K "$work/urls-$version"
    end=$(date +%s.%N)
    echo "round=$round client=curl scenario=keepalive moat=$version rps=$(echo "20000 / ($end - $start)" | bc -l | cut -d. -f1)"
  done
done
