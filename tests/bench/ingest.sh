#!/usr/bin/env bash
# Ingest benchmark: central (embedded broker) + the load generator, on free ports, into a
# fresh database. Prints the load generator's report. Usage:
#   tests/bench/ingest.sh [sqlite|postgres] [loadgen args…]
# e.g. tests/bench/ingest.sh sqlite --nodes 50 --rate 50000 --batch 200 --duration 30
# Postgres: ROOMSENSE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
# the benchmark uses its own database `rs_bench`, dropped and created anew.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}; shift || true
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p roomsense-central -p roomsense-tests --bin roomsense-central --bin loadgen
work=$(mktemp -d /tmp/rs-bench.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); mqtt=$(free_port)
case "$backend" in
  sqlite) db="sqlite://$work/bench.db" ;;
  postgres)
    base=${ROOMSENSE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
    psql "$base" -qc 'DROP DATABASE IF EXISTS rs_bench' -c 'CREATE DATABASE rs_bench'
    db="${base%/*}/rs_bench" ;;
  *) echo "backend must be sqlite or postgres" >&2; exit 2 ;;
esac
ROOMSENSE__LOG__LEVEL=warn "$target/release/roomsense-central" serve --listen "127.0.0.1:$http" \
  --mqtt-listen "127.0.0.1:$mqtt" --database-url "$db" > "$work/central.log" 2>&1 &
central=$!
trap 'kill $central 2>/dev/null || true; wait $central 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$http/healthz" >/dev/null && break
  sleep 0.1
done
if [ -z "${ROOMSENSE_TOKEN:-}" ] && "$target/release/roomsense-central" token --help >/dev/null 2>&1; then
  ROOMSENSE_TOKEN=$("$target/release/roomsense-central" token create --scope read --name bench \
    --database-url "$db" 2>/dev/null | grep -o 'rs_[A-Za-z0-9_-]*' | head -1 || true)
  export ROOMSENSE_TOKEN
fi
echo "central pid $central, http $http, mqtt $mqtt, db $db; load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "loadgen: %e s wall, %U s user, %S s sys" "$target/release/loadgen" \
  --mqtt "127.0.0.1:$mqtt" --http "http://127.0.0.1:$http" --database-url "$db" "$@"
ps -o cputime= -p "$central" | sed 's/^/central CPU time: /'
