#!/usr/bin/env bash
# Seed the fuzz corpora from the shipped samples, then run a target, e.g.:
#   cargo install cargo-fuzz && fuzz/seed.sh && cd fuzz && cargo +nightly fuzz run mappings -- -max_total_time=300
# (cargo-fuzz needs a nightly toolchain for its sanitizer flags: `rustup toolchain install nightly`; see docs/testing.md.)
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/mappings corpus/xml_source corpus/json_source corpus/canonical_validator
i=0
for f in ../examples/samples/*.json ../examples/samples/*.xml; do
  # mappings: first byte selects the mapping; try every selector with every sample
  for sel in $(seq 0 10); do printf "\\x$(printf %02x "$sel")" | cat - "$f" > "corpus/mappings/seed-$i-$sel"; done
  case "$f" in
    *.xml) cp "$f" corpus/xml_source/ ;;
    *.json) cp "$f" corpus/json_source/ ;;
  esac
  i=$((i+1))
done
python3 -c "import json,sys; [open(f'corpus/canonical_validator/r{i}.json','w').write(json.dumps(r, ensure_ascii=False)) for i,r in enumerate(json.load(open('../examples/samples/canonical.json')))]"
mkdir -p corpus/file_feedback
printf '{"file": "a.csv", "records": [{"idempotency_key": "k1", "result": "accepted"}, {"idempotency_key": "k2", "result": "rejected", "reason": "CF_WSH", "retry": false}]}' > corpus/file_feedback/json
printf 'idempotency_key,result,reason,retry\nk1,accepted,,\nk2,rejected,"a, b",1\n' > corpus/file_feedback/csv
echo "seeded: $(ls corpus/*/ | wc -l) files"
