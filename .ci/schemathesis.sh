#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (`--checks all`),
# once with a tenant key and once with the admin key, against a server started here on
# its default (redb) store in a temporary directory. Any failure fails the script.
#
# The event streams (`/events`) are left out: a Server-Sent Events response lasts until
# the client closes it, which a fuzzer waiting for a whole response never does. The
# server's own tests cover them (crates/tenantry-server/tests/events.rs).
#
# Usage: .ci/schemathesis.sh path/to/tenantry-binary
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:?the tenantry binary}"
PORT="${TENANTRY_FUZZ_PORT:-7979}"
ADMIN_KEY="fuzz-admin-key"
TENANT_KEY="demo-acme-key"
EXAMPLES="${TENANTRY_FUZZ_EXAMPLES:-25}"
DATA="$(mktemp -d)"
LOG="$DATA/server.log"

TENANTRY_ADMIN_KEY="$ADMIN_KEY" RUST_LOG=warn "$BIN" serve \
    --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT

for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$LOG"; exit 1; }

fuzz() {
    local who="$1" key="$2"
    echo "-- schemathesis with the $who key"
    curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT/openapi.json" >"$DATA/openapi-$who.json"
    st --config-file .ci/schemathesis.toml run "$DATA/openapi-$who.json" \
        --url "http://127.0.0.1:$PORT" \
        --header "Authorization: Bearer $key" \
        --checks all \
        --exclude-path-regex '/events$' \
        --max-examples "$EXAMPLES" \
        --seed 20261202 \
        --generation-database none \
        --no-color \
        --warnings off
}

status=0
fuzz tenant "$TENANT_KEY" || status=1
fuzz admin "$ADMIN_KEY" || status=1
if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server exited during the fuzzing:"
    cat "$LOG"
    status=1
fi
exit "$status"
