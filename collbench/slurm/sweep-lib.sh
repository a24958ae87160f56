# shellcheck shell=bash
# collbench node-count sweep: the logic every generated sbatch script carries (inlined verbatim by
# `collbench slurm`, so a submitted script is self-contained and its copy in the results directory
# records exactly what ran). Cluster settings do not live here: they come from the profiles in
# collbench/slurm/profiles.py, written as CB_* variables at the top of each script.
#
# Inside one allocation of N nodes, for each node count k in CB_NODE_COUNTS and each run in CB_RUNS:
#   srun -N k -w <first k hosts> --ntasks-per-node=R ... collbench run ... --out Nk-<run>.jsonl
# with a time limit per step, so a failing or hung step costs only itself. A failed step is retried
# once on k hosts without the one srun blamed (CB_RETRY), so one bad node does not fail every node
# count. Before the sweep: a preflight, an NCCL probe and a network baseline (point-to-point between
# two nodes, one pair per NIC). Leaves
#   $CB_RESULTS/<cluster>/<jobid>/   sweep.json (plan; `collbench report` recognises the directory by it),
#                                    steps.ndjson (one record per step attempt, with its hosts),
#                                    N<k>-<run>.jsonl, baseline/, logs/,
#                                    job/ (scontrol, modules, env, topology, NCCL probe, script)

# ---- settings (the generated script sets these; defaults make this file usable on its own) ----
: "${CB_CLUSTER:=generic}"
: "${CB_NODE_COUNTS:=}"                  # empty: 1 2 4 ... up to the allocation's node count
: "${CB_COLLECTIVES:=allreduce allgather reduce_scatter}"
: "${CB_SIZES:=-b 8 -e 16M -f 2}"
: "${CB_ARGS:=}"                         # more `collbench run` flags for every run
: "${CB_RUNS:=mpi --backend mpi --algo native}"
: "${CB_LAUNCHER:=srun}"                 # srun | mpiexec
: "${CB_SRUN_MPI:=}"                     # srun --mpi=TYPE (empty: the cluster's MpiDefault)
: "${CB_SRUN_ARGS:=}"                    # e.g. --cpu-bind=cores --gpu-bind=none
: "${CB_RANKS_PER_NODE:=${SLURM_NTASKS_PER_NODE:-1}}"
: "${CB_CPUS_PER_TASK:=${SLURM_CPUS_PER_TASK:-}}"
: "${CB_GPUS_PER_NODE:=${SLURM_GPUS_PER_NODE:-0}}"
: "${CB_GPU_MAP:=}"                      # collbench --gpu-map for the GPU backends
: "${CB_STEP_TIMEOUT:=900}"              # seconds per step before it is killed
: "${CB_CHECK_TIMEOUT:=180}"             # seconds for the preflight, the NCCL probe, each baseline pair
: "${CB_RETRY:=failed}"                  # failed: retry a failed step once on other hosts; all: timeouts too; none
: "${CB_BASELINE:=auto}"                 # auto: point-to-point baseline when there are 2+ nodes; 0: off
: "${CB_BASELINE_SIZES:=-b 8 -e 256M -f 4}"  # its sizes: up to where bandwidth levels off
: "${CB_NIC_GPUS:=}"                     # baseline with NCCL: GPU nearest each NIC (one pair each)
: "${CB_RESULTS:=${SLURM_SUBMIT_DIR:-$PWD}/results}"
: "${CB_PYTHON:=python3}"
: "${CB_MPIEXEC:=}"                      # mpiexec launcher: default the one beside CB_PYTHON
: "${CB_NCCL_NET_MULTINODE:=}"           # NCCL_NET for steps on more than one node only
: "${CB_NCCL_PROBE:=auto}"               # auto: when GPUs are present and a run uses NCCL
: "${CB_FORBID_WHEEL_MPICH:=0}"          # 1: refuse mpi4py running on the pip MPICH wheel

cb_say() { printf '[collbench-sweep %(%H:%M:%S)T] %s\n' -1 "$*"; }
cb_die() { printf '[collbench-sweep] error: %s\n' "$*" >&2; exit 2; }

# JSON string literal of $1
cb_json() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# JSON array of strings from the arguments
cb_json_array() {
    local out="" item
    for item in "$@"; do out+="${out:+,}$(cb_json "$item")"; done
    printf '[%s]' "$out"
}

