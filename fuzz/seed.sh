#!/usr/bin/env bash
# Seed the fuzz corpora from the shipped samples, then run a target, e.g.:
#   cargo install cargo-fuzz && fuzz/seed.sh && cd fuzz && cargo +nightly fuzz run mappings -- -max_total_time=300
# (cargo-fuzz needs a nightly toolchain for its sanitizer flags: `rustup toolchain install nightly`; see docs/testing.md.)
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/mappings corpus/xml_source corpus/json_source corpus/canonical_validator corpus/csv_rows corpus/xlsx_rows corpus/check_file
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
# csv_rows: the first byte picks the declared charset (0 none, 1 UTF-8, 2 GBK)
csv='序号,行政处罚决定书文号,行政相对人名称,统一社会信用代码,处罚类别,罚款金额（万元）,处罚决定日期,处罚机关
1,穗医保罚〔2025〕1号,某医院,91440104931661018F,罚款;警告,18.9,2025/03/14,广州市医疗保障局
,,,,,,,
'
printf '\x00%s' "$csv" > corpus/csv_rows/template-undeclared
printf '\x01\xEF\xBB\xBF%s' "$csv" > corpus/csv_rows/template-bom
printf '\x02' | cat - <(printf '%s' "$csv" | iconv -f UTF-8 -t GBK) > corpus/csv_rows/template-gbk
printf 'file=a.xlsx\nsha256=%064d\nrecords=6\nbytes=100\n' 0 > corpus/check_file/sha256
printf '# 校验文件\nsm3=%064d\nrecords=0\n' 0 > corpus/check_file/sm3
# xlsx_rows: real workbooks are the only useful seeds; drop any .xlsx of the national template
# into corpus/xlsx_rows (the end-to-end tests build one: tests/files.rs, template_xlsx).
mkdir -p corpus/file_feedback
printf '{"file": "a.csv", "records": [{"idempotency_key": "k1", "result": "accepted"}, {"idempotency_key": "k2", "result": "rejected", "reason": "CF_WSH", "retry": false}]}' > corpus/file_feedback/json
printf 'idempotency_key,result,reason,retry\nk1,accepted,,\nk2,rejected,"a, b",1\n' > corpus/file_feedback/csv
echo "seeded: $(ls corpus/*/ | wc -l) files"
