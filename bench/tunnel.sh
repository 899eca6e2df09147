# shellcheck shell=bash
# The tunnel scenarios (issue 13), sourced by bench/run.sh after its gateway scenarios: moat's
# edge + agent (TLS ended at the edge, or at the agent) beside a direct `moat http` and rathole,
# with the same certificates, upstream, load generator and audit logging. Uses run.sh's helpers
# (spawn, recorded, load, cpu_ticks, rss_kib, check_mtls, ...) and fills result[...] for its report.
#
# Contenders, each its own set of processes, all on CPU 0 (the client and the upstream on CPU 1):
#   direct         client → moat http → upstream
#   tunnel-edge    client → moat edge (mTLS, rules, audit) ⇒ agent → upstream
#   tunnel-agent   client → moat edge (reads SNI, relays) ⇒ agent (mTLS, rules, audit) → upstream
#   rathole-front  client → moat http (mTLS, audit) → rathole server ⇒ rathole client → upstream
#   rathole-behind client → rathole server ⇒ rathole client → moat http (mTLS, audit) → upstream
# ⇒ is one long-lived TLS connection (moat: TLS 1.3 with mutual certificates, HTTP/2 streams;
# rathole: its `tls` transport, a TLS connection per data channel). rathole-front does the
# cryptographic work of tunnel-edge, rathole-behind that of tunnel-agent.

tunnel_contenders=(direct tunnel-edge tunnel-agent rathole-front rathole-behind)
rathole_version=0.5.0

# rathole from crates.io into the target directory, once. Not --locked: its lock file pins
# time 0.3.29, which no longer builds with current Rust; cargo resolves the newest compatible
# versions instead (the README of bench says so too).
install_rathole() {
  rathole="$target_dir/rathole/bin/rathole"
  if [ ! -x "$rathole" ] || ! "$rathole" --version 2>/dev/null | grep -q "Build Version: *$rathole_version"; then
    log "installing rathole $rathole_version into $target_dir/rathole (cargo install, a few minutes)"
    timeout 2400 cargo install rathole --version "$rathole_version" --root "$target_dir/rathole" --force --quiet ||
      die "cargo install rathole $rathole_version failed"
  fi
}

# moat's process settings for every contender: one serving thread, warnings only on the human log.
moat_env=(env TOKIO_WORKER_THREADS=1 RUST_LOG=warn)
on_cpu0=(taskset -c 0)
# The flags every mTLS-terminating moat gets (the same as scenario 1's moat), minus the listener.
moat_mtls_flags() {
  echo --domain "$server_name" --crt "$pki/server.crt" --key "$pki/server.key" --mutual-tls-cas "$ca" \
    --crl "$crl" --request-header-timeout 120s --idle-timeout 300s
}

# Starts a background process of contender $1 (the rest: the command), logging to $work/$1-N.log;
# adds its pid to contender_pids[$1].
declare -A contender_pids contender_port
contender_spawn() {
  local name="$1" count
  shift
  count=$(wc -w <<<"${contender_pids[$name]:-}")
  spawn "$@" >"$work/$name-$count.log" 2>&1
  pids+=("$!")
  contender_pids[$name]="${contender_pids[$name]:-} $!"
  last_pid=$!
}

# moat edge in $1's MOAT_HOME with an audit log; sets edge_port and agent_port.
start_edge() {
  local name="$1" home="$work/$1/home"
  mkdir -p "$home"
  edge_port=$(free_port)
  agent_port=$(free_port)
  contender_spawn "$name" "${moat_env[@]}" MOAT_HOME="$home" "${on_cpu0[@]}" "$moat" edge --listen "127.0.0.1:$edge_port" \
    --agent-listen "127.0.0.1:$agent_port" --agent-name localhost --admin-listen off \
    --audit-log "$work/$name/edge-audit.jsonl"
  contender_public[$name]=$last_pid
  wait_for_port "$agent_port" "$last_pid" "$name edge"
  wait_for_port "$edge_port" "$last_pid" "$name edge"
  MOAT_HOME="$home" recorded "$moat" edge token --grant "$server_name" >"$work/$name/token"
  MOAT_HOME="$home" recorded "$moat" agent join --token-file "$work/$name/token" >/dev/null
}