cb_event() { printf '%s\n' "$1" >>"$CB_DIR/steps.ndjson"; }

# NCCL_NET for a step on $1 nodes. HPE: forcing the network plugin on a single node only costs
# (VNI allocation); across nodes it makes a missing plugin fail instead of falling back to TCP.
cb_nccl_net() {
    if (($1 > 1)) && [[ -n $CB_NCCL_NET_MULTINODE ]]; then
        export NCCL_NET=$CB_NCCL_NET_MULTINODE
    else
        unset NCCL_NET
    fi
}

# The node counts to sweep, largest last; default powers of two up to the allocation (and it).
cb_node_counts() {
    local n=$1 k
    local given=()
    if [[ -n $CB_NODE_COUNTS ]]; then
        read -r -a given <<<"${CB_NODE_COUNTS//,/ }"
        printf '%s\n' "${given[@]}" | sort -n -u
        return
    fi
    for ((k = 1; k < n; k *= 2)); do echo "$k"; done
    echo "$n"
}

# Comma-separated list of $@
cb_join() { local IFS=,; echo "$*"; }

# Hosts in a comma-separated list
cb_count() { local list=(); IFS=, read -r -a list <<<"$1"; echo "${#list[@]}"; }

# The $1 hosts a step starts on: the first of the allocation, except that hosts a step already
# failed on (CB_SUSPECTS) go last, so one bad node costs one retry, not one per node count.
cb_pick_hosts() {
    local k=$1 h good=() bad=()
    for h in "${CB_HOSTS[@]}"; do
        if [[ " ${CB_SUSPECTS[*]} " == *" $h "* ]]; then bad+=("$h"); else good+=("$h"); fi
    done
    good+=("${bad[@]}")
    cb_join "${good[@]:0:k}"
}

# Launch "$@" (a command line) on hosts $1 (comma-separated) with $2 ranks each, killed after $3 s.
cb_launch_on() {
    local hosts=$1 rpn=$2 limit=$3 k
    shift 3
    k=$(cb_count "$hosts")
    local ntasks=$((k * rpn))
    local minutes=$(((limit + 59) / 60 + 1))
    local cmd=()
    case $CB_LAUNCHER in
    srun)
        cmd=(srun -N "$k" -n "$ntasks" --ntasks-per-node="$rpn" -w "$hosts"
            --kill-on-bad-exit=1 --time="$minutes")
        [[ -n $CB_CPUS_PER_TASK ]] && cmd+=(-c "$CB_CPUS_PER_TASK")
        [[ -n $CB_SRUN_MPI ]] && cmd+=(--mpi="$CB_SRUN_MPI")
        [[ $CB_GPUS_PER_NODE != 0 ]] && cmd+=(--gpus-per-node="$CB_GPUS_PER_NODE")
        # shellcheck disable=SC2206  # flags are split on blanks on purpose
        cmd+=($CB_SRUN_ARGS)
        ;;
    mpiexec)
        cmd=("$CB_MPIEXEC" -n "$ntasks" -ppn "$rpn" -hosts "$hosts")
        ;;
    *) cb_die "CB_LAUNCHER must be srun or mpiexec, not '$CB_LAUNCHER'" ;;
    esac
    # srun's own limit is the backstop; `timeout` ends the step on time and with a known status
    timeout --signal=TERM --kill-after=20 "$limit" "${cmd[@]}" "$@"
}

# Cancel job steps that outlived their srun (a killed srun can leave its tasks behind for a while).
cb_cancel_leftover_steps() {
    local step
    while read -r step; do
        [[ $step =~ ^[0-9]+\.[0-9]+$ ]] && scancel --quiet --signal=KILL "$step" 2>/dev/null
    done < <(squeue -h -s -j "$SLURM_JOB_ID" -o %i 2>/dev/null)
    return 0
}

