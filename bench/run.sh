#!/usr/bin/env bash
# Benchmark harness (issues 4 and 13): moat beside nginx, haproxy and stunnel on this machine, and
# moat's edge + agent beside rathole and a direct moat (bench/tunnel.sh); same certificates, same CA
# bundle and CRL, same upstream, same load generator, checked with oha and openssl s_time
# (bench/crosscheck.sh); writes a Markdown report (BENCHMARKS.md by default).
#
#   bench/run.sh                 full run (3 alternating rounds of 7 s per request scenario, 1 GiB
#                                transfers, 5,000 idle connections)
#   bench/run.sh --quick         smoke run for CI (one 2 s round, 64 MiB, 500 idle connections)
#   bench/run.sh --output FILE   write the report elsewhere
#   bench/run.sh --perf          also profile moat with perf in scenarios 1 and 2 (an extra round,
#                                not one of the measured ones)
#   bench/run.sh --nice          run in its own scheduling group at nice -10 (root), ahead of other work
#   bench/run.sh --part PART     gateways (scenarios 1-6), tunnel (issue 13's: moat edge + agent,
#                                direct, rathole; bench/tunnel.sh) or all (the default)
#
# Each gateway is pinned to CPU 0 and is the only one under load there (one nginx worker, one
# haproxy thread, moat on one thread); the upstream, curl and the load generator share CPU 1. Loopback only; every step
# is bounded by `timeout`.
set -euo pipefail

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

