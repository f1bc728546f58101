#!/usr/bin/env bash
# Instructions a running jwks-edge spends per request, counted by callgrind: repeatable on
# a shared, noisy VM where CPU seconds move by 10-20 % between runs.
#
#   benches/instructions/per_request.sh CONFIG [SMALL LARGE]
#
# CONFIG must have a `listen_plain` listener (port 0 is fine) and an issuer whose key set
# is served at $JWKS_PATH for host $JWKS_HOST (defaults: the scale bench's Keycloak fleet,
# `cargo bench --bench scale -- --issuers 1 --fleet-only CONFIG --duration 600s`).
# The proxy runs twice under callgrind, answering SMALL then LARGE keep-alive requests;
# the difference divided by LARGE - SMALL leaves start-up and shutdown out. Run it once
# with `[log] access = true` and once with `false` to see the access log's share.
set -euo pipefail
shopt -s inherit_errexit
config=$1 small=${2:-500} large=${3:-2500}
bin=${JWKS_EDGE_BIN:-target/release/jwks-edge}
path=${JWKS_PATH:-/realms/r0/protocol/openid-connect/certs}
host=${JWKS_HOST:-i0.example.test}
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: valgrind)" >&2; exit 1; }

count() {
  local n=$1 dir
  dir=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$dir/out" "$bin" serve --config "$config" >/dev/null 2>"$dir/log" &
  local pid=$! addr=""
  for _ in $(seq 1 120); do
    addr=$(grep -m1 'listener="plain"' "$dir/log" | grep -o 'listen=[0-9.:]*' | cut -d= -f2 || true)
    [ -n "$addr" ] && grep -q 'first fetch of every' "$dir/log" && break
    sleep 0.5
  done
  [ -n "$addr" ] || { kill "$pid"; echo "the proxy did not start: $(tail -1 "$dir/log")" >&2; exit 1; }
  if python3 - "${addr%:*}" "${addr##*:}" "$n" "$path" "$host" <<'PY'
import http.client, sys
host, port, n, path, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection(host, port, timeout=30)
for _ in range(n):
    c.request("GET", path, headers={"Host": name})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  then :; else kill "$pid"; echo "the requests failed: is the upstream up?" >&2; exit 1; fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  grep -o 'Collected : [0-9]*' "$dir/log" | awk '{print $3}'
  rm -rf "$dir"
}

a=$(count "$small"); b=$(count "$large")
echo "$(( (b - a) / (large - small) )) instructions per request ($config)"