cb_write_job_metadata() {
    local meta=$CB_DIR/job
    mkdir -p "$meta"
    scontrol show job "$SLURM_JOB_ID" >"$meta/scontrol.txt" 2>&1
    scontrol show hostnames "$SLURM_JOB_NODELIST" >"$meta/nodes.txt" 2>&1
    if command -v module >/dev/null 2>&1 || declare -F module >/dev/null; then
        module -t list >"$meta/modules.txt" 2>&1
    else
        echo "(no module command on this system)" >"$meta/modules.txt"
    fi
    env | LC_ALL=C sort | grep -E '^(SLURM|SRUN|NCCL|FI_|CXI|MPICH|MPIR_CVAR|OMPI|PMIX|PMI_|UCX|CUDA|OFI_NCCL|OMP_|CB_|COLLBENCH|LD_LIBRARY_PATH|PATH)' \
        >"$meta/env.txt" 2>&1
    srun --mpi=list >"$meta/srun-mpi-list.txt" 2>&1
    {
        echo "\$ $CB_PYTHON -m collbench --version"
        "$CB_PYTHON" -m collbench --version 2>&1
        echo "\$ $CB_PYTHON -c 'import mpi4py; print(mpi4py.get_config())'"
        "$CB_PYTHON" -c 'import mpi4py, sys; print(mpi4py.__version__, mpi4py.get_config()); print(sys.executable)' 2>&1
    } >"$meta/software.txt"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi topo -m >"$meta/nvidia-smi-topo.txt" 2>&1
        nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total --format=csv \
            >"$meta/nvidia-smi.csv" 2>&1
    else
        echo "(nvidia-smi not found: no NVIDIA GPUs on $(hostname -s))" >"$meta/nvidia-smi-topo.txt"
    fi
    if command -v fi_info >/dev/null 2>&1; then
        fi_info -p cxi >"$meta/fi_info-cxi.txt" 2>&1
    fi
    # the script that ran (Slurm's copy of it), for the record
    cp "$0" "$meta/script.sbatch" 2>/dev/null || true
}

# Every rank must see the whole job: a mismatched MPI ("rank 0 of 1" everywhere) is caught here,
# before the sweep spends the allocation. Also refuses the pip MPICH wheel where CB_FORBID_WHEEL_MPICH=1.
cb_preflight() {
    local out=$CB_DIR/job/preflight.txt rc cuda=0
    # CuPy must run on these GPUs (e.g. cupy-cuda12x under a CUDA 11 driver fails only on a compute node)
    [[ $CB_GPUS_PER_NODE != 0 ]] && grep -q -E -- '--(backend[ =](nccl|cuda)|device[ =]cuda)' <<<"$CB_RUNS" && cuda=1
    cb_say "preflight: 1 node x $CB_RANKS_PER_NODE ranks, checking that mpi4py sees one job"
    cb_launch_on "$(cb_pick_hosts 1)" "$CB_RANKS_PER_NODE" "$CB_CHECK_TIMEOUT" \
        "$CB_PYTHON" -m collbench.slurm preflight --ranks "$CB_RANKS_PER_NODE" \
        --forbid-wheel-mpich "$CB_FORBID_WHEEL_MPICH" --check-cuda "$cuda" >"$out" 2>&1
    rc=$?
    cb_cancel_leftover_steps
    cb_event "{\"event\":\"preflight\",\"rc\":$rc}"
    if ((rc != 0)); then
        sed 's/^/  | /' "$out" | tail -n 20 >&2
        cb_die "preflight failed (exit $rc; see $out)"
    fi
}

