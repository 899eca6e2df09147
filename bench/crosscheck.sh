# shellcheck shell=bash
# The second load generators (issue 13), sourced by bench/run.sh: scenarios 1 and 2 again, nginx
# against moat, driven by tools that are not ours — oha (keep-alive, 64 connections) and eight
# parallel `openssl s_time -new` clients (a full handshake and one request per connection) — so
# a figure the harness claims does not depend on its own load generator. Uses run.sh's helpers
# and fills result[x-keepalive|x-handshake|x-grpc,...]; scenario 7 (gRPC) with oha too.

crosscheck_gateways=(nginx moat)

# shellcheck source=bench/oha.sh
. "$repo/bench/oha.sh"

# oha on CPU 1 against the selected gateway, asking for PATH with oha's FLAGS (connections,
# protocol, method); stores rps, CPU and per CPU-s under result[$1,$2,*] like run.sh's load().
# IN_FLIGHT is the requests oha keeps open: at the deadline it abandons them, so up to that many
# count as failures without any gateway error.
oha_load() {
  local key="$1" name="$2" path="$3" in_flight="$4" ticks out summary
  shift 4
  # shellcheck disable=SC2086
  ticks=$(cpu_ticks $gateway_pid)
  out="$work/oha-$key-$name.json"
  recorded timeout $((duration_secs + 60)) taskset -c 1 "$oha" --no-tui --output-format json -z "$duration" \
    "$@" --cacert "$ca" --cert "$pki/client.crt" --key "$pki/client.key" \
    --connect-to "$server_name:$gateway_port:127.0.0.1:$gateway_port" "https://$server_name:$gateway_port$path" >"$out" 2>"$work/oha-$key-$name.err" ||
    die "oha failed on $name: $(cat "$work/oha-$key-$name.err")"
  # requests, seconds, p50 ms, p99 ms, requests not answered 200
  summary=$(python3 - "$out" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
codes = report.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
others = sum(int(count) for code, count in codes.items() if code != "200")
others += sum(int(count) for count in report.get("errorDistribution", {}).values())
summary = report["summary"]
latency = report.get("latencyPercentiles", {})
print(ok, summary["total"], 1000 * latency.get("p50", 0), 1000 * latency.get("p99", 0), others)
EOF
  ) || die "cannot read oha's report $out"
  read -r requests seconds p50 p99 failed <<<"$summary"
  # oha stops at its deadline with requests in flight, which it counts as errors ("aborted due
  # to deadline"); up to one per connection is the end of the run, more is a failure.
  [ "$failed" -le "$in_flight" ] || die "oha on $name: $failed requests not answered 200 (see $out)"
  result[$key,$name,rps]=$(awk -v r="$requests" -v s="$seconds" 'BEGIN {printf "%.0f", r / s}')
  result[$key,$name,p50]=$(printf '%.2f' "$p50")
  result[$key,$name,p99]=$(printf '%.2f' "$p99")
  result[$key,$name,errors]=$failed
  usage=$(cpu_usage "$ticks" "$seconds" "$requests")
  result[$key,$name,cpu]=${usage% *}
  result[$key,$name,per_cpu]=${usage#* }
  log "  $key $name (oha): ${result[$key,$name,rps]} req/s, gateway CPU ${result[$key,$name,cpu]} %"
}

# Full handshakes with eight `openssl s_time -new -www /small` on CPU 1: each connection is a new
# full mTLS handshake (s_time keeps no session with -new) and one HTTP/1.0 request. OpenSSL 3.0's
# s_time sends no SNI (it has no -servername); both gateways serve one name.
stime_load() {
  local key="$1" name="$2" ticks started finished client total=0 count clients=()
  # shellcheck disable=SC2086
  ticks=$(cpu_ticks $gateway_pid)
  started=$(date +%s.%N)
  for client in 1 2 3 4 5 6 7 8; do
    note_command taskset -c 1 openssl s_time -connect "127.0.0.1:$gateway_port" \
      -new -time "$duration_secs" -cert "$pki/client.crt" -key "$pki/client.key" -CAfile "$ca" -www /small "&"
    timeout $((duration_secs + 60)) taskset -c 1 openssl s_time -connect "127.0.0.1:$gateway_port" \
      -new -time "$duration_secs" -cert "$pki/client.crt" -key "$pki/client.key" \
      -CAfile "$ca" -www /small >"$work/stime-$key-$name-$client.out" 2>&1 &
    clients+=("$!")
  done
  for client in "${clients[@]}"; do
    wait "$client" || die "openssl s_time failed on $name (see $work/stime-$key-$name-*.out)"
  done
  finished=$(date +%s.%N)
  for client in 1 2 3 4 5 6 7 8; do
    count=$(sed -n 's/^\([0-9][0-9]*\) connections in [0-9.]* real seconds.*/\1/p' "$work/stime-$key-$name-$client.out")
    [[ "$count" =~ ^[0-9]+$ ]] || die "no connection count from s_time on $name (see $work/stime-$key-$name-$client.out)"
    ! grep -qi 'error' "$work/stime-$key-$name-$client.out" ||
      die "s_time on $name reported an error (see $work/stime-$key-$name-$client.out)"
    total=$((total + count))
  done
  local seconds
  seconds=$(awk -v a="$started" -v b="$finished" 'BEGIN {printf "%.2f", b - a}')
  result[$key,$name,rps]=$(awk -v r="$total" -v s="$seconds" 'BEGIN {printf "%.0f", r / s}')
  result[$key,$name,p50]="—"
  result[$key,$name,p99]="—"
  result[$key,$name,errors]=0
  usage=$(cpu_usage "$ticks" "$seconds" "$total")
  result[$key,$name,cpu]=${usage% *}
  result[$key,$name,per_cpu]=${usage#* }
  log "  $key $name (s_time ×8): ${result[$key,$name,rps]} handshakes/s, gateway CPU ${result[$key,$name,cpu]} %"
}

# Rounds alternating between nginx and moat (already running: port_of, pid_of), median kept.
run_crosscheck() {
  install_oha
  log "second load generators: oha and openssl s_time, $rounds round(s) of $duration"
  local scenario round name
  # One gRPC message (a 5-byte prefix and 16 bytes), as bench/loadgen --grpc sends it.
  printf '\0\0\0\0\020moat-bench-grpc!' >"$work/grpc-message.bin"
  for scenario in x-keepalive x-handshake x-grpc; do
    for round in $(seq "$rounds"); do
      for name in "${crosscheck_gateways[@]}"; do
        gateway_port=${port_of[$name]}
        gateway_pid=${pid_of[$name]}
        case "$scenario" in
          x-keepalive) oha_load "$scenario.$round" "$name" /small 64 -c 64 ;;
          x-grpc)
            oha_load "$scenario.$round" "$name" /bench.Echo/Unary 256 --http2 -c 8 -p 32 -m POST \
              -H "content-type: application/grpc" -H "te: trailers" -D "$work/grpc-message.bin"
            ;;
          x-handshake) stime_load "$scenario.$round" "$name" ;;
        esac
      done
    done
    for name in "${crosscheck_gateways[@]}"; do keep_median_round "$scenario" "$name"; done
  done
}

