#!/usr/bin/env bash
# Side-by-side benchmark: Portico vs nginx vs HAProxy (and a direct no-proxy baseline) on
# 127.0.0.1, scenarios a-g of issue 6. See bench/README.md.
# Env: ROUNDS (3), DURATION seconds per window (8), SCENARIOS (abcdefg), TARGETS
# (direct portico nginx haproxy), G_CONNS idle WebSockets for g (9000), PROFILE (release),
# NO_INSTALL=1 to skip apt-get, OUT (results directory, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-8}"; SCENARIOS="${SCENARIOS:-abcdefg}"
TARGETS="${TARGETS:-direct portico nginx haproxy}"; G_CONNS="${G_CONNS:-9000}"
PROFILE="${PROFILE:-release}"
PROXY_CPU="${PROXY_CPU:-0}"; LOAD_CPU="${LOAD_CPU:-1}"

# 1. Tools, from Debian's packages.
if [ -z "${NO_INSTALL:-}" ]; then
  missing=()
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
fi
# nginx and HAProxy must not run as services while we use them standalone.
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"; HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

# 2. Build Portico and the origin/load tools.
cargo build --profile "$PROFILE" --bin portico --example bench_origin --example bench_ws ${FEATURES:+--features "$FEATURES"}
T="${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
PORTICO="$T/portico"; ORIGIN="$T/examples/bench_origin"; WSC="$T/examples/bench_ws"

DIR="${OUT:-$(mktemp -d /tmp/portico-bench.XXXXXX)}"; mkdir -p "$DIR"
RES="$DIR/results.tsv"; : > "$RES"
echo "results in $DIR"
ulimit -n "$(ulimit -Hn)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

O=18080 # origin
declare -A HTTP=([direct]=$O [portico]=18081 [nginx]=18082 [haproxy]=18083)
declare -A HTTPS=([portico]=18441 [nginx]=18442 [haproxy]=18443)

# 3. Per-run TLS certificate (ECDSA P-256, TLS 1.3 only everywhere).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
cat "$DIR/cert.pem" "$DIR/key.pem" > "$DIR/haproxy.pem"

# 4. Equal configurations: one worker, no access log, 64 idle upstream connections kept.
cat > "$DIR/portico.yaml" <<YAML
settings: { access_log: false }
listeners:
  - { name: plain, bind: "127.0.0.1:${HTTP[portico]}", limits: { max_connections: 30000, max_tunnels: 30000 } }
  - name: tls
    bind: "127.0.0.1:${HTTPS[portico]}"
    tls: { certificates: [ { cert: "$DIR/cert.pem", key: "$DIR/key.pem" } ] }
    limits: { max_connections: 30000, max_tunnels: 30000 }
routes:
  - { name: ws, match: { path: /ws }, upstream: origin, websocket: { enabled: true, idle_timeout: 600s } }
  - { name: all, upstream: origin, max_body_size: unlimited }
upstreams:
  origin: { servers: ["127.0.0.1:$O"], max_idle_per_backend: 64 }
YAML
cat > "$DIR/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $DIR/nginx.pid;
error_log $DIR/nginx.err warn; worker_rlimit_nofile 20000;
events { worker_connections 19500; }
http {
  access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$O; keepalive 64; keepalive_requests 1000000; }
  map \$http_upgrade \$conn_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:${HTTP[nginx]}; listen 127.0.0.1:${HTTPS[nginx]} ssl http2;
    ssl_certificate $DIR/cert.pem; ssl_certificate_key $DIR/key.pem; ssl_protocols TLSv1.3;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /ws { proxy_pass http://origin; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$conn_upgrade;
      proxy_read_timeout 600s; proxy_send_timeout 600s; }
  }
}
NGINX
cat > "$DIR/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 9500
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 600s
  http-reuse always
frontend fe
  bind 127.0.0.1:${HTTP[haproxy]}
  bind 127.0.0.1:${HTTPS[haproxy]} ssl crt $DIR/haproxy.pem alpn h2,http/1.1
  default_backend origin
backend origin
  server s1 127.0.0.1:$O pool-max-conn 64
HAP