# A rathole server and client with a TLS transport between them, forwarding $2 → 127.0.0.1:$3;
# the server gets the bench's server certificate as PKCS#12, the client trusts the bench CA.
start_rathole() {
  local name="$1" public="$2" local_port="$3" dir="$work/$1" control
  control=$(free_port)
  mkdir -p "$dir"
  [ -s "$pki/rathole.pfx" ] || {
    head -c 18 /dev/urandom | base64 >"$pki/rathole-password"
    recorded "$moat" pki p12 --cert "$pki/server.crt" --key "$pki/server.key" --out "$pki/rathole.pfx" \
      --password-file "$pki/rathole-password" >/dev/null
  }
  cat >"$dir/server.toml" <<EOF
[server]
bind_addr = "127.0.0.1:$control"
[server.transport]
type = "tls"
[server.transport.tls]
pkcs12 = "$pki/rathole.pfx"
pkcs12_password = "$(cat "$pki/rathole-password")"
[server.services.bench]
token = "bench-token"
bind_addr = "127.0.0.1:$public"
EOF
  cat >"$dir/client.toml" <<EOF
[client]
remote_addr = "localhost:$control"
[client.transport]
type = "tls"
[client.transport.tls]
trusted_root = "$ca"
hostname = "localhost"
[client.services.bench]
token = "bench-token"
local_addr = "127.0.0.1:$local_port"
EOF
  contender_spawn "$name" "${moat_env[@]}" "${on_cpu0[@]}" "$rathole" --server "$dir/server.toml"
  rathole_server=$last_pid
  wait_for_port "$control" "$last_pid" "$name rathole server"
  contender_spawn "$name" "${moat_env[@]}" "${on_cpu0[@]}" "$rathole" --client "$dir/client.toml"
  rathole_client=$last_pid
  wait_for_port "$public" "$rathole_server" "$name rathole server"
}

# Starts contender $1's processes; sets contender_port (where clients connect), contender_public
# (the pids on the public side: edge, rathole server, moat in front of it) and contender_private
# (the agent side).
start_contender() {
  local name="$1" port upstream_side
  contender_pids[$name]=""
  mkdir -p "$work/$name"
  case "$name" in
    direct)
      port=$(free_port)
      # shellcheck disable=SC2046
      contender_spawn "$name" "${moat_env[@]}" "${on_cpu0[@]}" "$moat" http "127.0.0.1:$upstream_http" --inspect off --listen "127.0.0.1:$port" \
        $(moat_mtls_flags) --audit-log "$work/$name/audit.jsonl"
      contender_public[$name]=$last_pid
      contender_private[$name]=""
      wait_for_port "$port" "$last_pid" "$name"
      ;;
    tunnel-edge | tunnel-agent)
      start_edge "$name"
      port=$edge_port
      local where=edge audit=()
      [ "$name" = tunnel-agent ] && where=agent && audit=(--audit-log "$work/$name/agent-audit.jsonl")
      # shellcheck disable=SC2046
      contender_spawn "$name" "${moat_env[@]}" MOAT_HOME="$work/$name/home" "${on_cpu0[@]}" "$moat" http "127.0.0.1:$upstream_http" --inspect off \
        --edge "localhost:$agent_port" --terminate-at "$where" $(moat_mtls_flags) "${audit[@]}"
      contender_private[$name]=$last_pid
      ;;
    rathole-front)
      port=$(free_port)
      upstream_side=$(free_port)
      start_rathole "$name" "$upstream_side" "$upstream_http"
      # shellcheck disable=SC2046
      contender_spawn "$name" "${moat_env[@]}" "${on_cpu0[@]}" "$moat" http "127.0.0.1:$upstream_side" --inspect off --listen "127.0.0.1:$port" \
        $(moat_mtls_flags) --audit-log "$work/$name/audit.jsonl"
      contender_public[$name]="$last_pid $rathole_server"
      contender_private[$name]=$rathole_client
      wait_for_port "$port" "$last_pid" "$name moat"
      ;;
    rathole-behind)
      port=$(free_port)
      upstream_side=$(free_port)
      # shellcheck disable=SC2046
      contender_spawn "$name" "${moat_env[@]}" "${on_cpu0[@]}" "$moat" http "127.0.0.1:$upstream_http" --inspect off --listen "127.0.0.1:$upstream_side" \
        $(moat_mtls_flags) --audit-log "$work/$name/audit.jsonl"
      local behind=$last_pid
      wait_for_port "$upstream_side" "$behind" "$name moat"
      start_rathole "$name" "$port" "$upstream_side"
      contender_public[$name]=$rathole_server
      contender_private[$name]="$rathole_client $behind"
      ;;
  esac
  contender_port[$name]=$port
  gateway_port=$port
  gateway_pid="${contender_pids[$name]}"
  # The agent publishes (and rathole's client connects) a moment after starting: wait for the
  # first answer before checking that a certificate is required.
  local tries=0 status
  # shellcheck disable=SC2046
  until status=$(timeout 10 $(curl_mtls) -o /dev/null -w '%{http_code}' "https://$server_name:$port/small" 2>/dev/null) &&
    [ "$status" = 200 ]; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || die "$name does not answer 200 after 20 s (see $work/$name-*.log)"
    sleep 0.2
  done
  check_mtls "$name"
}