quick=0
perf_profile=0
boost=0
part=all
arguments=("$@")
repo="$(cd "$(dirname "$0")/.." && pwd)"
output="$repo/BENCHMARKS.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --perf) perf_profile=1 ;;
    --nice) boost=1 ;;
    --part)
      [ $# -ge 2 ] || { echo "bench/run.sh: --part needs gateways, tunnel or all" >&2; exit 2; }
      case "$2" in gateways | tunnel | all) part="$2" ;; *) echo "bench/run.sh: --part $2: use gateways, tunnel or all" >&2; exit 2 ;; esac
      shift
      ;;
    --output)
      [ $# -ge 2 ] || { echo "bench/run.sh: --output needs a file" >&2; exit 2; }
      output="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$output" in /*) ;; *) output="$PWD/$output" ;; esac

# Linux schedules sessions (autogroups) fairly against each other, so a per-process nice cannot
# put the benchmark ahead of other work; a session of its own with a raised autogroup weight can.
if [ "$boost" = 1 ] && [ -z "${MOAT_BENCH_SESSION:-}" ] && command -v setsid >/dev/null; then
  MOAT_BENCH_SESSION=1 exec setsid -w "$0" "${arguments[@]}"
fi
boosted=""
if [ "$boost" = 1 ] && [ -w /proc/self/autogroup ] && echo -10 >/proc/self/autogroup 2>/dev/null; then
  boosted=" The harness ran in its own session with autogroup nice -10 (\`--nice\`)."
fi

# Scenarios 1-3 run in rounds that alternate between the gateways, and each figure is the round
# with the median rate: on a shared machine the capacity of CPU 0 drifts by tens of percent within
# minutes, and one long run per gateway would compare moments as much as programs.
if [ "$quick" = 1 ]; then
  duration=2s
  rounds=1
  stream_bytes=$((64 * 1024 * 1024))
  idle_connections=500
else
  duration=7s
  rounds=3
  stream_bytes=$((1024 * 1024 * 1024))
  idle_connections=5000
fi
duration_secs=${duration%s}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# What the harness needs: Debian packages and a Rust toolchain.

install_missing() {
  local missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=(stunnel4)
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v taskset >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) and rerun"
}

install_missing
export PATH="$PATH:/usr/sbin:/sbin"
stunnel_bin="$(command -v stunnel4 || command -v stunnel)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (gateway on CPU 0, load on CPU 1); this machine has $(nproc)"

# 5,000 held connections need 10,000+ descriptors across the client and the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((2 * idle_connections + 100)) ] ||
  die "open-file limit $(ulimit -n) is too low for $idle_connections connections; raise it (ulimit -n)"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
log "building moat (release) and the load generator into $target_dir"
(cd "$repo" && timeout 1800 cargo build --release --locked -p moat --target-dir "$target_dir")
timeout 1800 cargo build --release --locked --manifest-path "$repo/bench/loadgen/Cargo.toml" \
  --target-dir "$target_dir/loadgen"
moat="$target_dir/release/moat"
loadgen="$target_dir/loadgen/release/loadgen"

# ---------------------------------------------------------------------------------------------
# Work directory, processes we start, and cleanup.

work="$(mktemp -d /tmp/moat-bench.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${keep_work:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

commands_log="$work/commands.txt"
: >"$commands_log"
# Appends a command line, shell-quoted, to the report's "exact commands" section.
note_command() {
  local word line=""
  for word in "$@"; do line+="$(printf '%q' "$word") "; done
  printf '%s\n' "${line% }" >>"$commands_log"
}
# Runs a command and records it.
recorded() {
  note_command "$@"
  "$@"
}
# Starts a command in the background (the caller reads $!) and records it.
spawn() {
  note_command "$@" "&"
  "$@" &
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local port tries=0
  while :; do
    port=$((10000 + RANDOM % 22000)) # below the ephemeral range
    port_is_free "$port" && { echo "$port"; return; }
    tries=$((tries + 1))
    [ $tries -lt 100 ] || die "no free port found"
  done
}
wait_for_port() {
  local port="$1" pid="$2" what="$3" tries=0
  until ! port_is_free "$port"; do
    kill -0 "$pid" 2>/dev/null || die "$what exited before listening on $port (see $work/*.log)"
    tries=$((tries + 1))
    [ $tries -lt 200 ] || die "$what is not listening on $port after 20 s"
    sleep 0.1
  done
}
stop() {
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  timeout 20 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# A process and its children (nginx: master + worker).
process_tree() {
  echo "$1"
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p {print $1}'
}
# Resident memory in KiB of process trees (one per argument). A reading that cannot be taken (the
# process is gone) stops the run: a 0 in its place would become a fake figure in the report.
# Called as $(...), so die leaves the subshell and the failed assignment stops the script (set -e).
rss_kib() {
  local total=0 root pid rss
  for root in "$@"; do
    for pid in $(process_tree "$root"); do
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || true
      [[ "$rss" =~ ^[0-9]+$ ]] || die "no VmRSS reading for process $pid (of $root); did it exit?"
      total=$((total + rss))
    done
  done
  echo "$total"
}
# CPU time (user + system, in clock ticks) a process tree has used so far. On a busy machine the
# gateway does not get all of CPU 0, so work per CPU-second is the steadier comparison. A missing
# reading stops the run, as in rss_kib.
clock_ticks=$(getconf CLK_TCK)
cpu_ticks() {
  local total=0 root pid ticks
  for root in "$@"; do
    for pid in $(process_tree "$root"); do
      ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || true
      [[ "$ticks" =~ ^[0-9]+$ ]] || die "no CPU time reading for process $pid (of $root); did it exit?"
      total=$((total + ticks))
    done
  done
  echo "$total"
}
# "CPU% per-CPU-second": the gateway's share of CPU 0 since $1 ticks over $2 s, and $3 units of
# work divided by the CPU seconds it took. $gateway_pid may list several processes (a tunnel's).
cpu_usage() {
  local now
  # shellcheck disable=SC2086
  now=$(cpu_ticks $gateway_pid) || exit 1
  awk -v used="$((now - $1))" -v hz="$clock_ticks" -v wall="$2" -v work="$3" \
    'BEGIN {cpu = used / hz; printf "%.0f %.0f", 100 * cpu / wall, (cpu > 0) ? work / cpu : 0}'
}

# ---------------------------------------------------------------------------------------------
# Certificates: one CA (ECDSA P-256), an RSA 2048 server key, an ECDSA P-256 client key, and a
# CRL that revokes a second client certificate.

log "making certificates with moat pki in $work/pki"
pki="$work/pki"
mkdir -p "$pki"
recorded "$moat" pki init-ca --out "$pki/ca" --cn "moat bench CA" >/dev/null
recorded "$moat" pki issue --ca "$pki/ca" --profile server --cn localhost --san dns:localhost --san dns:tunnel.localhost \
  --san ip:127.0.0.1 --key-type rsa-2048 --out "$pki/server" >/dev/null
recorded "$moat" pki issue --ca "$pki/ca" --profile client --cn bench-client --key-type ecdsa-p256 \
  --out "$pki/client" >/dev/null
recorded "$moat" pki issue --ca "$pki/ca" --profile client --cn revoked-client --key-type ecdsa-p256 \
  --out "$pki/revoked" >/dev/null
recorded "$moat" pki revoke --ca "$pki/ca" --cert "$pki/revoked.crt" >/dev/null
recorded "$moat" pki crl --ca "$pki/ca" --out "$pki/crl.pem" >/dev/null
ca="$pki/ca/ca.crt"
crl="$pki/crl.pem"
cat "$pki/server.crt" "$pki/server.key" >"$pki/server-and-key.pem"
chmod 600 "$pki/server-and-key.pem"
head -c 0 /dev/null >"$work/upload.bin"
truncate -s "$stream_bytes" "$work/upload.bin"

# ---------------------------------------------------------------------------------------------
# The upstream, on CPU 1 for the whole run.

upstream_http=$(free_port)
upstream_tcp=$(free_port)
log "upstream on 127.0.0.1:$upstream_http (HTTP) and 127.0.0.1:$upstream_tcp (TCP)"
spawn taskset -c 1 "$loadgen" upstream --http "127.0.0.1:$upstream_http" --tcp "127.0.0.1:$upstream_tcp" \
  >"$work/upstream.log" 2>&1
upstream_pid=$!
pids+=("$upstream_pid")
wait_for_port "$upstream_http" "$upstream_pid" upstream
wait_for_port "$upstream_tcp" "$upstream_pid" upstream

# ---------------------------------------------------------------------------------------------
# Gateway configurations. Every one: the same server certificate, CA and CRL, client
# certificate required, the client's identity (certificate, subject, serial, fingerprint) passed
# to the upstream in headers as moat does, an access log (moat logs every handshake and request),
# no session cache or tickets where it can be turned off.

write_nginx_conf() {
  local port="$1" dir="$work/nginx"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 20000; }
http {
    # One line per request, written in batches as moat writes its audit events (every 5 ms).
    access_log $dir/access.log combined buffer=64k flush=5ms;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream backend {
        server 127.0.0.1:$upstream_http;
        keepalive 512;
    }
    # Scenario 7: the same upstream port, spoken to as h2c (HTTP/2 by prior knowledge).
    upstream grpc_backend {
        server 127.0.0.1:$upstream_http;
        keepalive 512;
    }
    server {
        listen 127.0.0.1:$port ssl http2;
        server_name localhost;
        ssl_certificate $pki/server.crt;
        ssl_certificate_key $pki/server.key;
        ssl_client_certificate $ca;
        ssl_verify_client on;
        ssl_crl $crl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
        client_header_timeout 120s;
        client_max_body_size 0;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Client-Cert \$ssl_client_escaped_cert;
            proxy_set_header X-Client-Subject \$ssl_client_s_dn;
            proxy_set_header X-Client-Serial \$ssl_client_serial;
            proxy_set_header X-Client-Fingerprint \$ssl_client_fingerprint;
            proxy_buffering off;
            # Unbuffered relaying goes through this one buffer (default 4 KiB): one TLS record.
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_request_buffering off;
        }
        location /bench.Echo/ {
            grpc_pass grpc://grpc_backend;
            grpc_set_header X-Client-Cert \$ssl_client_escaped_cert;
            grpc_set_header X-Client-Subject \$ssl_client_s_dn;
            grpc_set_header X-Client-Serial \$ssl_client_serial;
            grpc_set_header X-Client-Fingerprint \$ssl_client_fingerprint;
        }
    }
}
EOF
}

write_haproxy_conf() {
  local port="$1"
  cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    tune.ssl.cachesize 0
    ssl-default-bind-options no-tls-tickets
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    maxconn 8000
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 120s
    timeout http-keep-alive 300s
frontend bench
    bind 127.0.0.1:$port ssl crt $pki/server-and-key.pem ca-file $ca crl-file $crl verify required alpn h2,http/1.1
    http-request set-header X-Client-Cert %[ssl_c_der,base64]
    http-request set-header X-Client-Subject %{+Q}[ssl_c_s_dn]
    http-request set-header X-Client-Serial %[ssl_c_serial,hex]
    http-request set-header X-Client-Fingerprint %[ssl_c_sha1,hex]
    default_backend upstream
backend upstream
    http-reuse always
    server upstream 127.0.0.1:$upstream_http
EOF
}

write_stunnel_conf() {
  local port="$1"
  cat >"$work/stunnel.conf" <<EOF
foreground = yes
pid =
debug = notice
[bench]
accept = 127.0.0.1:$port
connect = 127.0.0.1:$upstream_tcp
cert = $pki/server.crt
key = $pki/server.key
CAfile = $ca
CRLfile = $crl
verifyChain = yes
requireCert = yes
EOF
}

# Starts gateway $1 on a fresh port; sets gateway_pid and gateway_port.
start_gateway() {
  local name="$1"
  gateway_port=$(free_port)
  case "$name" in
    nginx)
      write_nginx_conf "$gateway_port"
      spawn taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx.log" 2>&1
      ;;
    haproxy)
      write_haproxy_conf "$gateway_port"
      spawn taskset -c 0 haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1
      ;;
    moat)
      # One access log per request, as nginx and haproxy write: moat's audit stream (to a file),
      # with the human log at warn so the per-request info line does not duplicate it.
      spawn env TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$moat" http "127.0.0.1:$upstream_http" --inspect off \
        --listen "127.0.0.1:$gateway_port" --domain localhost --crt "$pki/server.crt" --key "$pki/server.key" \
        --mutual-tls-cas "$ca" --crl "$crl" --request-header-timeout 120s --idle-timeout 300s \
        --audit-log "$work/moat-audit.jsonl" >"$work/moat.log" 2>&1
      ;;
    stunnel)
      write_stunnel_conf "$gateway_port"
      spawn taskset -c 0 "$stunnel_bin" "$work/stunnel.conf" >"$work/stunnel.log" 2>&1
      ;;
    moat-tls)
      spawn env TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$moat" tls "127.0.0.1:$upstream_tcp" \
        --listen "127.0.0.1:$gateway_port" --domain localhost --crt "$pki/server.crt" --key "$pki/server.key" \
        --mutual-tls-cas "$ca" --crl "$crl" --request-header-timeout 120s --idle-timeout 300s \
        --audit-log "$work/moat-tls-audit.jsonl" >"$work/moat-tls.log" 2>&1
      ;;
  esac
  gateway_pid=$!
  pids+=("$gateway_pid")
  wait_for_port "$gateway_port" "$gateway_pid" "$name"
  case "$name" in
    moat*)
      # One core means one serving thread: with TOKIO_WORKER_THREADS=1 moat runs tokio's
      # current-thread runtime, so no tokio worker thread may exist.
      moat_workers=$(cat /proc/"$gateway_pid"/task/*/comm 2>/dev/null | grep -c -x -e tokio-rt-worker -e tokio-runtime-w || true)
      [ "$moat_workers" = 0 ] || die "$name runs $moat_workers tokio worker threads, expected its current-thread runtime (0)"
      ;;
  esac
}

