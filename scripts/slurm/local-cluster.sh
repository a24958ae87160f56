#!/usr/bin/env bash
# A real multi-node Slurm cluster on this one machine, for tests and for trying the sweep scripts.
#
#   scripts/slurm/local-cluster.sh up [K]   start munged, slurmctld and K slurmd (nodes n1..nK)
#   scripts/slurm/local-cluster.sh status   show the daemons and `sinfo`
#   scripts/slurm/local-cluster.sh down     stop every daemon it started (by pid) and keep the logs
#   scripts/slurm/local-cluster.sh env      print the export line the Slurm commands need
#
# Every node is this host (NodeHostname=$(hostname -s)); each slurmd listens on its own port and is
# started as `slurmd -N nX`, so Slurm, srun and MPI see K distinct nodes. Nothing outside the state
# directory is touched: munged runs with its own key and socket there, slurm.conf lives there, and
# the client commands find it through SLURM_CONF (run `eval "$(local-cluster.sh env)"`).
#
# Settings (environment):
#   COLLBENCH_SLURM_DIR    state directory (default ${TMPDIR:-/tmp}/collbench-slurm-$(id -u))
#   COLLBENCH_SLURM_PORT   slurmctld port; slurmd nX listens on PORT+X (default 17000)
#   COLLBENCH_SLURM_CPUS   CPUs each node announces (default: this host's, at least 2)
#   COLLBENCH_SLURM_INSTALL=0   never apt-get install slurm-wlm/munge when they are missing
#
# Needs root (slurmd starts job steps as the submitting user). Debian/Ubuntu: slurm-wlm and munge are
# installed with apt-get when missing.
set -euo pipefail

