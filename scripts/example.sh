#!/usr/bin/env bash
# example.sh - the main job on the bundled example: installs what is
# missing, builds tandem, and scores 2,000 credit applicants with an
# XGBoost model (examples/credit-risk), keeping their ids.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --build
make -s -j"$(nproc 2>/dev/null || echo 2)" build/tandem
out=${1:-build/credit-risk-scores.csv}

build/tandem inspect examples/credit-risk/model.json
echo
build/tandem score --model examples/credit-risk/model.json \
  --in examples/credit-risk/applicants.csv --keep applicant_id --out "$out"
echo "scored $(($(wc -l <"$out") - 1)) applicants into $out:"
head -n 6 "$out"
