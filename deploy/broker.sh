#!/usr/bin/env bash
# Start the bundled in-memory Tansu broker with the pipeline's topics, until Ctrl-C.
#
#   deploy/broker.sh [PORT] [PARTITIONS]        defaults: 9092, 1
#   export KAFKA_BOOTSTRAP=127.0.0.1:9092       in the shell that runs the pipeline
#
# Everything lives in memory: stopping the broker discards all topics and messages.
# The broker log goes to var/broker/tansu-PORT.log, never to this terminal.
set -euo pipefail

port="${1:-9092}"
partitions="${2:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi

cd "$root"
exec "$python" -m connectors.kafka.broker --port "$port" --partitions "$partitions" --log-dir var/broker
