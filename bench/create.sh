#!/usr/bin/env bash
# Benchmark of POST /v2/phone-validations (issue: foundation, speed):
# wrk at 64 connections against the release API, next to pgbench running a
# single-row INSERT into the same table at the same concurrency, in one run on
# this machine; then the API's CPU use while idle.
#   bash bench/create.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-20}
DB=otp_bench
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export JWT_SECRET=bench-jwt-secret-bench-jwt-secret-0123 OTP_PEPPER=bench-pepper-bench-pepper-bench-pepper
export WEBHOOK_SECRET_KEY=YmVuY2gtd2ViaG9vay1zZWNyZXQta2V5LTAxMjM0NTY=
export AMQP_PREFIX=bench. API_ADDR=127.0.0.1:18080 OPS_ADDR=127.0.0.1:18081 RUST_LOG=warn

cargo build --release -q -p api
drop_queues() { # the API publishes otp.requested and nobody consumes it here
  if command -v rabbitmqctl >/dev/null; then
    for q in bench.otp.dispatch bench.otp.dispatch.dlq bench.otp.webhooks bench.otp.webhooks.dlq; do
      rabbitmqctl delete_queue -q "$q" >/dev/null 2>&1 || true
    done
  fi
}
drop_queues
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" postgres
./target/release/otpctl migrate >/dev/null
CLIENT_JSON=$(./target/release/otpctl client create --name bench)
export TOKEN=$(echo "$CLIENT_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
CLIENT=$(echo "$CLIENT_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["_id"])')

./target/release/api & API_PID=$!
trap 'kill $API_PID 2>/dev/null || true; drop_queues' EXIT
for _ in $(seq 50); do curl -fs localhost:18081/ready >/dev/null && break; sleep 0.2; done
auth=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
export PROJECT=$(curl -s "${auth[@]}" localhost:18080/v2/projects -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["_id"])')
export FLOW=$(curl -s "${auth[@]}" localhost:18080/v2/project-flows \
  -d "{\"project\":\"$PROJECT\",\"type\":\"login\",\"phone\":{\"resendCooldownSeconds\":0,\"maxSendsPerHour\":1000}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["_id"])')

echo "== API create, wrk -t2 -c64 -d${SECONDS_PER_RUN}s"
wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -s bench/create.lua http://127.0.0.1:18080 | tee /tmp/otp-bench-wrk.txt

cat > /tmp/otp-bench-insert.sql <<SQL
\set n random(10000000, 99999999)
INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone, phone_gateway, validation_method, type, otp_length, expires_at, max_attempts)
VALUES (substr(md5(random()::text), 1, 24), :client, :project, :flow, '+507', :n, 'sms', 'verificationCode', 'login', 6, now() + interval '10 minutes', 3);
SQL
echo "== pgbench single-row INSERT, -c64 -j2 -T${SECONDS_PER_RUN}"
pgbench -h 127.0.0.1 -U postgres -n -M prepared -c64 -j2 -T"$SECONDS_PER_RUN" \
  -D client="$CLIENT" -D project="$PROJECT" -D flow="$FLOW" -f /tmp/otp-bench-insert.sql $DB | tee /tmp/otp-bench-pgbench.txt

api_rps=$(awk '/Requests\/sec/ {print $2}' /tmp/otp-bench-wrk.txt)
pg_tps=$(awk '/^tps/ {print $3; exit}' /tmp/otp-bench-pgbench.txt)
python3 -c "print(f'API/pgbench = {float(\"$api_rps\")/float(\"$pg_tps\")*100:.1f} %')"

echo "== idle CPU of the API over 30 s (outbox sweeper running)"
ticks() { awk '{print $14+$15}' /proc/$API_PID/stat; }
t0=$(ticks); sleep 30; t1=$(ticks)
hz=$(getconf CLK_TCK)
python3 -c "print(f'idle CPU: {($t1-$t0)/$hz/30*100:.2f} % of one core')"