# The name clients ask for (SNI, Host); the tunnel scenarios use one an edge can publish.
server_name=localhost
tls_flags() {
  echo --connect "127.0.0.1:$gateway_port" --server-name "$server_name" --ca "$ca" --cert "$pki/client.crt" --key "$pki/client.key"
}
# curl as the benchmark client: HTTP/1.1, the client certificate, the gateway as "localhost".
curl_mtls() {
  echo curl -sS --http1.1 --cacert "$ca" --cert "$pki/client.crt" --key "$pki/client.key" \
    --resolve "$server_name:$gateway_port:127.0.0.1"
}

# Checks the gateway really demands the client certificate: no certificate, no 200.
check_mtls() {
  local name="$1" status
  status=$(timeout 10 curl -s --http1.1 -o /dev/null -w '%{http_code}' --cacert "$ca" \
    --resolve "$server_name:$gateway_port:127.0.0.1" "https://$server_name:$gateway_port/small" || true)
  [ "$status" != 200 ] || die "$name answered 200 to a client without a certificate"
  # shellcheck disable=SC2046
  status=$(timeout 10 $(curl_mtls) -o /dev/null -w '%{http_code}' "https://$server_name:$gateway_port/small")
  [ "$status" = 200 ] || die "$name answered $status to the benchmark client (see $work/$name.log)"
}