crosscheck_report() {
  local scenario name label
  echo
  echo "## The same scenarios with other load generators: oha and \`openssl s_time\`"
  echo
  echo "Scenarios 1 and 7 with oha $oha_version (64 keep-alive connections, HTTP/1.1; gRPC calls over HTTP/2,"
  echo "8 connections × 32 parallel, counted by HTTP status: oha does not read \`grpc-status\`) and scenario 2 with eight"
  echo "parallel \`openssl s_time -new -www /small\` (a full mTLS handshake and one HTTP/1.0 request per"
  echo "connection), both on CPU 1 as bench/loadgen is; the same gateways, configurations and logging."
  echo
  echo "| Scenario | Gateway | req/s | p50 ms | p99 ms | gateway CPU | req per CPU-s | req/s vs nginx | per CPU-s vs nginx | rounds (req/s) |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for scenario in x-keepalive x-handshake x-grpc; do
    case $scenario in
      x-keepalive) label="1. keep-alive, oha" ;;
      x-grpc) label="7. gRPC unary calls, oha (HTTP/2, 8 connections × 32)" ;;
      x-handshake) label="2. full handshakes, s_time ×8" ;;
    esac
    for name in "${crosscheck_gateways[@]}"; do
      echo "| $label | $name | ${result[$scenario,$name,rps]} | ${result[$scenario,$name,p50]} | ${result[$scenario,$name,p99]} | ${result[$scenario,$name,cpu]} % | ${result[$scenario,$name,per_cpu]} | $(ratio "${result[$scenario,$name,rps]}" "${result[$scenario,nginx,rps]}") | $(ratio "${result[$scenario,$name,per_cpu]}" "${result[$scenario,nginx,per_cpu]}") | ${result[$scenario,$name,rounds]} |"
    done
  done
}
