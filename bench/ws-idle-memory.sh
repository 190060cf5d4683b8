#!/usr/bin/env bash
# Measures Portico's resident memory per idle WebSocket tunnel (loopback only, bounded):
# builds the proxy and the load tool, raises the descriptor limit, opens N idle tunnels.
# Usage: bench/ws-idle-memory.sh [TUNNELS]   (default 10000; the figure goes in
# docs/performance.md)
set -euo pipefail
cd "$(dirname "$0")/.."
tunnels="${1:-10000}"
# Each process needs about one descriptor per tunnel end it holds: the tool spreads the
# tunnels over several proxies (5,000 each) so none passes the limit.
ulimit -n "$(ulimit -Hn)"
profile=release-fast
cargo build --profile "$profile" --bin portico --example ws_idle_memory
target="${CARGO_TARGET_DIR:-target}/$profile"
timeout 900 "$target/examples/ws_idle_memory" "$target/portico" "$tunnels"
