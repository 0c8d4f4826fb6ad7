#!/usr/bin/env bash
# setup.sh - installs the Debian packages tandem needs to build and test,
# only those missing, with sudo when not root. Safe to run again.
#
#   scripts/setup.sh            build and test dependencies
#   scripts/setup.sh --build    only what building the CLI needs
#   scripts/setup.sh --example  building, and running the fraud example
set -euo pipefail

build_packages=(
  gcc make libc6-dev
  libssl-dev                   # SHA-256 (libcrypto), TLS to Redis (libssl)
  libmicrohttpd-dev            # tandem serve's HTTP server
  libfyaml-dev                 # pipeline files (YAML with line/column)
  liblmdb-dev                  # state and tables (LMDB)
  libcurl4-openssl-dev         # tandem replay's HTTP client
  libsqlite3-dev               # the run registry (tandem runs, compare)
  librdkafka-dev               # tandem stream (Kafka; its mock cluster in tests)
  libhiredis-dev               # tables in Redis (store: redis://, rediss://)
  scdoc                        # man pages from the help text (make man, make install)
)
test_packages=(
  clang libclang-rt-dev        # libFuzzer and sanitizers
  python3 python3-numpy        # integration tests
  python3-xgboost              # reference predictions (XGBoost's own)
  man-db                       # man -l renders the generated pages in test_conventions
  libxgboost-dev               # XGBoost's C API, the benchmark peer
  python3-pandas               # tests/fuzz/make_corpus.py (regenerating seeds)
  python3-sklearn              # tandem eval checked against scikit-learn's metrics
  curl                         # a real HTTP client for the server's tests
  openssl                      # test_tls.py, test_hybrid_redis_tls.py make certificates
  prometheus                   # promtool checks /metrics; a real scraper
  python3-yaml python3-jsonschema  # alert rules and docs/openapi.yaml read and checked in tests
  wrk                          # load generator (reload-under-load test)
  chromium                     # renders tandem report's HTML (test_report.py)
  kcat                         # an independent Kafka client (test_stream.py)
  lmdb-utils                   # mdb_dump: test_crash.py reads tables and state
  valgrind                     # scripts/valgrind.sh (a step of test.sh)
  nginx-light                  # test_proxy.py: the proxy users put in front
  redis-server                 # test_hybrid_redis*.py: tables in a real Redis (Debian builds it with TLS)
  python3-dev python3-setuptools  # the Python package's extension (python/)
  python3-pytest               # its tests (python/tests)
  python3-dask python3-distributed  # tandem.dask on a LocalCluster
  pkg-config binutils          # examples/embed through tandem.pc; readelf, nm
)
example_packages=(
  python3 python3-numpy        # examples/fraud/generate.py
  curl                         # the example's request to the live server
)
bench_packages=(
  nginx-light                  # the HTTP peer the server is measured against
                               # (also a test package: test_proxy.py)
  python3-fastapi python3-uvicorn  # the Python server peer (FastAPI + XGBoost)
)

#   scripts/setup.sh --bench    also what the benchmarks need
packages=("${build_packages[@]}")
if [[ "${1:-}" == "--example" ]]; then
  packages+=("${example_packages[@]}")
elif [[ "${1:-}" != "--build" ]]; then
  packages+=("${test_packages[@]}")
fi
if [[ "${1:-}" == "--bench" ]]; then
  packages+=("${bench_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "setup: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
