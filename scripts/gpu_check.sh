#!/usr/bin/env bash
# Everything collbench does on a GPU, in one run of a few minutes, on a machine with one GPU.
#
#   scripts/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT, else ./gpu-check-<time>)
#
# Steps (each bounded by `timeout`, so one hang cannot eat the others):
#   1. environment: nvidia-smi, CUDA/CuPy/NCCL versions; install carried wheels (.whl/: the
#      MPICH wheel and mpi4py) when this machine has no MPI; install collbench itself
#   2. kernels: scripts/gpu_kernels_check.py (reduce kernels vs numpy for every dtype/op and size,
#      reduction bandwidth vs a device-to-device copy, IPC collectives at 1/2/4 processes on the
#      one GPU, CUDA-graph per-op time), then its interp section (the schedule interpreter)
#   3. NCCL at world size 1: every collective × dtype × op, validated; CUDA-graph mode; every
#      custom schedule through the grouped send/recv executor
#   4. the cuda backend (IPC kernels) through collbench at 2 and 4 processes sharing the GPU,
#      and graph mode for the 8-byte one-shot allreduce
#   5. MPI on device buffers: the non-CUDA-aware error, then --stage-host
#   6. compressed collectives (kernels and nccl runners), alltoall/alltoallv, NVTX, the refusal of
#      two NCCL ranks on one GPU, the schedule interpreter at 3 processes
#   7. a short summary table, printed last
# Everything lands in OUTDIR/work; OUTDIR/gpu_check.tar.gz packs it (one file to fetch).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUTDIR=${1:-${OUT:-gpu-check-$(date +%Y%m%d-%H%M%S)}}
WORK="$OUTDIR/work"
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
STATUS=0

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }
run() {  # run LABEL SECONDS CMD...: record the exit status, never stop the script
    local label=$1 seconds=$2; shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" >"$WORK/$label.log" 2>&1
    local rc=$?
    tail -n 12 "$WORK/$label.log"
    echo "[$label] exit $rc after $((SECONDS - start)) s" | tee -a "$WORK/steps.txt"
    # pack after every step: if the whole run is cut off, what finished still comes back
    tar -czf "$OUTDIR/gpu_check.tar.gz" -C "$OUTDIR" work 2>/dev/null
    return $rc
}

step "1. environment"
nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv | tee "$WORK/nvidia-smi.csv"
nvidia-smi topo -m > "$WORK/topo.txt" 2>&1 || true
if ! "$PY" -c "import mpi4py" 2>/dev/null || [ ! -x "$(dirname "$(command -v "$PY")")/mpiexec" ]; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || echo "wheel install failed"
    fi
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$WORK/install.log" 2>&1 \
    || { echo "collbench install failed:"; tail -5 "$WORK/install.log"; STATUS=1; }
"$PY" - <<'PYEOF' | tee "$WORK/versions.txt"
import cupy, mpi4py, numpy
from cupy.cuda import nccl
from collbench.gpu.nccl_lib import version_string
print("cupy", cupy.__version__, "| numpy", numpy.__version__, "| mpi4py", mpi4py.__version__,
      "| nccl", version_string(nccl.get_version()) if nccl.available else "unavailable",
      "| driver", cupy.cuda.runtime.driverGetVersion(), "| runtime", cupy.cuda.runtime.runtimeGetVersion())
PYEOF
CB=("$PY" -m collbench run)

step "2. kernels (correctness, bandwidth, IPC at 1/2/4 processes, graph)"
run kernels 200 "$PY" scripts/gpu_kernels_check.py --out "$WORK/gpu_kernels_check.json" \
    --ranks 1,2,4 --ipc-budget 15 --skip-interp || STATUS=1
# the schedule interpreter (csrc/interp.cu): every registered allreduce/allgather/reduce_scatter
# schedule at 2, 3, 4, 8 ranks as streams of one process, chains, graphs, time per step
run interp 150 "$PY" scripts/gpu_kernels_check.py --out "$WORK/interp_check.json" \
    --skip-reduce --skip-bandwidth --skip-ipc --interp-budget 100 || STATUS=1

step "3. NCCL, world size 1"
run nccl-all 90 "${CB[@]}" allreduce allgather reduce_scatter broadcast reduce --backend nccl -np 1 \
    -d all -o all -b 0 -e 1M -f 32 -n 3 -w 1 --out "$WORK/nccl-np1-all.jsonl" || STATUS=1
run nccl-large 45 "${CB[@]}" allreduce allgather reduce_scatter --backend nccl -np 1 -d float32,bfloat16 \
    -b 4M -e 64M -f 16 --out "$WORK/nccl-np1-large.jsonl" || STATUS=1
run nccl-graph 45 "${CB[@]}" allreduce --backend nccl -np 1 -G 20 -n 50 -b 8 -e 16M -f 8 \
    --out "$WORK/nccl-np1-graph.jsonl" || STATUS=1