stop_contender() {
  local pid
  for pid in ${contender_pids[$1]}; do stop "$pid"; done
}

# Selects contender $1 for run.sh's load/cpu helpers.
select_contender() {
  gateway_port=${contender_port[$1]}
  gateway_pid="${contender_pids[$1]}"
}

tunnel_scenario_flags() {
  case "$1" in
    t-keepalive) echo --connections 64 ;;
    t-handshake) echo --connections 16 --new-connection-per-request ;;
    t-latency) echo --connections 16 --rate "$fixed_rate" ;;
  esac
}

run_tunnel_scenarios() {
  install_rathole
  # An edge publishes names, not "localhost" (an agent's default domain asks it for one).
  server_name=tunnel.localhost
  fixed_rate=1000
  tunnel_idle=2000
  [ "$quick" = 1 ] && tunnel_idle=500
  log "tunnel scenarios: ${tunnel_contenders[*]}"
  for name in "${tunnel_contenders[@]}"; do start_contender "$name"; done

  # (b), (c), (e): rounds alternating between the contenders, the median round kept.
  for scenario in t-keepalive t-handshake t-latency; do
    for round in $(seq "$rounds"); do
      for name in "${tunnel_contenders[@]}"; do
        select_contender "$name"
        # shellcheck disable=SC2046
        load "$scenario.$round" "$name" $(tunnel_scenario_flags "$scenario")
      done
    done
    for name in "${tunnel_contenders[@]}"; do keep_median_round "$scenario" "$name"; done
  done
  # The fixed-rate rounds are ranked by p99, not by the rate they were all given.
  for name in "${tunnel_contenders[@]}"; do
    median=$(for round in $(seq "$rounds"); do
      echo "${result[t-latency.$round,$name,p99]} $round"
    done | sort -n | awk -v n="$rounds" 'NR == int((n + 1) / 2) {print $2}')
    for key in rps p50 p99 errors cpu per_cpu; do
      result[t-latency,$name,$key]=${result[t-latency.$median,$name,$key]}
    done
    result[t-latency,$name,rounds]=$(for round in $(seq "$rounds"); do
      printf '%s' "${result[t-latency.$round,$name,p50]}/${result[t-latency.$round,$name,p99]} "
    done)
  done

  # (a): one stream each way per contender.
  for name in "${tunnel_contenders[@]}"; do
    select_contender "$name"
    stream_through "$name" t-download t-upload
  done
  for name in "${tunnel_contenders[@]}"; do stop_contender "$name"; done

  # (d): on fresh processes, idle connections after one request each, one contender at a time;
  # moat without its glibc tuning, whose 4 MiB heap-top pad would hide the first 4 MiB of growth.
  export MOAT_MEMCPY_TUNING=off
  for name in "${tunnel_contenders[@]}"; do
    start_contender "$name"
    sleep 1
    idle_connections=$tunnel_idle hold_idle "$name" t-memory --request-first /small
    stop_contender "$name"
  done
  unset MOAT_MEMCPY_TUNING
}