declare -A result
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# Runs the load generator; stores rps/p50/p99 under result[scenario,gateway,*].
load() {
  local scenario="$1" name="$2" line ticks usage
  shift 2
  # shellcheck disable=SC2086
  ticks=$(cpu_ticks $gateway_pid)
  # shellcheck disable=SC2046
  line=$(recorded timeout $((duration_secs + 60)) taskset -c 1 "$loadgen" http $(tls_flags) \
    --duration "$duration" "$@" 2>"$work/loadgen-$scenario-$name.err") ||
    die "load generator failed on $name, scenario $scenario: $(cat "$work/loadgen-$scenario-$name.err")"
  log "  $scenario $name: $line"
  result[$scenario,$name,rps]=$(field rps "$line")
  result[$scenario,$name,p50]=$(field p50_ms "$line")
  result[$scenario,$name,p99]=$(field p99_ms "$line")
  result[$scenario,$name,errors]=$(field errors "$line")
  usage=$(cpu_usage "$ticks" "$(field seconds "$line")" "$(field requests "$line")")
  result[$scenario,$name,cpu]=${usage% *}
  result[$scenario,$name,per_cpu]=${usage#* }
}

# Copies the median round (by rate) of scenario $1 on gateway $2 into result[$1,$2,*], and lists
# every round's rate in result[$1,$2,rounds].
keep_median_round() {
  local scenario="$1" name="$2" round median rates=""
  median=$(for round in $(seq "$rounds"); do
    echo "${result[$scenario.$round,$name,rps]} $round"
  done | sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2) {print $2}')
  for key in rps p50 p99 errors cpu per_cpu; do
    result[$scenario,$name,$key]=${result[$scenario.$median,$name,$key]}
  done
  for round in $(seq "$rounds"); do
    rates+="${rates:+ / }${result[$scenario.$round,$name,rps]}"
  done
  result[$scenario,$name,rounds]=$rates
}

# With --perf, samples moat (gateway_pid) while a scenario runs; sets perf_pid.
perf_start() {
  perf_pid=""
  if [ "$perf_profile" = 1 ] && command -v perf >/dev/null; then
    perf record -F 999 -g -p "$gateway_pid" -o "$work/perf-$1.data" -- sleep $((duration_secs - 1)) \
      >/dev/null 2>&1 &
    perf_pid=$!
  fi
}
perf_finish() {
  local label="$1"
  [ -n "$perf_pid" ] || return 0
  wait "$perf_pid" || true
  {
    echo "By binary:"
    perf report -i "$work/perf-$label.data" --stdio --no-children -g none --sort dso --percent-limit 1 \
      2>/dev/null | grep '^ *[0-9.]*%' | sed 's/ *$//'
    echo "Top symbols (self time):"
    perf report -i "$work/perf-$label.data" --stdio --no-children -g none --sort dso,symbol \
      --percent-limit 0.8 2>/dev/null | grep '^ *[0-9.]*%' | sed 's/ *$//' | cut -c1-140 | head -30
  } >"$work/perf-$label.txt" || true
}

# Downloads and uploads $stream_bytes through the selected gateway ($gateway_port, $gateway_pid)
# with curl; stores MB/s and MB per CPU-second under result[$2,$1] and result[$3,$1].
stream_through() {
  local name="$1" down="$2" up="$3" ticks answer usage sent speed seconds
  # shellcheck disable=SC2086
  ticks=$(cpu_ticks $gateway_pid)
  # --fail: an error status is a failed download, not a fast one; the size check catches a
  # response cut short.
  # shellcheck disable=SC2046
  answer=$(recorded timeout 300 taskset -c 1 $(curl_mtls) --fail -o /dev/null \
    -w '%{size_download} %{speed_download} %{time_total}' \
    "https://$server_name:$gateway_port/download/$stream_bytes") || die "$name: download failed"
  [ "${answer%% *}" = "$stream_bytes" ] ||
    die "$name: downloaded ${answer%% *} bytes, asked for $stream_bytes"
  answer=${answer#* }
  result[$down,$name]=$(awk -v s="${answer% *}" 'BEGIN {printf "%.0f", s / 1e6}')
  usage=$(cpu_usage "$ticks" "${answer#* }" $((stream_bytes / 1000000)))
  result[$down,$name,per_cpu]=${usage#* }
  # shellcheck disable=SC2086
  ticks=$(cpu_ticks $gateway_pid)
  # shellcheck disable=SC2046
  answer=$(recorded timeout 300 taskset -c 1 $(curl_mtls) --fail -H 'Expect:' -T "$work/upload.bin" \
    -w ' %{size_upload} %{speed_upload} %{time_total}' "https://$server_name:$gateway_port/upload") ||
    die "$name: upload failed"
  [ "$(field received "${answer/received /received=}")" = "$stream_bytes" ] ||
    die "$name: upstream did not receive the whole upload: $answer"
  read -r sent speed seconds <<<"$(tail -n 1 <<<"$answer")"
  [ "$sent" = "$stream_bytes" ] || die "$name: curl sent $sent bytes, asked for $stream_bytes"
  result[$up,$name]=$(awk -v s="$speed" 'BEGIN {printf "%.0f", s / 1e6}')
  usage=$(cpu_usage "$ticks" "$seconds" $((stream_bytes / 1000000)))
  result[$up,$name,per_cpu]=${usage#* }
  log "  streaming $name: download ${result[$down,$name]} MB/s, upload ${result[$up,$name]} MB/s"
}

# The processes of a contender on the public side (the gateway, an edge, rathole's server) and on
# the private side (an agent, rathole's client); a plain gateway is all public.
declare -A contender_public contender_private
# Holds $idle_connections idle connections to the selected gateway with `loadgen hold` (the flags
# after $2 go to it) and stores RSS before and while holding, and KiB per connection, under
# result[$2,$1,public|private,before|after|per] (public also under result[$2,$1,before|after|per]).
hold_idle() {
  local name="$1" key="$2" holder tries held side before_public before_private after
  shift 2
  local public="${contender_public[$name]:-$gateway_pid}" private="${contender_private[$name]:-}"
  # shellcheck disable=SC2086
  before_public=$(rss_kib $public)
  # shellcheck disable=SC2086
  [ -z "$private" ] || before_private=$(rss_kib $private)
  # shellcheck disable=SC2046
  spawn timeout 300 taskset -c 1 "$loadgen" hold $(tls_flags) --connections "$idle_connections" \
    --hold 300s "$@" >"$work/hold-$key-$name.out" 2>"$work/hold-$key-$name.err"
  holder=$!
  pids+=("$holder")
  tries=0
  until grep -q '^held=' "$work/hold-$key-$name.out"; do
    kill -0 "$holder" 2>/dev/null || die "$name: holding connections failed: $(cat "$work/hold-$key-$name.err")"
    tries=$((tries + 1))
    [ $tries -lt 1200 ] || die "$name: $idle_connections connections not open after 120 s"
    sleep 0.1
  done
  held=$(field held "$(cat "$work/hold-$key-$name.out")")
  [ "$held" = "$idle_connections" ] || die "$name: only $held of $idle_connections connections open: $(cat "$work/hold-$key-$name.err")"
  # The gateway verifies the client's last flight after the client is done; let it catch up.
  sleep 2
  for side in public private; do
    [ "$side" = public ] || [ -n "$private" ] || continue
    local members=$public before=$before_public
    [ "$side" = public ] || { members=$private; before=$before_private; }
    # shellcheck disable=SC2086
    after=$(rss_kib $members)
    result[$key,$name,$side,before]=$before
    result[$key,$name,$side,after]=$after
    result[$key,$name,$side,per]=$(awk -v a="$after" -v b="$before" -v n="$idle_connections" \
      'BEGIN {printf "%.1f", (a - b) / n}')
    log "  $key $name ($side): $before KiB -> $after KiB with $idle_connections idle connections"
  done
  for side in before after per; do result[$key,$name,$side]=${result[$key,$name,public,$side]}; done
  stop "$holder"
}

http_gateways=(nginx haproxy moat)
grpc_gateways=(nginx moat)
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck source=bench/tunnel.sh
. "$repo/bench/tunnel.sh"
# shellcheck source=bench/crosscheck.sh
. "$repo/bench/crosscheck.sh"

run_gateway_scenarios() {
# Scenarios 1-3: every gateway up at once on CPU 0 (only the one under load uses it), the rounds
# alternating between them.
declare -A port_of pid_of
for name in "${http_gateways[@]}"; do
  start_gateway "$name"
  check_mtls "$name"
  port_of[$name]=$gateway_port
  pid_of[$name]=$gateway_pid
done
scenario_flags() {
  case "$1" in
    keepalive) echo --connections 64 ;;
    handshake) echo --connections 16 --new-connection-per-request ;;
    http2) echo --connections 8 --http2 --streams 32 ;;
    grpc) echo --connections 8 --http2 --streams 32 --grpc --path /bench.Echo/Unary ;;
  esac
}
# Scenario 7 (gRPC) compares moat with nginx's grpc_pass only.
gateways_for() {
  case "$1" in
    grpc) echo "${grpc_gateways[@]}" ;;
    *) echo "${http_gateways[@]}" ;;
  esac
}
log "scenarios 1-3 and 7: $rounds round(s) of $duration per gateway, alternating"
for scenario in keepalive handshake http2 grpc; do
  for round in $(seq "$rounds"); do
    for name in $(gateways_for "$scenario"); do
      gateway_port=${port_of[$name]}
      gateway_pid=${pid_of[$name]}
      # shellcheck disable=SC2046
      load "$scenario.$round" "$name" $(scenario_flags "$scenario")
    done
  done
  for name in $(gateways_for "$scenario"); do
    keep_median_round "$scenario" "$name"
  done
  # With --perf, one more round of moat under perf, outside the measured ones.
  if [ "$perf_profile" = 1 ] && { [ "$scenario" = keepalive ] || [ "$scenario" = handshake ]; }; then
    gateway_port=${port_of[moat]}
    gateway_pid=${pid_of[moat]}
    perf_start "$scenario"
    # shellcheck disable=SC2046
    load "$scenario.perf" moat $(scenario_flags "$scenario")
    perf_finish "$scenario"
  fi
