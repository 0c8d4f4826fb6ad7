#!/usr/bin/env bash
# tsan_python.sh - two pipelines in two Python threads under
# ThreadSanitizer: builds the extension over build-tsan/libtandem.a (make
# tsan first) into build-tsan/python, prepares the pipelines without TSan
# (their models are trained with xgboost), then runs the threads with
# libtsan preloaded into the Python interpreter. Exits non-zero on a race
# (TSan's 66) or a wrong answer.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/build-tsan/python
rm -rf "$out"
mkdir -p "$out/lib" "$out/tmp" "$out/run"
(cd python && TANDEM_BUILD=$root/build-tsan CFLAGS="-fsanitize=thread -O1 -g" \
  LDFLAGS="-fsanitize=thread" /usr/bin/python3 setup.py -q build_ext \
  --build-lib "$out/lib" --build-temp "$out/tmp" >/dev/null)
cp python/tandem/*.py "$out/lib/tandem/"
/usr/bin/python3 python/tests/tsan_two_pipelines.py prepare "$out/run"
PYTHONPATH=$out/lib LD_PRELOAD=$(gcc -print-file-name=libtsan.so) \
  TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" \
  /usr/bin/python3 python/tests/tsan_two_pipelines.py run "$out/run"
