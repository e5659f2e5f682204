#!/usr/bin/env bash
# The dashboard's cost (issue 15): the page's size, the snapshot's size at N
# connections, and the node's CPU with the page open in headless Chromium
# against the same node with no page, in interleaved windows.
#
#   bench/dashboard_cpu.sh [N=1000] [WINDOW_SECONDS=20] [ROUNDS=3]
#
# Needs chromium (Debian's package) and a release build of the node and of
# the mem_conns example, which holds N idle authenticated connections to the
# node (each from its own 127.10.x.y address).
set -euo pipefail
n=${1:-1000}
window=${2:-20}
rounds=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
cargo build --release -q -p tezos-p2p-node
cargo build --release -q -p tezos-p2p --example mem_conns
chrome=${CHROME:-chromium}
log=$(mktemp)
hold=$((rounds * window * 2 + 120))
MEM_CONNS_HOLD=$hold "$target/release/examples/mem_conns" node "$n" --bin "$target/release/tezos-p2p-node" >"$log" 2>&1 &
holder=$!
# (mem_conns stops the node only when its hold ends: stop both.)
trap 'kill $holder ${pid:-} ${browser:-} 2>/dev/null || true; rm -f "$log"' EXIT
until grep -q "holding the connections" "$log"; do
  kill -0 $holder 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
pid=$(sed -n 's/.*(pid \([0-9]*\), RPC \(http[^ ]*\)).*/\1/p' "$log" | head -1)
rpc=$(sed -n 's/.*(pid \([0-9]*\), RPC \(http[^ ]*\)).*/\2/p' "$log" | head -1)
grep "connections in" "$log"

bytes() { curl -s -o /dev/null -w '%{size_download}' "$1"; }
html=$(bytes "$rpc")
js=$(bytes "${rpc}dashboard/dashboard.js")
css=$(bytes "${rpc}dashboard/dashboard.css")
snap=$(bytes "${rpc}dashboard/snapshot")
echo "page: html $html B + js $js B + css $css B = $((html + js + css)) B"
echo "snapshot at $(curl -s "${rpc}network/connections" | grep -o '"peer_id"' | wc -l) connections: $snap B, served in$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w ' %{time_total}' "${rpc}dashboard/snapshot"; done) s"

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
cpu() { # percent of one core over the window
  local a b
  a=$(ticks); sleep "$window"; b=$(ticks)
  awk -v t=$((b - a)) -v hz="$hz" -v w="$window" 'BEGIN { printf "%.2f", t * 100 / hz / w }'
}
for r in $(seq "$rounds"); do
  closed=$(cpu)
  "$chrome" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$(mktemp -d)" --remote-debugging-port=0 "$rpc" >/dev/null 2>&1 &
  browser=$!
  sleep 5 # the page loads and starts polling
  open=$(cpu)
  kill $browser; wait $browser 2>/dev/null || true
  echo "round $r: node CPU, page closed ${closed} %, page open ${open} % of one core (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