done
run_crosscheck
for name in "${http_gateways[@]}"; do
  stop "${pid_of[$name]}"
done

for name in "${http_gateways[@]}"; do
  log "$name: scenarios 4-5"
  start_gateway "$name"
  check_mtls "$name"

  stream_through "$name" download upload
  stop "$gateway_pid"

  # Memory on a fresh process: one request to warm it up, then the idle connections, as a
  # handshake left them and, on another fresh process, after one request each. moat without
  # its glibc tuning here: the 4 MiB heap-top pad it sets would absorb the first 4 MiB of
  # growth and understate the memory per connection.
  export MOAT_MEMCPY_TUNING=off
  start_gateway "$name"
  check_mtls "$name"
  sleep 1
  hold_idle "$name" memory
  stop "$gateway_pid"
  start_gateway "$name"
  check_mtls "$name"
  sleep 1
  hold_idle "$name" memory-used --request-first /small
  stop "$gateway_pid"
  unset MOAT_MEMCPY_TUNING
done

for name in stunnel moat-tls; do
  log "$name: TCP stream"
  start_gateway "$name"
  for direction in upload download; do
    ticks=$(cpu_ticks "$gateway_pid")
    # shellcheck disable=SC2046
    line=$(recorded timeout 300 taskset -c 1 "$loadgen" tcp $(tls_flags) --bytes "$stream_bytes" \
      --direction "$direction" 2>"$work/tcp-$name.err") ||
      die "$name: TCP $direction failed: $(cat "$work/tcp-$name.err")"
    result[tcp-$direction,$name]=$(awk -v s="$(field mbps "$line")" 'BEGIN {printf "%.0f", s}')
    usage=$(cpu_usage "$ticks" "$(field seconds "$line")" $((stream_bytes / 1000000)))
    result[tcp-$direction,$name,per_cpu]=${usage#* }
    log "  tcp $direction $name: $line"
  done
  stop "$gateway_pid"
done
}