run nccl-schedules 60 "${CB[@]}" allreduce allgather reduce_scatter broadcast reduce --backend nccl --algo all \
    -np 1 -d float32,bfloat16,int8 -o sum,avg,max -b 0 -e 1M -f 32 -n 3 -w 1 \
    --out "$WORK/nccl-np1-schedules.jsonl" || STATUS=1

step "4. cuda backend (IPC kernels) at 2 and 4 processes on the one GPU"
run cuda-np2 75 "${CB[@]}" allreduce allgather reduce_scatter --backend cuda \
    --algo native,one_shot,two_shot,ipc_direct,ipc_hierarchical -np 2 -T 30 \
    -d float32,bfloat16,float16,int32 -o sum,avg,max -b 0 -e 4M -f 16 -n 5 -w 2 \
    --out "$WORK/cuda-np2.jsonl" || STATUS=1
run cuda-np4 75 "${CB[@]}" allreduce allgather reduce_scatter --backend cuda \
    --algo native,one_shot,two_shot,ipc_direct,ipc_hierarchical -np 4 -T 30 \
    -d float32,bfloat16 -o sum,avg -b 0 -e 1M -f 32 -n 3 -w 1 --out "$WORK/cuda-np4.jsonl" || STATUS=1
run cuda-interp-np2 75 "${CB[@]}" allreduce allgather reduce_scatter --backend cuda -np 2 -T 30 \
    --algo ring,recursive_doubling,rabenseifner,double_binary_tree,bruck,recursive_halving,direct \
    -d float32,bfloat16 -o sum,avg -b 0 -e 1M -f 32 -n 3 -w 1 --out "$WORK/cuda-interp-np2.jsonl" || STATUS=1
run cuda-graph 45 "${CB[@]}" allreduce --backend cuda --algo one_shot,two_shot -np 1 -G 200 -n 20 -b 8 -e 64K -f 8 \
    --out "$WORK/cuda-np1-graph.jsonl" || STATUS=1

step "5. MPI on device buffers"
run mpi-cuda-error 30 "${CB[@]}" allreduce --backend mpi --device cuda -np 2 -e 64
echo "(a non-zero exit with a clear message is expected above when the MPI is not CUDA-aware)"
run mpi-cuda-staged 45 "${CB[@]}" allreduce allgather --backend mpi --device cuda --stage-host -np 2 \
    -b 8 -e 16M -f 16 --out "$WORK/mpi-cuda-staged.jsonl" || STATUS=1

step "6. compressed collectives, alltoall(v), NVTX, refusals"
# csrc/compress.cu compiled and run against the host primitives, bit for bit
run compress-kernels 60 "$PY" tests/compress/gpu_kernel_checks.py || STATUS=1
# every nccl compressed runner against the mpi runner on the same inputs (one rank: NCCL refuses
# two ranks on one GPU, so the exchange is trivial but every kernel and the NCCL calls run)
run compress-nccl 60 "$(dirname "$(command -v "$PY")")/mpiexec" -n 1 "$PY" tests/compress/gpu_driver.py 7,1000,4099 \
    || STATUS=1
run compress-cli 60 "${CB[@]}" allreduce --backend nccl --algo all-compressed -np 1 -d float32,bfloat16 \
    -O density=0.05 -b 1K -e 4M -f 16 -n 3 -w 1 --out "$WORK/nccl-np1-compressed.jsonl" || STATUS=1
run nccl-alltoall 45 "${CB[@]}" alltoall alltoallv --backend nccl --algo all -np 1 -O skew=1 \
    -b 8 -e 1M -f 32 -n 3 -w 1 --out "$WORK/nccl-np1-alltoall.jsonl" || STATUS=1
run nvtx 45 "${CB[@]}" allreduce --backend nccl -np 1 --nvtx -b 8 -e 64K -f 8 -n 3 -w 1 \
    --out "$WORK/nccl-np1-nvtx.jsonl" || STATUS=1
# two ranks on one GPU: NCCL cannot run them; collbench must refuse with one line, not hang
run nccl-shared-refusal 45 "${CB[@]}" allreduce --backend nccl -np 2 -e 64 --out "$WORK/nccl-np2-shared.jsonl"
echo "(a non-zero exit naming the shared device is expected above)"
run cuda-interp-np3 75 "${CB[@]}" allreduce allgather reduce_scatter --backend cuda -np 3 -T 30 \
    --algo ring,recursive_doubling,bruck,direct -d float32 -o sum -b 0 -e 64K -f 64 -n 2 -w 1 \
    --out "$WORK/cuda-interp-np3.jsonl" || STATUS=1

step "7. summary"
"$PY" scripts/gpu_summary.py "$WORK" | tee "$WORK/summary.txt"
tar -czf "$OUTDIR/gpu_check.tar.gz" -C "$OUTDIR" work
cat "$WORK/steps.txt"
echo "overall: $([ $STATUS -eq 0 ] && echo PASS || echo FAIL)"
exit $STATUS
