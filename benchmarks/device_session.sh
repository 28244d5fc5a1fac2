#!/usr/bin/env bash
# One GPU session, as run on a lent H100/H200 (docs/benchmarks.md has the numbers it printed):
# the CUDA tests, the training benchmarks, and the sweeps behind Power et al. Figures 1-2.
# Each part has its own time limit so that one slow part cannot eat the rest; everything the
# session produced (logs, sweep metrics, final S5 weights) is packed under $OUT.
#
#   OUT=/tmp/out bash benchmarks/device_session.sh
#
# Needs python3 with torch; TransformerLens may come from wheels in .whl/ (see docs/benchmarks.md).
set -u
OUT=${OUT:-/tmp/grokinterp-device}
RUNS=${RUNS:-/tmp/grokinterp-device-runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gi() { python3 -m grokinterp.cli "$@"; }
part() { echo; echo "=== $(date +%T) $*"; }
SECONDS=0

part machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/machine.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/machine.txt"

part CUDA tests
timeout 70 python3 -m pytest -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/tests.log" | tail -25

part "benchmarks (a)-(c)"
timeout 90 python3 benchmarks/bench_training.py --device cuda --steps 100 --ensembles 1,16,64,256 --to-grok 2>&1 | tee "$OUT/bench.log"

# Figure 1 centre (and 2 right, two operations): S5 and x+y mod 97, 6 fractions x 3 seeds, Power's
# 2-layer model, batch 512, AdamW lr 1e-3 wd 1.
part "sweep fig1 (t=${SECONDS}s)"
timeout 135 python3 -m grokinterp.cli sweep --name fig1 --tasks s5_mul,add --p 97 --fracs 0.3,0.4,0.5,0.6,0.7,0.8 --seeds 0,1,2 \
  --model power-2l --batch-sizes 512 --steps 10000 --checkpoint-every 100 --weights-every 2500 --checkpoint-dtype float16 \
  --max-ensemble 64 --no-figures --runs-dir "$RUNS" 2>&1 | tee "$OUT/sweep_fig1.log" | tail -42

# Figure 2 left: regularisers on x+y mod 97 (weight decay to zero / to init, none, Grokfast, perpendicular).
part "sweep fig2 regularisers (t=${SECONDS}s)"
timeout 90 python3 -m grokinterp.cli sweep --name fig2-regs --tasks add --p 97 --fracs 0.3,0.4,0.5,0.6,0.7,0.8 --seeds 0 \
  --wds 0,1 --optimizers adamw,adamw-to-init,grokfast,perpendicular --model power-2l --batch-sizes 512 --steps 5000 \
  --checkpoint-every 100 --weights-every 5000 --checkpoint-dtype float16 --max-ensemble 64 --no-figures --runs-dir "$RUNS" \
  2>&1 | tee "$OUT/sweep_fig2.log" | tail -52

# Issue 7: finite-data 5-digit addition and repeated subsequences, trained longer than a CPU allows.
part "add5-finite (t=${SECONDS}s)"
timeout 70 python3 -m grokinterp.cli train --run add5-finite --steps 20000 --no-progress --runs-dir "$RUNS" 2>&1 | tail -3
part "repeat-2l-finite (t=${SECONDS}s)"
timeout 30 python3 -m grokinterp.cli train --run repeat-2l-finite --no-progress --runs-dir "$RUNS" 2>&1 | tail -3

# Figure 2 right: best validation accuracy per operation (with fig1's two).
part "sweep ops (t=${SECONDS}s)"
timeout 50 python3 -m grokinterp.cli sweep --name ops --tasks sub,div,sq_sum,cube_xy,s5_conj --p 97 --fracs 0.3,0.4,0.5,0.6,0.7,0.8 \
  --seeds 0 --model power-2l --batch-sizes 512 --steps 5000 --checkpoint-every 100 --weights-every 5000 \
  --checkpoint-dtype float16 --no-figures --runs-dir "$RUNS" 2>&1 | tee "$OUT/sweep_ops.log" | tail -34

part "pack (t=${SECONDS}s)"
cd "$RUNS" || exit 1
tar czf "$OUT/sweeps_meta.tgz" --exclude='*.safetensors' .
for half in "0.3 0.4 0.5" "0.6 0.7 0.8"; do
  files=$(for f in $half; do ls -d fig1/s5_mul_f${f}_*/checkpoints/step_00010000.safetensors 2>/dev/null; done)
  [ -n "$files" ] && tar cf "$OUT/s5_final_${half%% *}.tar" $files
done
ls -la "$OUT"
echo "total ${SECONDS}s"
