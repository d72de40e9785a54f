#!/usr/bin/env bash
# Start a throwaway Redis on loopback for the queue tests (test/queue.test.ts), when the
# binary exists and nothing answers on the port yet. No persistence: test data only.
set -euo pipefail
PORT="${OCCMAP_REDIS_PORT:-6390}"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "start-redis: redis-server not installed; the queue tests will skip" >&2
  exit 0
fi
if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
  echo "start-redis: a Redis already answers on 127.0.0.1:$PORT" >&2
  exit 0
fi
redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --daemonize yes \
  --logfile "${TMPDIR:-/tmp}/occmap-redis-$PORT.log" --pidfile "${TMPDIR:-/tmp}/occmap-redis-$PORT.pid"
for _ in $(seq 1 50); do
  if redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
    echo "start-redis: Redis on 127.0.0.1:$PORT" >&2
    exit 0
  fi
  sleep 0.1
done
echo "start-redis: Redis did not answer on 127.0.0.1:$PORT" >&2
exit 1