[ "$part" = tunnel ] || run_gateway_scenarios
[ "$part" = gateways ] || run_tunnel_scenarios
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
# The report.

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f×", a / b; else print "n/a"}'; }
# meets VALUE OP THRESHOLD → "met" or "**missed**"
meets() { awk -v a="$1" -v t="$3" -v op="$2" 'BEGIN {ok = (op == ">=") ? (a >= t) : (a <= t); print ok ? "met" : "**missed**"}'; }
version_of() { "$@" 2>&1 | head -n 1; }

bytes_label() { awk -v b="$1" 'BEGIN {if (b >= 1073741824) printf "%g GiB", b / 1073741824; else printf "%g MiB", b / 1048576}'; }

# Scenarios 1-6's sections of the report.
gateway_report() {
  echo "## Requests (scenarios 1–3 and 7)"
  echo
  echo "$rounds round(s) of $duration per gateway and scenario, alternating between the gateways; each row is the gateway's median round (by req/s), and *rounds* lists every round's req/s."
  echo
  echo "| Scenario | Gateway | req/s | p50 ms | p99 ms | errors | gateway CPU | req per CPU-s | req/s vs nginx | per CPU-s vs nginx | rounds (req/s) |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for scenario in keepalive handshake http2 grpc; do
    case $scenario in
      keepalive) label="1. keep-alive HTTP/1.1, 64 connections" ;;
      handshake) label="2. new full mTLS handshake per request, 16 connections" ;;
      http2) label="3. HTTP/2, 8 connections × 32 streams" ;;
      grpc) label="7. gRPC unary calls, 8 connections × 32 streams (nginx: grpc_pass)" ;;
    esac
    for name in $(gateways_for "$scenario"); do
      echo "| $label | $name | ${result[$scenario,$name,rps]} | ${result[$scenario,$name,p50]} | ${result[$scenario,$name,p99]} | ${result[$scenario,$name,errors]} | ${result[$scenario,$name,cpu]} % | ${result[$scenario,$name,per_cpu]} | $(ratio "${result[$scenario,$name,rps]}" "${result[$scenario,nginx,rps]}") | $(ratio "${result[$scenario,$name,per_cpu]}" "${result[$scenario,nginx,per_cpu]}") | ${result[$scenario,$name,rounds]} |"
    done
  done
  crosscheck_report
  echo
  echo "## Streaming (scenario 4): one $(bytes_label "$stream_bytes") transfer each way through the gateway, curl over HTTP/1.1"
  echo
  echo "| Direction | Gateway | MB/s | MB per CPU-s | MB/s vs nginx | per CPU-s vs nginx |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  for direction in download upload; do
    for name in "${http_gateways[@]}"; do
      echo "| $direction | $name | ${result[$direction,$name]} | ${result[$direction,$name,per_cpu]} | $(ratio "${result[$direction,$name]}" "${result[$direction,nginx]}") | $(ratio "${result[$direction,$name,per_cpu]}" "${result[$direction,nginx,per_cpu]}") |"
    done
  done
  echo
  echo "## Memory (scenario 5): $idle_connections idle mTLS connections held open"
  echo
  echo "Each state on a fresh gateway process warmed by one request: *after the handshake* (the client never"
  echo "sends a request) and *after one request* (one GET answered on each connection, which then stays open"
  echo "as a keep-alive client leaves it). moat runs with \`MOAT_MEMCPY_TUNING=off\` here: its glibc tuning keeps"
  echo "4 MiB at the top of the heap, which would absorb the first 4 MiB of growth and understate the figure."
  echo
  echo "| Gateway | after the handshake: RSS before → holding (KiB) | KiB per connection | vs nginx | after one request: RSS before → holding (KiB) | KiB per connection | vs nginx |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in "${http_gateways[@]}"; do
    echo "| $name | ${result[memory,$name,before]} → ${result[memory,$name,after]} | ${result[memory,$name,per]} | $(ratio "${result[memory,$name,per]}" "${result[memory,nginx,per]}") | ${result[memory-used,$name,before]} → ${result[memory-used,$name,after]} | ${result[memory-used,$name,per]} | $(ratio "${result[memory-used,$name,per]}" "${result[memory-used,nginx,per]}") |"
  done
  echo
  echo "## TCP stream (scenario 6): \`moat tls\` against stunnel, one $(bytes_label "$stream_bytes") stream each way"
  echo
  echo "| Direction | Gateway | MB/s | MB per CPU-s | MB/s vs stunnel | per CPU-s vs stunnel |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  for direction in upload download; do
    for name in stunnel moat-tls; do
      echo "| $direction | $name | ${result[tcp-$direction,$name]} | ${result[tcp-$direction,$name,per_cpu]} | $(ratio "${result[tcp-$direction,$name]}" "${result[tcp-$direction,stunnel]}") | $(ratio "${result[tcp-$direction,$name,per_cpu]}" "${result[tcp-$direction,stunnel,per_cpu]}") |"
    done
  done
  echo
  echo "## Targets (issue 4)"
  echo
  echo "| Target | moat / reference, throughput | | moat / reference, per CPU-s | |"
  echo "| --- | ---: | --- | ---: | --- |"
  # target LABEL THRESHOLD MOAT REFERENCE MOAT_PER_CPU REFERENCE_PER_CPU
  target() {
    local r p
    r=$(awk -v a="$3" -v b="$4" 'BEGIN {print (b > 0) ? a / b : 0}')
    p=$(awk -v a="$5" -v b="$6" 'BEGIN {print (b > 0) ? a / b : 0}')
    echo "| $1 | $(ratio "$3" "$4") | $(meets "$r" ">=" "$2") | $(ratio "$5" "$6") | $(meets "$p" ">=" "$2") |"
  }
  target "keep-alive req/s ≥ 1.0× nginx" 1.0 "${result[keepalive,moat,rps]}" "${result[keepalive,nginx,rps]}" "${result[keepalive,moat,per_cpu]}" "${result[keepalive,nginx,per_cpu]}"
  echo "| keep-alive p99 ≤ nginx's | ${result[keepalive,moat,p99]} ms vs ${result[keepalive,nginx,p99]} ms | $(meets "${result[keepalive,moat,p99]}" "<=" "${result[keepalive,nginx,p99]}") | | |"
  target "new mTLS handshakes/s ≥ 1.5× nginx" 1.5 "${result[handshake,moat,rps]}" "${result[handshake,nginx,rps]}" "${result[handshake,moat,per_cpu]}" "${result[handshake,nginx,per_cpu]}"
  target "HTTP/2 req/s ≥ 1.0× nginx" 1.0 "${result[http2,moat,rps]}" "${result[http2,nginx,rps]}" "${result[http2,moat,per_cpu]}" "${result[http2,nginx,per_cpu]}"
  target "gRPC unary calls/s ≥ 1.0× nginx grpc_pass (issue 14)" 1.0 "${result[grpc,moat,rps]}" "${result[grpc,nginx,rps]}" "${result[grpc,moat,per_cpu]}" "${result[grpc,nginx,per_cpu]}"
  for direction in download upload; do
    target "streaming $direction ≥ 1.0× nginx" 1.0 "${result[$direction,moat]}" "${result[$direction,nginx]}" "${result[$direction,moat,per_cpu]}" "${result[$direction,nginx,per_cpu]}"
  done
  for direction in upload download; do
    target "TCP $direction ≥ 1.0× stunnel" 1.0 "${result[tcp-$direction,moat-tls]}" "${result[tcp-$direction,stunnel]}" "${result[tcp-$direction,moat-tls,per_cpu]}" "${result[tcp-$direction,stunnel,per_cpu]}"
  done
  echo "| memory per idle connection ≤ nginx's, after the handshake | ${result[memory,moat,per]} KiB vs ${result[memory,nginx,per]} KiB | $(meets "${result[memory,moat,per]}" "<=" "${result[memory,nginx,per]}") | | |"
  echo "| memory per idle connection ≤ nginx's, after one request | ${result[memory-used,moat,per]} KiB vs ${result[memory-used,nginx,per]} KiB | $(meets "${result[memory-used,moat,per]}" "<=" "${result[memory-used,nginx,per]}") | | |"
  echo "| memory per idle connection ≤ 12 KiB, after one request (goal) | ${result[memory-used,moat,per]} KiB | $(meets "${result[memory-used,moat,per]}" "<=" 12) | | |"
  for label in keepalive handshake; do
    if [ -s "$work/perf-$label.txt" ]; then
      echo
      echo "## Where moat spends CPU 0 in the $label scenario (\`perf record -g -p MOAT\`, \`perf report --no-children\`)"
      echo
      echo '```'
      sed 's/[[:space:]]*$//' "$work/perf-$label.txt"
      echo '```'
    fi
  done
}

