#!/usr/bin/env bash
# Measures Portico's resident memory per idle WebSocket tunnel (loopback only, bounded):
# builds the proxy and the load tool, raises the descriptor limit, opens N idle tunnels.
# Usage: scripts/ws-idle-memory.sh [TUNNELS]   (default 10000; the figure goes in
# docs/performance.md)
set -euo pipefail
cd "$(dirname "$0")/.."
tunnels="${1:-10000}"
# Two descriptors per tunnel in the proxy, two in the load tool (client + backend side).
ulimit -n "$(( tunnels * 2 + 4096 ))"
profile=release-fast
cargo build --profile "$profile" --bin portico --example ws_idle_memory
target="${CARGO_TARGET_DIR:-target}/$profile"
timeout 900 "$target/examples/ws_idle_memory" "$target/portico" "$tunnels"