tunnel_report() {
  local name label scenario
  echo
  echo "## Through a tunnel (issue 13): moat's edge and agent beside a direct \`moat http\` and rathole $rathole_version"
  echo
  echo "Every contender runs on CPU 0 (each moat process and each rathole process with one serving thread), the"
  echo "client and the upstream on CPU 1. *CPU* and *per CPU-s* count every process of the contender."
  echo
  echo "| Contender | What runs on CPU 0 | Where mTLS ends |"
  echo "| --- | --- | --- |"
  echo "| direct | \`moat http\` | moat http |"
  echo "| tunnel-edge | \`moat edge\` + agent (\`moat http --edge … --terminate-at edge\`), one TLS 1.3 link carrying HTTP/2 streams | the edge (rules, audit there) |"
  echo "| tunnel-agent | \`moat edge\` + agent (\`--terminate-at agent\`): the edge reads the SNI and relays the bytes | the agent |"
  echo "| rathole-front | \`moat http\` whose upstream is a rathole server; rathole client → upstream (\`tls\` transport) | moat http, before the tunnel |"
  echo "| rathole-behind | rathole server → rathole client → \`moat http\` → upstream (\`tls\` transport) | moat http, after the tunnel |"
  echo
  echo "All moat processes write one audit event per request to a file (\`--audit-log\`), where the request is"
  echo "decided; rathole logs at warn. rathole-front does the cryptographic work of tunnel-edge (client TLS +"
  echo "the link's TLS), rathole-behind that of tunnel-agent."
  echo
  echo "| Scenario | Contender | req/s | p50 ms | p99 ms | CPU | req per CPU-s | vs direct | vs rathole | rounds (req/s) |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for scenario in t-keepalive t-handshake; do
    case $scenario in
      t-keepalive) label="keep-alive HTTP/1.1, 64 connections" ;;
      t-handshake) label="new full mTLS handshake per request, 16 connections" ;;
    esac
    for name in "${tunnel_contenders[@]}"; do
      echo "| $label | $name | ${result[$scenario,$name,rps]} | ${result[$scenario,$name,p50]} | ${result[$scenario,$name,p99]} | ${result[$scenario,$name,cpu]} % | ${result[$scenario,$name,per_cpu]} | $(ratio "${result[$scenario,$name,rps]}" "${result[$scenario,direct,rps]}") | $(versus_rathole "$name" "${result[$scenario,$name,rps]}" "${result[$scenario,$(rathole_peer "$name"),rps]}") | ${result[$scenario,$name,rounds]} |"
    done
  done
  echo
  echo "*vs rathole*: tunnel-edge against rathole-front, tunnel-agent against rathole-behind (the same work)."
  echo
  echo "### Latency at a fixed $fixed_rate req/s (keep-alive, 16 connections, open loop: a request counts from when it was due)"
  echo
  echo "| Contender | p50 ms | p99 ms | added p50 vs direct (ms) | added p99 vs direct (ms) | rounds (p50/p99) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for name in "${tunnel_contenders[@]}"; do
    echo "| $name | ${result[t-latency,$name,p50]} | ${result[t-latency,$name,p99]} | $(difference "${result[t-latency,$name,p50]}" "${result[t-latency,direct,p50]}") | $(difference "${result[t-latency,$name,p99]}" "${result[t-latency,direct,p99]}") | ${result[t-latency,$name,rounds]} |"
  done
  echo
  echo "### One $(bytes_label "$stream_bytes") stream each way (curl, HTTP/1.1)"
  echo
  echo "| Direction | Contender | MB/s | MB per CPU-s | vs direct | vs rathole |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  for scenario in t-download t-upload; do
    for name in "${tunnel_contenders[@]}"; do
      echo "| ${scenario#t-} | $name | ${result[$scenario,$name]} | ${result[$scenario,$name,per_cpu]} | $(ratio "${result[$scenario,$name]}" "${result[$scenario,direct]}") | $(versus_rathole "$name" "${result[$scenario,$name]}" "${result[$scenario,$(rathole_peer "$name")]}") |"
    done
  done
  echo
  echo "### Memory: $tunnel_idle idle client connections, each after one completed request"
  echo
  echo "| Contender | public side (KiB per connection) | private side (KiB per connection) | RSS before → holding, public (KiB) | RSS before → holding, private (KiB) |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for name in "${tunnel_contenders[@]}"; do
    echo "| $name | ${result[t-memory,$name,public,per]} | ${result[t-memory,$name,private,per]:-—} | ${result[t-memory,$name,public,before]} → ${result[t-memory,$name,public,after]} | ${result[t-memory,$name,private,before]:-—} → ${result[t-memory,$name,private,after]:-—} |"
  done
  echo
  echo "Public side: the edge, rathole's server (with the \`moat http\` in front of it), or the direct \`moat http\`;"
  echo "private side: the agent, or rathole's client (with the \`moat http\` behind it). moat runs with"
  echo "\`MOAT_MEMCPY_TUNING=off\` here (its 4 MiB heap-top pad would absorb the first 4 MiB of growth)."
  echo
  echo "### Targets (issue 13)"
  echo
  echo "| Target | tunnel-edge | | tunnel-agent | |"
  echo "| --- | ---: | --- | ---: | --- |"
  tunnel_target() {
    local label="$1" op="$2" threshold="$3" key="$4" against="$5" row name value
    row="| $label |"
    for name in tunnel-edge tunnel-agent; do
      local reference=$against
      [ "$against" = rathole ] && reference=$(rathole_peer "$name")
      value=$(awk -v a="${result[$key,$name]}" -v b="${result[$key,$reference]}" 'BEGIN {print (b > 0) ? a / b : 0}')
      row+=" $(ratio "${result[$key,$name]}" "${result[$key,$reference]}") | $(meets "$value" "$op" "$threshold") |"
    done
    echo "$row"
  }
  local key
  for key in t-download t-upload; do
    tunnel_target "${key#t-} ≥ 0.9× direct" ">=" 0.9 "$key" direct
    tunnel_target "${key#t-} ≥ 1.0× rathole" ">=" 1.0 "$key" rathole
  done
  for name in "${tunnel_contenders[@]}"; do
    result[t-keepalive-rps,$name]=${result[t-keepalive,$name,rps]}
    result[t-handshake-rps,$name]=${result[t-handshake,$name,rps]}
  done
  tunnel_target "keep-alive req/s ≥ 0.8× direct" ">=" 0.8 t-keepalive-rps direct
  tunnel_target "keep-alive req/s ≥ 1.5× rathole" ">=" 1.5 t-keepalive-rps rathole
  tunnel_target "new mTLS connections/s ≥ 0.9× direct" ">=" 0.9 t-handshake-rps direct
  local row="| added p99 ≤ 1 ms at $fixed_rate req/s |" added
  for name in tunnel-edge tunnel-agent; do
    added=$(difference "${result[t-latency,$name,p99]}" "${result[t-latency,direct,p99]}")
    row+=" $added ms | $(meets "$added" "<=" 1) |"
  done
  echo "$row"
  row="| memory per idle connection: edge ≤ 8 KiB, agent ≤ 16 KiB |"
  for name in tunnel-edge tunnel-agent; do
    row+=" ${result[t-memory,$name,public,per]} / ${result[t-memory,$name,private,per]} KiB | $(meets "${result[t-memory,$name,public,per]}" "<=" 8) / $(meets "${result[t-memory,$name,private,per]}" "<=" 16) |"
  done
  echo "$row"
}

rathole_peer() {
  case "$1" in
    tunnel-edge) echo rathole-front ;;
    tunnel-agent) echo rathole-behind ;;
    *) echo "$1" ;;
  esac
}
# The ratio against the rathole contender doing the same work, for moat's tunnels only.
versus_rathole() {
  case "$1" in tunnel-*) ratio "$2" "$3" ;; *) echo "—" ;; esac
}
difference() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
