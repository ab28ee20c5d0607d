#!/usr/bin/env bash
# The ports' workloads (kiln_bench --mode attention|gpt|resnet, bench/models.cpp) against PyTorch
# (bench/peers/models_torch.py), alternating kiln and peer REPEATS times (default 5) so both see the
# same noise. Per case, one JSON line: the medians over the runs of each run's median step (or
# fused/math time) for kiln and the peer, and peer/kiln (above 1: kiln is faster).
#   [REPEATS=5] bench/compare_models.sh BUILD [PEER_PYTHON]
# PEER_PYTHON defaults to the PyPI PyTorch of bench/peers/setup.sh (.venv-peers).
set -euo pipefail
build=${1:?build dir}
here=$(cd "$(dirname "$0")" && pwd)
py=${2:-$here/../.venv-peers/bin/python}
reps=${REPEATS:-5}
[[ -x "$py" ]] || { echo "compare_models: no peer Python at $py (run bench/peers/setup.sh)" >&2; exit 2; }
# name | flags shared by kiln_bench and models_torch.py | the JSON key to compare
cases=(
  "sdpa-causal-T256|--mode attention --threads 2 --batch-size 4 --heads 4 --seq 256 --head-dim 64 --causal 1|fused_ms"
  "sdpa-causal-T1024|--mode attention --threads 2 --batch-size 1 --heads 4 --seq 1024 --head-dim 64 --causal 1|fused_ms"
  "gpt-1thread|--mode gpt --threads 1 --batch-size 32 --seq 64|step_ms"
  "resnet20-2threads|--mode resnet --threads 2 --batch-size 128 --steps 15 --warmup 3|step_ms"
  "resnet20-2threads-compete1|--mode resnet --threads 2 --batch-size 128 --steps 15 --warmup 3 --compete 1|step_ms"
)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "# $(date -u +%FT%TZ) $(git -C "$here" rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < reps; ++i)); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name flags key <<<"$c"
    # shellcheck disable=SC2086
    k=$("$build/bench/kiln_bench" $flags | grep '^{' | tail -1)
    # shellcheck disable=SC2086
    p=$(OMP_NUM_THREADS=$(sed 's/.*--threads \([0-9]*\).*/\1/' <<<"$flags") "$py" "$here/peers/models_torch.py" $flags | grep '^{' | tail -1)
    printf '%s\t%s\t%s\t%s\n' "$name" "$key" "$k" "$p" >>"$out"
    echo "$name run $i: kiln $k" >&2
    echo "$name run $i: torch $p" >&2
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, key, k, p = line.rstrip("\n").split("\t")
    k, p = json.loads(k), json.loads(p)
    r = rows.setdefault(name, {"key": key, "kiln": [], "torch": [], "kiln_math": [], "torch_math": []})
    r["kiln"].append(k[key]); r["torch"].append(p[key])
    if "math_ms" in k: r["kiln_math"].append(k["math_ms"]); r["torch_math"].append(p["math_ms"])
for name, r in rows.items():
    km, tm = statistics.median(r["kiln"]), statistics.median(r["torch"])
    o = {"bench": "compare_models", "case": name, "metric": r["key"], "runs": len(r["kiln"]),
         "kiln": round(km, 3), "torch": round(tm, 3), "torch_over_kiln": round(tm / km, 2)}
    if r["kiln_math"]:
        o["kiln_math_ms"] = round(statistics.median(r["kiln_math"]), 3)
        o["torch_math_ms"] = round(statistics.median(r["torch_math"]), 3)
    print(json.dumps(o))
PY
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