{
  mode="full"
  [ "$quick" = 1 ] && mode="quick (smoke: ${duration} per scenario, $(bytes_label "$stream_bytes") transfers, $idle_connections idle connections — not for comparison)"
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\`; rerun it to reproduce. Mode: $mode."
  echo
  echo "- Date: $started_at"
  echo "- Machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
  echo "- Load average (1, 5, 15 min) before: $load_before; after: $load_after. Other work on the machine skews every figure; compare ratios from one run, not figures across runs."
  echo "- Placement: each gateway pinned to CPU 0 and the only one under load there (\`taskset -c 0\`; nginx 1 worker, haproxy \`nbthread 1\`, moat \`TOKIO_WORKER_THREADS=1\`, checked: one serving thread, tokio's current-thread runtime); upstream, curl and load generator on CPU 1. Loopback only.$boosted"
  echo "- TLS: TLS 1.3 (X25519, the client's only group), server key RSA 2048, client key ECDSA P-256, CA ECDSA P-256, CRL checked; client resumption off, so every new connection is a full mTLS handshake."
  echo "- Versions: $(version_of "$moat" --version); $(version_of nginx -v); $(version_of haproxy -v); $(version_of "$stunnel_bin" -version | sed 's/^Initializing.*//')$("$stunnel_bin" -version 2>&1 | grep -m1 '^stunnel'); $(version_of curl --version | cut -d' ' -f1-2); $(version_of openssl version); load generator: bench/loadgen (tokio + rustls + hyper, one thread)"
  echo
  echo "Throughput is what the client saw. *Per CPU-s* divides the work by the CPU time the gateway"
  echo "process actually used (from /proc), which stays meaningful when the machine is busy or the"
  echo "load generator, not the gateway, is the bottleneck (gateway CPU below ~95 %)."
  echo
  [ "$part" = tunnel ] || gateway_report
  [ "$part" = gateways ] || tunnel_report
  echo
  echo "## Exact commands"
  echo
  echo "In order, as \`bench/run.sh\` ran them; \`\$WORK\` is its temporary directory, \`\$TARGET\` the cargo target directory."
  echo
  echo '```sh'
  sed -e "s#$work#\$WORK#g" -e "s#$target_dir#\$TARGET#g" -e "s#$repo/##g" "$commands_log"
  echo '```'
  for config in nginx/nginx.conf haproxy.cfg stunnel.conf rathole-front/server.toml rathole-front/client.toml; do
    [ -f "$work/$config" ] || continue
    echo
    echo "<details><summary>\$WORK/$config</summary>"
    echo
    echo '```'
    sed "s#$work#\$WORK#g" "$work/$config"
    echo '```'
    echo
    echo "</details>"
  done
} >"$output"
log "wrote $output"