PROG=local-cluster.sh
DIR=${COLLBENCH_SLURM_DIR:-${TMPDIR:-/tmp}/collbench-slurm-$(id -u)}
PORT=${COLLBENCH_SLURM_PORT:-17000}
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# pid from a pid file when that process is alive, else nothing
live_pid() {
    local file=$1 pid
    [[ -r $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

ensure_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    ((${#missing[@]} == 0)) && return 0
    if [[ ${COLLBENCH_SLURM_INSTALL:-1} == 0 ]] || ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
        die "missing ${missing[*]} (install them: apt-get install -y slurm-wlm munge)"
    fi
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } ||
        die "apt-get install ${missing[*]} failed"
}

write_conf() {
    local k=$1 host cpus i
    host=$(hostname -s)
    cpus=${COLLBENCH_SLURM_CPUS:-$(nproc)}
    ((cpus >= 2)) || cpus=2
    {
        echo "# written by $PROG up $k; state under $DIR"
        echo "ClusterName=collbench-local"
        echo "SlurmctldHost=$host"
        echo "SlurmctldPort=$PORT"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$MUNGE_SOCKET"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "SchedulerType=sched/backfill"
        echo "MpiDefault=none"
        echo "ReturnToService=2"
        # the host's real core count does not matter: every node announces what is written here
        echo "SlurmdParameters=config_overrides"
        echo "InactiveLimit=0"
        echo "KillWait=5"
        # sbatch --wait polls every 2 s only while MinJobAge/2 > 2 s does not hold (else 2, 8, 32 s...);
        # finished jobs then stay visible for 5-65 s. Batch jobs are scheduled at once (default: up to 3 s).
        echo "MinJobAge=5"
        echo "SchedulerParameters=batch_sched_delay=0"
        echo "MessageTimeout=20"
        echo "SlurmctldTimeout=60"
        echo "SlurmdTimeout=60"
        echo "StateSaveLocation=$DIR/state"
        echo "SlurmdSpoolDir=$DIR/spool/%n"
        echo "SlurmctldPidFile=$DIR/run/slurmctld.pid"
        echo "SlurmdPidFile=$DIR/run/slurmd-%n.pid"
        echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
        echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
        echo "SlurmctldDebug=info"
        echo "SlurmdDebug=info"
        for ((i = 1; i <= k; i++)); do
            echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + i)) CPUs=$cpus RealMemory=1000 State=UNKNOWN"
        done
        echo "PartitionName=local Nodes=n[1-$k] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
    } >"$CONF"
}

start_munge() {
    if live_pid "$DIR/munge/munged.pid" >/dev/null; then return 0; fi
    mkdir -p "$DIR/munge"
    chmod 755 "$DIR/munge"
    if [[ ! -s $DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$DIR/munge/munge.key"
    munged --force --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed" ||
        die "munged did not start (see $DIR/munge/munged.log)"
    munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
        die "munge does not work (see $DIR/munge/munged.log)"
}

nodes_in_conf() {
    [[ -r $CONF ]] || { echo 0; return; }
    grep -c '^NodeName=' "$CONF"
}

cmd_up() {
    local k=${1:-2} i waited
    [[ $k =~ ^[1-9][0-9]*$ ]] || die "node count must be a positive number, got '$k'"
    ((EUID == 0)) || die "needs root: slurmd must start job steps as the submitting user"
    ensure_packages
    if live_pid "$DIR/run/slurmctld.pid" >/dev/null; then
        if (($(nodes_in_conf) == k)); then
            say "already up with $k nodes ($CONF)"
            cmd_env
            return 0
        fi
        die "already up with $(nodes_in_conf) nodes; run '$PROG down' first"
    fi
    mkdir -p "$DIR"/{etc,state,run,log,spool}
    for ((i = 1; i <= k; i++)); do mkdir -p "$DIR/spool/n$i"; done
    write_conf "$k"
    start_munge
    export SLURM_CONF=$CONF
    slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
    for ((i = 1; i <= k; i++)); do
        slurmd -N "n$i" -f "$CONF" || die "slurmd -N n$i did not start (see $DIR/log/slurmd-n$i.log)"
    done
    # wait until every node is idle (a few seconds here)
    for ((waited = 0; waited < 60; waited++)); do
        if [[ $(sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l) -ge $k ]]; then
            say "up: $k nodes (n1..n$k) on $(hostname -s), slurmctld port $PORT"
            cmd_env
            return 0
        fi
        sleep 0.5
    done
    sinfo -N >&2 || true
    die "nodes did not become idle within 30 s (logs: $DIR/log)"
}

# Stop the daemons of the given pid files: SIGTERM to all at once (each takes ~2 s to exit),
# SIGKILL to any still alive after 10 s. Only pids from our own pid files are signalled.
stop_pidfiles() {
    local f pid i alive
    local -A pids=()
    for f in "$@"; do
        if pid=$(live_pid "$f"); then
            pids[$f]=$pid
            kill "$pid" 2>/dev/null || true
        else
            rm -f "$f"
        fi
    done
    for ((i = 0; i < 100; i++)); do
        alive=0
        for f in "${!pids[@]}"; do kill -0 "${pids[$f]}" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for f in "${!pids[@]}"; do
        if kill -0 "${pids[$f]}" 2>/dev/null; then
            say "$(basename "$f" .pid) (pid ${pids[$f]}) ignored SIGTERM; sending SIGKILL"
            kill -9 "${pids[$f]}" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

cmd_down() {
    if [[ -r $CONF ]] && live_pid "$DIR/run/slurmctld.pid" >/dev/null; then
        # cancel what is still queued or running so no job step is left behind
        SLURM_CONF=$CONF timeout 10 scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
    fi
    shopt -s nullglob
    stop_pidfiles "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid"
    stop_pidfiles "$DIR/munge/munged.pid"
    say "down (logs kept in $DIR/log)"
}

cmd_status() {
    local f pid up=0
    shopt -s nullglob
    for f in "$DIR/munge/munged.pid" "$DIR/run/slurmctld.pid" "$DIR"/run/slurmd-*.pid; do
        if pid=$(live_pid "$f"); then
            printf '%-16s running (pid %s)\n' "$(basename "$f" .pid)" "$pid"
            up=1
        else
            printf '%-16s stopped\n' "$(basename "$f" .pid)"
        fi
    done
    if ((up == 0)); then
        echo "local cluster is down ($DIR)"
        return 3
    fi
    SLURM_CONF=$CONF sinfo -N
}

cmd_env() {
    printf 'export SLURM_CONF=%q\n' "$CONF"
}

case ${1:-} in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
*) die "usage: $PROG up [K] | down | status | env" ;;
esac
