#!/usr/bin/env bash
# GPU sessions as run on a lent H200 (docs/benchmarks.md has the numbers they printed): the CUDA
# tests, the training benchmarks, and the sweeps behind Power et al. Figures 1-2. Each part has its
# own time limit, so one slow part cannot eat the rest; logs go to $OUT, runs to $RUNS, and the
# pack part bundles the run folders (without weights, except the final S5 checkpoints) into $OUT.
#
#   OUT=/tmp/out bash benchmarks/device_session.sh [PART ...]
#   parts: tests bench bench-tf32 fig1 fig2 sequences ops pack s5long s5post census speed16
#   (default: all but s5long, s5post, census, speed16)
#
# Needs python3 with torch. TransformerLens is optional: without it (the lent machines' image has
# none) the benchmarks skip the plain-loop baseline with a message and print every other ratio.
set -u
OUT=${OUT:-/tmp/grokinterp-device}
RUNS=${RUNS:-/tmp/grokinterp-device-runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
GI=(python3 -m grokinterp.cli)
FRACS=0.3,0.4,0.5,0.6,0.7,0.8
SWEEP=(--p 97 --fracs $FRACS --model power-2l --batch-sizes 512 --checkpoint-every 100 --checkpoint-dtype float16
       --max-ensemble 64 --no-figures --runs-dir "$RUNS")

tests() { timeout 90 python3 -m pytest -p no:cacheprovider tests/test_cuda.py tests/test_models.py -rA 2>&1 | tail -30; }
bench() { timeout 90 python3 benchmarks/bench_training.py --device cuda --steps 100 --ensembles 1,16,64,256 --to-grok; }
bench-tf32() { timeout 90 python3 benchmarks/bench_training.py --device cuda --steps 100 --ensembles 1,16,64,256 --to-grok --tf32; }
# Figure 1 centre (and 2 right for two operations): S5 and x+y mod 97, 6 fractions x 3 seeds, Power's
# 2-layer model, batch 512, AdamW lr 1e-3 wd 1, 10k steps.
fig1() { timeout 135 "${GI[@]}" sweep --name fig1 --tasks s5_mul,add --seeds 0,1,2 --steps 10000 --weights-every 2500 "${SWEEP[@]}" | tail -40; }
# Figure 2 left: regularisers on x+y mod 97 (weight decay 0 / 1, toward zero or init, Grokfast, perpendicular).
fig2() { timeout 90 "${GI[@]}" sweep --name fig2-regs --tasks add --seeds 0 --wds 0,1 --optimizers adamw,adamw-to-init,grokfast,perpendicular \
           --steps 5000 --weights-every 5000 "${SWEEP[@]}" | tail -50; }
# Issue 7: finite-data 5-digit addition and repeated subsequences.
sequences() { timeout 70 "${GI[@]}" train --run add5-finite --steps 20000 --no-progress --runs-dir "$RUNS"
              timeout 30 "${GI[@]}" train --run repeat-2l-finite --no-progress --runs-dir "$RUNS"; }
# Figure 2 right: best validation accuracy per operation (with fig1's two).
ops() { timeout 120 "${GI[@]}" sweep --name ops --tasks sub,div,sq_sum,cube_xy,s5_conj --seeds 0 --steps 5000 --weights-every 5000 "${SWEEP[@]}" | tail -32; }
# Issue 4: Power et al.'s 1e5-step budget on S5 (50% data, seeds 0-2), weights every 10k steps, to see
# whether long weight decay leaves output weights that cluster into cosets: s5long with power-2l at weight
# decay 1 and 2, s5post with Power's own block (power-2l-post) at 1. One tar per run (metrics, config,
# weights at steps 0, 10k, 20k, 40k, 60k, 80k and 100k) comes back in $OUT.
_s5long() {  # sweep name, model, weight decays, time limit (s)
  ( while sleep 60; do tail -qn1 "$RUNS/$1"/*_s0_*/metrics.csv 2>/dev/null; done ) & local monitor=$!
  timeout "$4" "${GI[@]}" sweep --name "$1" --model "$2" --wds "$3" --tasks s5_mul --fracs 0.5 --seeds 0,1,2 --steps 100000 \
    --checkpoint-every 500 --weights-every 10000 --batch-sizes 512 --checkpoint-dtype float16 \
    --max-ensemble 64 --no-figures --runs-dir "$RUNS" | tail -20
  kill $monitor
  (cd "$RUNS/$1" && for d in */; do
     tar cf "$OUT/${d%/}.tar" --exclude=state.safetensors --exclude='step_000[3579]0000.safetensors' "$d"; done); ls -la "$OUT"; }
s5long() { _s5long s5long power-2l 1,2 450; }
s5post() { _s5long s5post power-2l-post 1 270; }
# Issue 17: a census of Power's block on S5 (50% data, AdamW lr 1e-3, wd 1, batch 512): 48 seeds (each its
# own split) in one ensemble, and beside it 16 seeds at 30% data; 40k steps, weights every 5k. The packer
# brings back every member's metrics and embeddings, and whole the members whose W_U settles in a 5-dim irrep.
# Power's 1e5 steps for 48 seeds take about 20 H200 minutes, more than one session's device time: run it in
# three sessions of 16 seeds, without the 30% sweep, each packed under its own name, e.g.
#   CENSUS_STEPS=100000 CENSUS_SEEDS=0-15 CENSUS_NAME=census100k_a CENSUS30=0 CENSUS_S=480 bash benchmarks/device_session.sh census
# (then 16-31 as _b, 32-47 as _c), and pool them: python benchmarks/s5_census_table.py A B C --pool census100k
census() {
  local first=${CENSUS_SEEDS:-0-47} name=${CENSUS_NAME:-census50} a b=
  local seeds=$(seq -s, "${first%-*}" "${first#*-}") seeds16=$(seq -s, 0 15)
  local common=(--model power-2l-post --tasks s5_mul --wds 1 --steps "${CENSUS_STEPS:-40000}" --checkpoint-every 500 --weights-every 5000
                --batch-sizes 512 --checkpoint-dtype float16 --max-ensemble 64 --no-figures --runs-dir "$RUNS")
  ( while sleep 60; do tail -qn1 "$RUNS"/census*/s5_mul_f0.*_s"${first%-*}"_*/metrics.csv 2>/dev/null; done ) & local monitor=$!
  timeout "${CENSUS_S:-420}" "${GI[@]}" sweep --name "$name" --fracs 0.5 --seeds "$seeds" "${common[@]}" > "$RUNS/$name.log" 2>&1 & a=$!
  if [ "${CENSUS30:-1}" = 1 ]; then
    timeout "${CENSUS_S:-420}" "${GI[@]}" sweep --name census30 --fracs 0.3 --seeds "$seeds16" "${common[@]}" > "$RUNS/census30.log" 2>&1 & b=$!
  fi
  wait $a $b; kill $monitor
  tail -n3 "$RUNS"/*.log
  python3 benchmarks/s5_census_pack.py "$RUNS" "$name" ${b:+census30} --out "$OUT"; ls -la "$OUT"; }
# Issue 16 item 1 (about 6 minutes, at most 8.5 by the time limits): plain loop / eager / captured / compiled+captured step, E = 16/64/256 captured
# vs compiled, modadd113 to 99% captured vs compiled, `grokinterp train --run modadd113` end to end with writes between
# steps vs the background writer (and compiled), the profiler's top kernels, then the compiled step's CUDA test.
# Three processes with their own time limits, so a slow compile cannot take the others' output with it.
speed16() {
  timeout 270 python3 benchmarks/bench_training.py --device cuda --steps 100 --ensembles 16,64,256 --compile --to-grok
  timeout 130 python3 benchmarks/bench_training.py --device cuda --skip a,b --e2e --compile
  timeout 60 python3 benchmarks/bench_training.py --device cuda --skip a,b --profile --compile
  timeout 45 python3 -m pytest -p no:cacheprovider tests/test_cuda.py -k compiled -rA 2>&1 | tail -5; }
pack() {
  (cd "$RUNS" && tar czf "$OUT/runs_meta.tgz" --exclude='*.safetensors' . &&
   for half in "0.3 0.4 0.5" "0.6 0.7 0.8"; do
     files=$(for f in $half; do ls -d fig1/s5_mul_f${f}_*/checkpoints/step_00010000.safetensors 2>/dev/null; done)
     [ -n "$files" ] && tar cf "$OUT/s5_final_${half%% *}.tar" $files
   done); ls -la "$OUT"; }

SECONDS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for p in "${@:-tests bench bench-tf32 fig1 fig2 sequences ops pack}"; do
  for part in $p; do
    echo; echo "=== $part (t=${SECONDS}s)"
    "$part" 2>&1 | tee "$OUT/$part.log"
  done
done
echo "total ${SECONDS}s"
