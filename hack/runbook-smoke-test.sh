#!/usr/bin/env bash
# The runbook's manual smoke test (docs/RUNBOOK.md, "Manual smoke test"), as commands: place a small paper
# order, see it in positions, close it, see P&L, engage the kill switch and see an order refused, release
# it and see trading resume. Every step prints what it checked; the first failed check stops it (exit 1).
#
# Usage:  NS=trading TS=demo bash hack/runbook-smoke-test.sh
# Needs kubectl (access to the namespace's Secrets and port-forward), curl and jq. Paper or simulated
# brokers only: it refuses a TradingSystem in live mode. It trades QTY (default 1) of SYMBOL (default: the
# system's first symbol) and leaves the system as it found it (flat, kill switch released).
# LOCAL_ENGINE_PORT / LOCAL_SAFETY_PORT (default 8001 / 8888, as the runbook) are the local port-forwards.
set -euo pipefail
NS=${NS:?set NS to the TradingSystem\'s namespace}
TS=${TS:?set TS to the TradingSystem\'s name}
QTY=${QTY:-1}
E=${LOCAL_ENGINE_PORT:-8001}
S=${LOCAL_SAFETY_PORT:-8888}

step() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

mode=$(kubectl -n "$NS" get ts "$TS" -o jsonpath='{.spec.mode}')
[ "$mode" != live ] || fail "$NS/$TS trades live: the smoke test runs on paper only"
SYMBOL=${SYMBOL:-$(kubectl -n "$NS" get ts "$TS" -o jsonpath='{.spec.symbols[0]}')}

# The runbook's port-forwards and tokens (docs/RUNBOOK.md, top).
kubectl -n "$NS" port-forward "svc/$TS-safety" "$S:8888" >/dev/null &
pf_safety=$!
kubectl -n "$NS" port-forward "svc/$TS-engine" "$E:8001" >/dev/null &
pf_engine=$!
answer=$(mktemp)
trap 'kill $pf_safety $pf_engine 2>/dev/null || true; rm -f "$answer"' EXIT
SAFETY_API_TOKEN=$(kubectl -n "$NS" get secret "$TS-safety-token" -o jsonpath='{.data.token}' | base64 -d)
ENGINE_ADMIN_TOKEN=$(kubectl -n "$NS" get secret "$TS-engine-admin" -o jsonpath='{.data.token}' | base64 -d)
for _ in $(seq 60); do
  curl -fsS "http://localhost:$E/healthz" >/dev/null 2>&1 && curl -fsS "http://localhost:$S/status" >/dev/null 2>&1 && break
  sleep 0.5
done

order() {  # order buy|sell: POST /orders (the engine's admin API, same risk checks as the strategy's)
  curl -sS -o "$answer" -w '%{http_code}' -X POST "http://localhost:$E/orders" \
    -H "Authorization: Bearer $ENGINE_ADMIN_TOKEN" -H "Content-Type: application/json" \
    -d '{"symbol": "'"$SYMBOL"'", "side": "'"$1"'", "quantity": '"$QTY"'}'
}
position() {  # the signed quantity held in SYMBOL (0 when flat)
  curl -fsS "http://localhost:$E/positions/current" | jq --arg s "$SYMBOL" '[.positions[] | select(.symbol == $s) | .quantity] | add // 0'
}
wait_position() {  # wait_position QTY: until the position is QTY (a market order fills at the next price)
  for _ in $(seq 60); do jq -en --argjson have "$(position)" --argjson want "$1" '$have == $want' >/dev/null && return 0; sleep 0.5; done
  fail "position in $SYMBOL is $(position), expected $1"
}

wait_trading() {  # wait_trading STATE: until the engine's trading_state is STATE (30 s)
  for _ in $(seq 60); do
    [ "$(curl -fsS "http://localhost:$E/state" | jq -r .trading_state)" = "$1" ] && return 0; sleep 0.5
  done
  fail "the engine is $(curl -fsS "http://localhost:$E/state" | jq -c '{trading_state, halt_reasons}'), expected $1"
}

step "0. the engine is trading"
wait_trading ACTIVE
start=$(position)
step "1. place a small paper order: buy $QTY $SYMBOL"
code=$(order buy); [ "$code" = 201 ] || fail "order refused: HTTP $code $(cat "$answer")"
jq -c '{id, symbol, side, quantity, status}' "$answer"

step "2. it appears in positions"
wait_position "$(jq -n "$start + $QTY")"
curl -fsS "http://localhost:$E/positions/current" | jq -c --arg s "$SYMBOL" '.positions[] | select(.symbol == $s)'

step "3. close the position: sell $QTY $SYMBOL"
code=$(order sell); [ "$code" = 201 ] || fail "closing order refused: HTTP $code $(cat "$answer")"
wait_position "$start"

step "4. P&L updated"
curl -fsS "http://localhost:$E/state" | jq -e -c '.pnl | select(.realized != null and .total != null)' \
  || fail "no P&L in /state"
curl -fsS "http://localhost:$E/state" | jq -e -c '.orders | select(.filled >= 2)' || fail "fills not counted"

step "5. activate the kill switch (the runbook's curl)"
curl -fsS -X POST "http://localhost:$S/kill-switch/activate" \
  -H "Authorization: Bearer $SAFETY_API_TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"reason": "runbook smoke test", "close_positions": false, "operator": "smoke-test"}' | jq -c .
wait_trading HALTED

step "6. orders are refused while the kill switch is engaged"
code=$(order buy)
[ "$code" = 409 ] || fail "an order while killed answered HTTP $code $(cat "$answer")"
jq -e -c '(.detail // .) | select(.reason == "trading_halted")' "$answer" || fail "not refused as halted"

step "7. deactivate the kill switch (the runbook's curl); trading resumes"
curl -fsS -X POST "http://localhost:$S/kill-switch/deactivate" \
  -H "Authorization: Bearer $SAFETY_API_TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"operator": "smoke-test"}' | jq -c .
wait_trading ACTIVE
curl -fsS "http://localhost:$S/status" | jq -c .
echo "smoke test passed: $NS/$TS"