# A short NCCL_DEBUG=INFO run on two nodes (one if that is all there is) and a verdict: network
# plugin found, or NCCL fell back to TCP sockets. Only meaningful with GPUs; skipped cleanly elsewhere.
cb_nccl_probe() {
    local reason="" dir=$CB_DIR/job/nccl-probe verdict k rc
    if [[ $CB_NCCL_PROBE == 0 ]]; then
        reason="disabled (CB_NCCL_PROBE=0)"
    elif ! command -v nvidia-smi >/dev/null 2>&1; then
        reason="no GPUs (nvidia-smi not found)"
    elif [[ $CB_NCCL_PROBE == auto ]] && ! grep -q -E -- '--backend[ =]nccl' <<<"$CB_RUNS"; then
        reason="no run uses --backend nccl"
    fi
    if [[ -n $reason ]]; then
        verdict="skipped: $reason"
        cb_say "NCCL probe $verdict"
    else
        k=$((${#CB_HOSTS[@]} >= 2 ? 2 : 1))
        mkdir -p "$dir"
        cb_say "NCCL probe: allreduce 1M on $k node(s) with NCCL_DEBUG=INFO"
        (
            cb_nccl_net "$k"
            export NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET,ENV NCCL_DEBUG_FILE=$dir/nccl.%h.%p.log
            local gpu_map=()
            [[ -n $CB_GPU_MAP ]] && gpu_map=(--gpu-map "$CB_GPU_MAP")
            cb_launch_on "$(cb_pick_hosts "$k")" "$CB_RANKS_PER_NODE" "$CB_CHECK_TIMEOUT" \
                "$CB_PYTHON" -m collbench run allreduce --backend nccl -b 1M -e 1M -n 5 -w 2 -c 1 \
                --placement out-of-place "${gpu_map[@]}" --out "$dir/probe.jsonl"
        ) >"$dir/probe.out" 2>&1
        rc=$?
        cb_cancel_leftover_steps
        verdict=$("$CB_PYTHON" -m collbench.slurm nccl-verdict "$dir" --rc "$rc" --nodes "$k" 2>&1)
        cb_say "NCCL probe: $verdict"
    fi
    printf '%s\n' "$verdict" >"$CB_DIR/job/nccl-probe.txt"
    cb_event "{\"event\":\"nccl_probe\",\"verdict\":$(cb_json "$verdict")}"
}

# The host srun names first for a task that ended on its own with an error ("srun: error: n2:
# task 3: Exited with exit code 1"), not one it killed after another task failed; empty if none.
cb_failed_host() {
    sed -n -E '/: (Killed|Terminated)$/d; s/^srun: error: ([^: ]+): tasks? [0-9,-]+: .+$/\1/p' "$1" | head -n 1
}

# The $1 hosts for a retry of an attempt on hosts $2 that failed, without host $3 (when srun named
# none, the attempt's first host: the one every node count shares). Hosts the attempt did not use
# come first. Fails when the allocation has too few hosts left.
cb_retry_hosts() {
    local k=$1 tried=",$2," avoid=${3:-${2%%,*}} h out=()
    for h in "${CB_HOSTS[@]}"; do [[ $tried != *",$h,"* ]] && out+=("$h"); done
    for h in "${CB_HOSTS[@]}"; do [[ $tried == *",$h,"* && $h != "$avoid" ]] && out+=("$h"); done
    ((${#out[@]} >= k)) || return 1
    cb_join "${out[@]:0:k}"
}

# Whether a step that ended with status $1 is retried (CB_RETRY)
cb_retries() {
    case $CB_RETRY in
    failed) [[ $1 == failed ]] ;;
    all) [[ $1 == failed || $1 == timeout ]] ;;
    *) return 1 ;;
    esac
}

# Run "$@" as one step, with one retry on other hosts if it fails. $1: file stem (results
# $CB_DIR/<stem>.jsonl, which "$@" must write, log $CB_DIR/logs/<stem>.out), $2: node count,
# $3: ranks per node, $4: time limit (s), $5: the JSON fields that start its records, $6: what to
# call it in the job's output. CB_STEP_ENV holds VAR=value settings for it. Each attempt is one
# record in steps.ndjson with the hosts it ran on; a failed attempt's files are kept as
# <stem>.attempt1.*. Succeeds when the step (or its retry) is ok.
cb_run_step() {
    local stem=$1 k=$2 rpn=$3 limit=$4 fields=$5 label=$6 hosts attempt=1 rc status start seconds
    local file log suspect="" retry_hosts extra="" previous=""
    shift 6
    file=$stem.jsonl
    log=logs/$stem.out
    hosts=$(cb_pick_hosts "$k")
    while :; do
        cb_say "===== BEGIN $label nodes=$hosts ranks=$((k * rpn))${previous:+ (retry: attempt $attempt)} ====="
        start=$SECONDS
        (
            cb_nccl_net "$k"
            ((${#CB_STEP_ENV[@]})) && export "${CB_STEP_ENV[@]}"
            cb_launch_on "$hosts" "$rpn" "$limit" "$@"
        ) >"$CB_DIR/$log" 2>&1
        rc=$?
        seconds=$((SECONDS - start))
        cb_cancel_leftover_steps
        # timeout(1) exits 124, or 137 when it had to SIGKILL; srun also exits 137 for killed tasks
        if ((rc == 124 || (rc == 137 && seconds >= limit))); then
            status=timeout
        elif ((rc != 0)); then
            status=failed
        elif [[ ! -s $CB_DIR/$file ]]; then
            status=failed
            rc=-1
        else
            status=ok
        fi
        extra=""
        [[ -n $previous ]] && extra=",\"retry_of\":$(cb_json "$previous"),\"excluded\":$(cb_json "$suspect")"
        if ((attempt == 1)) && [[ $status != ok ]] && cb_retries "$status" &&
            suspect=$(cb_failed_host "$CB_DIR/$log") &&
            retry_hosts=$(cb_retry_hosts "$k" "$hosts" "$suspect"); then
            [[ -n $suspect ]] || suspect=${hosts%%,*}
            # keep the failed attempt's files under their own names; the retry writes the usual ones
            [[ -e $CB_DIR/$file ]] && mv "$CB_DIR/$file" "$CB_DIR/$stem.attempt1.jsonl"
            mv "$CB_DIR/$log" "$CB_DIR/logs/$stem.attempt1.out"
            local kept=$stem.attempt1.jsonl
            [[ -e $CB_DIR/$kept ]] || kept=""
            cb_event "{$fields,\"status\":\"$status\",\"rc\":$rc,\"seconds\":$seconds,\"nodelist\":$(cb_json "$hosts"),\"attempt\":1,\"retried\":true,\"suspect\":$(cb_json "$suspect"),\"file\":$(cb_json "$kept"),\"log\":$(cb_json "logs/$stem.attempt1.out")}"
            cb_say "===== END $label status=$status rc=$rc seconds=$seconds: retrying once on $retry_hosts (without $suspect) ====="
            tail -n 5 "$CB_DIR/logs/$stem.attempt1.out" | sed 's/^/  | /'
            previous=$hosts
            hosts=$retry_hosts
            attempt=2
            continue
        fi
        [[ -e $CB_DIR/$file ]] || file=""
        cb_event "{$fields,\"status\":\"$status\",\"rc\":$rc,\"seconds\":$seconds,\"nodelist\":$(cb_json "$hosts"),\"attempt\":$attempt$extra,\"file\":$(cb_json "$file"),\"log\":$(cb_json "$log")}"
        cb_say "===== END $label status=$status rc=$rc seconds=$seconds ====="
        [[ $status == ok ]] || tail -n 5 "$CB_DIR/$log" | sed 's/^/  | /'
        # a host the first attempt failed on, while the retry without it passed: start later steps elsewhere
        if [[ $status == ok && -n $previous && -n $suspect && " ${CB_SUSPECTS[*]} " != *" $suspect "* ]]; then
            CB_SUSPECTS+=("$suspect")
            cb_say "host $suspect is suspect: later steps use it only when they need every host"
        fi
        break
    done
    [[ $status == ok ]]
}

# One step: run $2 (a CB_RUNS line's name) on $1 nodes.
cb_step() {
    local k=$1 name=$2
    shift 2
    local args=()
    CB_STEP_ENV=()
    while (($#)) && [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do CB_STEP_ENV+=("$1"); shift; done
    args=("$@")
    local collectives gpu_map=() sizes common
    # shellcheck disable=SC2206
    collectives=($CB_COLLECTIVES) sizes=($CB_SIZES) common=($CB_ARGS)
    # the device per local rank matters wherever buffers live on the GPU
    if [[ -n $CB_GPU_MAP && " ${args[*]} " =~ \ --(backend[\ =](nccl|cuda)|device[\ =]cuda)\  ]]; then
        gpu_map=(--gpu-map "$CB_GPU_MAP")
    fi
    cb_run_step "N$k-$name" "$k" "$CB_RANKS_PER_NODE" "$CB_STEP_TIMEOUT" \
        "\"event\":\"step\",\"nodes\":$k,\"run\":$(cb_json "$name")" "N=$k run=$name" \
        "$CB_PYTHON" -m collbench run "${collectives[@]}" "${sizes[@]}" "${common[@]}" \
        "${gpu_map[@]}" "${args[@]}" --out "$CB_DIR/N$k-$name.jsonl"
}

# What the wire allows: point-to-point bandwidth and latency between two nodes, one rank on each.
# An allgather of 2 ranks is a pure exchange (each rank sends half the buffer to the other), so
# its busbw is the one-way point-to-point bandwidth and its small-size time the latency. With
# NCCL and CB_NIC_GPUS, one pair per NIC: the pair runs on the GPU nearest that NIC (--gpu-map),
# and NCCL picks the NIC nearest its GPU. Pairs run one after another, each with the NIC alone.
cb_baseline() {
    local reason="" backend=mpi gpus=() gpu name pair_args sizes
    if [[ $CB_BASELINE == 0 ]]; then
        reason="disabled (CB_BASELINE=0)"
    elif ((${#CB_HOSTS[@]} < 2)); then
        reason="one node: there is no network to measure"
    fi
    if [[ -n $reason ]]; then
        cb_say "network baseline skipped: $reason"
        cb_event "{\"event\":\"baseline\",\"status\":\"skipped\",\"reason\":$(cb_json "$reason")}"
        return 0
    fi
    if command -v nvidia-smi >/dev/null 2>&1 && grep -q -E -- '--backend[ =]nccl' <<<"$CB_RUNS"; then
        backend=nccl
        read -r -a gpus <<<"${CB_NIC_GPUS//,/ }"
    fi
    ((${#gpus[@]})) || gpus=("")
    # shellcheck disable=SC2206
    sizes=($CB_BASELINE_SIZES)
    mkdir -p "$CB_DIR/baseline"
    CB_STEP_ENV=()
    for gpu in "${gpus[@]}"; do
        name=pair${gpu:+-gpu$gpu}
        pair_args=(--backend "$backend")
        [[ -n $gpu ]] && pair_args+=(--gpu-map "$gpu")
        cb_run_step "baseline/$name" 2 1 "$CB_CHECK_TIMEOUT" \
            "\"event\":\"baseline\",\"pair\":$(cb_json "$name"),\"gpu\":$(cb_json "$gpu"),\"backend\":\"$backend\"" \
            "baseline $name ($backend, 2 nodes x 1 rank)" \
            "$CB_PYTHON" -m collbench run allgather "${sizes[@]}" -w 5 -c 1 --placement out-of-place \
            "${pair_args[@]}" --out "$CB_DIR/baseline/$name.jsonl" || true
    done
}

cb_main() {
    set -o pipefail
    [[ -n ${SLURM_JOB_ID:-} ]] || cb_die "not inside a Slurm allocation: submit this script with sbatch"
    [[ $CB_RANKS_PER_NODE =~ ^[1-9][0-9]*$ ]] || cb_die "CB_RANKS_PER_NODE must be a positive number"
    [[ $CB_STEP_TIMEOUT =~ ^[1-9][0-9]*$ ]] || cb_die "CB_STEP_TIMEOUT must be a positive number of seconds"
    [[ $CB_CHECK_TIMEOUT =~ ^[1-9][0-9]*$ ]] || cb_die "CB_CHECK_TIMEOUT must be a positive number of seconds"
    [[ $CB_RETRY =~ ^(failed|all|none|0)$ ]] || cb_die "CB_RETRY must be failed, all or none, not '$CB_RETRY'"
    CB_SUSPECTS=()
    CB_STEP_ENV=()
    if [[ $CB_LAUNCHER == mpiexec && -z $CB_MPIEXEC ]]; then
        CB_MPIEXEC=$(dirname "$(command -v "$CB_PYTHON")")/mpiexec
        [[ -x $CB_MPIEXEC ]] || CB_MPIEXEC=$(command -v mpiexec) || cb_die "no mpiexec found (set CB_MPIEXEC)"
    fi
    command -v "$CB_PYTHON" >/dev/null 2>&1 || cb_die "python '$CB_PYTHON' not found (set CB_PYTHON or activate the environment)"
    mapfile -t CB_HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    local nnodes=${#CB_HOSTS[@]} counts=() runs=() names=() line name k
    ((nnodes > 0)) || cb_die "cannot read the allocation's nodes (SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST)"
    mapfile -t counts < <(cb_node_counts "$nnodes")
    for k in "${counts[@]}"; do [[ $k =~ ^[1-9][0-9]*$ ]] || cb_die "CB_NODE_COUNTS: '$k' is not a node count"; done
    while read -r line; do
        line=${line%%#*}                 # comments (flags never contain #)
        line=${line%"${line##*[![:space:]]}"}
        [[ -z $line ]] && continue
        name=${line%%[[:space:]]*}
        [[ $name =~ ^[A-Za-z0-9_.+-]+$ ]] || cb_die "CB_RUNS: run name '$name' may only use letters, digits and _ . + -"
        [[ " ${names[*]} " == *" $name "* ]] && cb_die "CB_RUNS: run name '$name' appears twice"
        names+=("$name")
        runs+=("$line")
    done <<<"$CB_RUNS"
    ((${#runs[@]})) || cb_die "CB_RUNS names no run"

    local job=$SLURM_JOB_ID
    [[ ${SLURM_RESTART_COUNT:-0} != 0 ]] && job+="-r$SLURM_RESTART_COUNT"
    CB_DIR=$CB_RESULTS/$CB_CLUSTER/$job
    mkdir -p "$CB_DIR/logs/baseline" || cb_die "cannot create $CB_DIR"
    : >"$CB_DIR/steps.ndjson"
    cb_say "collbench sweep on $CB_CLUSTER: job $SLURM_JOB_ID, $nnodes node(s) (${CB_HOSTS[*]}), $CB_RANKS_PER_NODE ranks/node"
    cb_say "node counts: ${counts[*]}; runs: ${names[*]}; results: $CB_DIR"

    local run_json="" words
    for line in "${runs[@]}"; do
        read -r -a words <<<"$line"
        run_json+="${run_json:+,}{\"name\":$(cb_json "${words[0]}"),\"args\":$(cb_json_array "${words[@]:1}")}"
    done
    # shellcheck disable=SC2086
    {
        printf '{"type":"collbench-sweep","schema":1,"cluster":%s,"job_id":%s,' "$(cb_json "$CB_CLUSTER")" "$(cb_json "$SLURM_JOB_ID")"
        printf '"job_name":%s,"start_time":%s,' "$(cb_json "${SLURM_JOB_NAME:-}")" "$(cb_json "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)")"
        printf '"nodes":%s,"node_counts":[%s],' "$(cb_json_array "${CB_HOSTS[@]}")" "$(IFS=,; echo "${counts[*]}")"
        printf '"ranks_per_node":%s,"cpus_per_task":%s,"gpus_per_node":%s,' "$CB_RANKS_PER_NODE" "$(cb_json "$CB_CPUS_PER_TASK")" "$(cb_json "$CB_GPUS_PER_NODE")"
        printf '"launcher":%s,"srun_mpi":%s,"srun_args":%s,' "$(cb_json "$CB_LAUNCHER")" "$(cb_json "$CB_SRUN_MPI")" "$(cb_json "$CB_SRUN_ARGS")"
        printf '"collectives":%s,"sizes":%s,"args":%s,"gpu_map":%s,' "$(cb_json_array $CB_COLLECTIVES)" "$(cb_json_array $CB_SIZES)" "$(cb_json_array $CB_ARGS)" "$(cb_json "$CB_GPU_MAP")"
        printf '"nccl_net_multinode":%s,"step_timeout_s":%s,"check_timeout_s":%s,' "$(cb_json "$CB_NCCL_NET_MULTINODE")" "$CB_STEP_TIMEOUT" "$CB_CHECK_TIMEOUT"
        printf '"retry":%s,"nic_gpus":%s,"runs":[%s]}\n' "$(cb_json "$CB_RETRY")" "$(cb_json "$CB_NIC_GPUS")" "$run_json"
    } >"$CB_DIR/sweep.json"

    cb_write_job_metadata
    cb_preflight
    cb_nccl_probe
    cb_baseline

    local failed=0 total=0 words_arr
    for k in "${counts[@]}"; do
        for line in "${runs[@]}"; do
            read -r -a words_arr <<<"$line"
            total=$((total + 1))
            if ((k > nnodes)); then
                cb_say "skip N=$k run=${words_arr[0]}: the allocation has $nnodes node(s)"
                cb_event "{\"event\":\"step\",\"nodes\":$k,\"run\":$(cb_json "${words_arr[0]}"),\"status\":\"skipped\",\"reason\":$(cb_json "the allocation has $nnodes node(s)")}"
                continue
            fi
            cb_step "$k" "${words_arr[@]}" || failed=$((failed + 1))
        done
    done
    cb_event "{\"event\":\"end\",\"steps\":$total,\"failed\":$failed,\"suspect_hosts\":$(cb_json_array "${CB_SUSPECTS[@]}"),\"end_time\":$(cb_json "$(date -u +%Y-%m-%dT%H:%M:%S+00:00)")}"
    cb_say "done: $failed of $total step(s) failed; results in $CB_DIR"
    cb_say "table: collbench report $CB_DIR"
    ((failed == 0))
}
