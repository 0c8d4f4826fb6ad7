#!/usr/bin/env bash
# scripts/soak.sh [MINUTES] - the soak of tests/integration/test_soak.py
# for MINUTES (default 10): the fraud example served live under wrk at
# about 70% of its measured capacity, a table refresh and a SIGHUP every
# 10 s, RSS sampled every second. Fails on any non-2xx response or socket
# error, or on heap growth past 20% after the warm-up; prints the figures
# (start, end and max RSS, rate, p50/p99/p99.9). TANDEM picks the binary
# (default build/tandem).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then
  echo "usage: $0 [MINUTES]  (a positive whole number, default 10)" >&2
  exit 2
fi
[ -n "${TANDEM:-}" ] || make -s -j"$(nproc 2>/dev/null || echo 2)" build/tandem
SOAK_SECONDS=$((minutes * 60)) exec /usr/bin/python3 tests/integration/test_soak.py