# 5. Start everything (proxies on PROXY_CPU, origin and load on LOAD_CPU).
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }
taskset -c "$LOAD_CPU" "$ORIGIN" "$O" > "$DIR/origin.log" 2>&1 & PIDS+=($!)
wait_port "$O"
declare -A PID=([direct]=$!)
if [[ " $TARGETS " == *" portico "* ]]; then
  taskset -c "$PROXY_CPU" "$PORTICO" --config "$DIR/portico.yaml" > "$DIR/portico.log" 2>&1 & PIDS+=($!); PID[portico]=$!
  wait_port "${HTTP[portico]}"
fi
if [[ " $TARGETS " == *" nginx "* ]]; then
  taskset -c "$PROXY_CPU" "$NGINX" -c "$DIR/nginx.conf" -p "$DIR" > "$DIR/nginx.log" 2>&1 & PIDS+=($!); PID[nginx]=$!
  wait_port "${HTTP[nginx]}"
fi
if [[ " $TARGETS " == *" haproxy "* ]]; then
  taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$DIR/haproxy.cfg" > "$DIR/haproxy.log" 2>&1 & PIDS+=($!); PID[haproxy]=$!
  wait_port "${HTTP[haproxy]}"
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
L() { taskset -c "$LOAD_CPU" timeout $((DURATION + 30)) "$@"; }

# One measurement: prints "units p99_ms" (units = requests, MiB, handshakes or messages).
measure() {
  local s=$1 t=$2 hp=${HTTP[$2]} tp=${HTTPS[$2]:-} out
  case $s in
    a) out=$(L wrk -t1 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$hp/") ;;
    b) out=$(L wrk -t1 -c64 -d"${DURATION}s" --latency "https://127.0.0.1:$tp/") ;;
    c) out=$(L wrk -t1 -c16 -d"${DURATION}s" --latency -H "Connection: close" "https://127.0.0.1:$tp/") ;;
    e) out=$(L wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$hp/?size=1048576") ;;
    d) out=$(L h2load -t1 -c16 -m16 -D "$DURATION" "https://127.0.0.1:$tp/" 2>&1)
       awk '/^requests:/{ok=$8} /time for request:/{m=$7; u=m; sub(/[0-9.]+/,"",u); v=m+0; if(u=="us")v/=1000; if(u=="s")v*=1000} END{print ok, "mean:"v}' <<<"$out"; return ;;
    f) out=$(L "$WSC" echo "ws://127.0.0.1:$hp/ws" 64 "$DURATION")
       sed -E 's/.*msgs=([0-9]+).*p99_us=([0-9]+).*/\1 \2/' <<<"$out" | awk '{print $1, $2/1000}'; return ;;
  esac
  # wrk: "N requests in", 99% latency line (us/ms/s).
  awk -v s="$s" '/requests in/{n=$1} /^ +99%/{v=$2; u=v; sub(/[0-9.]+/,"",u); v=v+0; if(u=="us")v/=1000; if(u=="s")v*=1000; p=v}
       END{if(s=="e") n=n; print n, p}' <<<"$out"
}

for s in $(grep -o . <<<"$SCENARIOS"); do
  [ "$s" = g ] && continue
  for r in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
      [ "$t" = direct ] && [[ "bcd" == *"$s"* ]] && continue   # the origin speaks no TLS
      [ -z "${PID[$t]:-}" ] && continue
      pid=${PID[$t]}; c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
      read -r units p99 < <(measure "$s" "$t" || echo "0 0")
      c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$t" "$r" "$units" "$p99" "$((c1 - c0))" "$(echo "$t1 - $t0" | bc)" | tee -a "$RES"
    done
  done
done

if [[ "$SCENARIOS" == *g* ]]; then
  for t in $TARGETS; do
    [ "$t" = direct ] && continue
    [ -z "${PID[$t]:-}" ] && continue
    out=$(taskset -c "$LOAD_CPU" timeout 700 "$WSC" idle "ws://127.0.0.1:${HTTP[$t]}/ws" "$G_CONNS" "${PID[$t]}" || echo "bytes_per_conn=0")
    b=$(grep -o 'bytes_per_conn=[0-9]*' <<<"$out" | cut -d= -f2)
    printf 'g\t%s\t1\t%s\t0\t0\t0\n' "$t" "$b" | tee -a "$RES"
  done
fi

python3 "$(dirname "$0")/report.py" "$RES" "$DURATION" "$(getconf CLK_TCK)" | tee "$DIR/report.md"
