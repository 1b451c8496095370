#!/usr/bin/env bash
# A private single-node SLURM cluster whose whole state lives in one folder (docs/slurm.md):
#   scripts/slurm_single_node.sh start DIR    write DIR/slurm.conf, start the daemons, wait until
#                                             the node is idle
#   scripts/slurm_single_node.sh status DIR   which of the daemons started here still run
#   scripts/slurm_single_node.sh stop DIR     stop exactly the daemons that `start DIR` started
# Clients (sbatch, srun, sinfo, scontrol) find the cluster with SLURM_CONF=DIR/slurm.conf.
#
# Needs root (SlurmUser=root) and Debian's packages: apt-get install slurm-wlm munge.
# - Ports: slurmctld on $DUBFIV_SLURMCTLD_PORT (default 16817), slurmd on $DUBFIV_SLURMD_PORT
#   (default 16818), so a SLURM already on the host (6817/6818) is never touched.
# - munge: a munged that answers on the default socket is reused; otherwise a private munged
#   runs with its key, socket, log and PID file in DIR/munge (slurm.conf's AuthInfo names its
#   socket), so stopping it never affects anyone else.
# - Node: `hostname -s` at 127.0.0.1, with the CPUs this process may use (nproc) and the memory
#   slurmd -C reports; no cgroups, no accounting.
# - PIDs of the daemons started here are in DIR/slurmctld.pid, DIR/slurmd.pid (and
#   DIR/munged.pid); `stop` kills those PIDs only (never by name), logs stay in DIR/log.
# On failure `start` stops what it started and exits 1 with a one-line reason on stderr.
# Keep DIR short (e.g. /tmp/slurm-XXXX): slurmd puts unix sockets in DIR/spool.
set -u

PATH="$PATH:/usr/sbin:/sbin"
CTLD_PORT=${DUBFIV_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${DUBFIV_SLURMD_PORT:-16818}
WAIT_S=${DUBFIV_SLURM_WAIT_S:-60}
PROG=slurm_single_node
. "$(dirname "$0")/daemon_lib.sh"

# ours NAME: the PID recorded in DIR/NAME.pid if that process is alive and was started for
# this DIR (its command line names DIR), else nothing; guards against a reused PID
ours() {
    local pid
    [ -f "$DIR/$1.pid" ] || return 1
    pid=$(tr -dc '0-9' <"$DIR/$1.pid")
    alive "$pid" && started_for "$pid" "$DIR/" || return 1
    echo "$pid"
}

# stop_pid PID SECONDS: wait up to SECONDS for PID to end, then SIGTERM, then SIGKILL
stop_pid() {
    [ -n "$1" ] || return 0
    wait_for "$2" gone "$1" && return 0
    kill -TERM "$1" 2>/dev/null
    wait_for 5 gone "$1" && return 0
    kill -KILL "$1" 2>/dev/null
    wait_for 5 gone "$1"
}

system_munge_answers() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

node_reason() { sinfo -h -R -n "$NODE" -o %E 2>/dev/null | head -1; }

node_ready() {
    local state
    state=$(node_state)
    case "$state" in
        idle|mixed|allocated) return 0 ;;
        *drain*|*fail*|*inval*|*down*) [ -n "$(node_reason)" ] \
            && return 0 ;;  # a reason is set: stop waiting, start() reports it
    esac
    return 1
}

log_hint() { echo "(logs in $DIR/log)"; }

write_conf() {
    local cpus mem auth_info=""
    cpus=$(nproc)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    [ -n "$mem" ] || mem=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    [ -n "$MUNGE_SOCKET" ] && auth_info="AuthInfo=socket=$MUNGE_SOCKET"
    : >"$DIR/plugstack.conf"  # no SPANK plugins from /etc/slurm
    cat >"$DIR/slurm.conf" <<EOF
# Written by scripts/slurm_single_node.sh (docs/slurm.md): a private single-node cluster.
ClusterName=dubfivlocal
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$auth_info
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    local m="$DIR/munge"
    mkdir -p "$m" && chmod 755 "$m" || return 1
    if [ ! -f "$m/munge.key" ]; then
        dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 2>/dev/null || return 1
    fi
    chmod 400 "$m/munge.key"
    munged --socket="$MUNGE_SOCKET" --key-file="$m/munge.key" --log-file="$DIR/log/munged.log" \
        --pid-file="$DIR/munged.pid" --seed-file="$m/munged.seed" \
        </dev/null >>"$DIR/log/munged.out" 2>&1 || return 1
    wait_for 10 munge_answers
}

munge_answers() { munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

# fail REASON: stop what start() started, say why (one line) and exit 1
fail() {
    stop_daemons >/dev/null 2>&1
    die "$*"
}

start() {
    local missing="" cmd
    [ "$(id -u)" = 0 ] || die "needs root (SlurmUser=root; slurmd starts jobs as their users)"
    for cmd in slurmctld slurmd sinfo scontrol sbatch srun squeue scancel munge unmunge munged; do
        command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
    done
    [ -z "$missing" ] || die "missing${missing}: apt-get install slurm-wlm munge"
    case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
    [ ${#DIR} -le 60 ] || die "DIR is too long for slurmd's unix sockets (${#DIR} > 60 characters): use a short path such as /tmp/slurm"
    mkdir -p "$DIR" || die "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    if ours slurmctld >/dev/null || ours slurmd >/dev/null || ours munged >/dev/null; then
        die "a cluster already runs in $DIR (stop it first: $0 stop $DIR)"
    fi
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        port_busy "$port" && die "port $port is in use (choose others with DUBFIV_SLURMCTLD_PORT and DUBFIV_SLURMD_PORT)"
    done
    NODE=$(hostname -s)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" || die "cannot create folders in $DIR"
    chmod 755 "$DIR"
    rm -f "$DIR"/slurmctld.pid "$DIR"/slurmd.pid "$DIR"/munged.pid

    MUNGE_SOCKET=""
    if ! system_munge_answers; then
        MUNGE_SOCKET="$DIR/munge/munge.socket"
        start_munged || fail "munged did not start $(log_hint)"
    fi
    write_conf || fail "cannot write $DIR/slurm.conf"
    export SLURM_CONF="$DIR/slurm.conf"

    slurmctld -f "$SLURM_CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 \
        || fail "slurmctld did not start $(log_hint)"
    wait_for 15 ours slurmctld >/dev/null || fail "slurmctld exited at once $(log_hint)"
    wait_for 30 scontrol ping >/dev/null 2>&1 || fail "slurmctld does not answer $(log_hint)"
    slurmd -f "$SLURM_CONF" </dev/null >>"$DIR/log/slurmd.out" 2>&1 \
        || fail "slurmd did not start $(log_hint)"
    wait_for 15 ours slurmd >/dev/null || fail "slurmd exited at once $(log_hint)"
    wait_for "$WAIT_S" node_ready
    case "$(node_state)" in
        idle|mixed|allocated) ;;
        *) fail "node $NODE is not idle after up to ${WAIT_S} s (state: $(node_state);" \
                "reason: $(node_reason)) $(log_hint)" ;;
    esac
    say "node $NODE idle; slurmctld on port $CTLD_PORT, slurmd on port $SLURMD_PORT"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# stop_daemons: cancel the cluster's jobs, shut it down, then end the recorded PIDs
stop_daemons() {
    local ctld slurmd munged
    ctld=$(ours slurmctld)
    slurmd=$(ours slurmd)
    munged=$(ours munged)
    export SLURM_CONF="$DIR/slurm.conf"
    if [ -n "$ctld" ]; then
        if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
            scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null
            wait_for 15 no_jobs
        fi
        timeout 10 scontrol shutdown >/dev/null 2>&1
    fi
    stop_pid "$slurmd" 10
    stop_pid "$ctld" 10
    stop_pid "$munged" 0
    for pid in $slurmd $ctld $munged; do
        alive "$pid" && return 1
    done
    return 0
}

no_jobs() { [ -z "$(squeue -h -o %i 2>/dev/null)" ]; }

stop() {
    [ -d "$DIR" ] || { say "no cluster in $DIR"; return 0; }
    DIR=$(cd "$DIR" && pwd)
    stop_daemons || die "some daemons in $DIR did not end"
    rm -f "$DIR"/slurmctld.pid "$DIR"/slurmd.pid "$DIR"/munged.pid
    say "stopped the daemons of $DIR"
}

status() {
    local name pid rc=0
    [ -d "$DIR" ] || die "no cluster in $DIR"
    DIR=$(cd "$DIR" && pwd)
    for name in slurmctld slurmd munged; do
        if pid=$(ours "$name"); then
            echo "$name: running (pid $pid)"
        elif [ "$name" = munged ] && ! grep -q '^AuthInfo=' "$DIR/slurm.conf" 2>/dev/null; then
            echo "munged: not started here (the host's munged is used)"
        else
            echo "$name: not running"
            rc=3
        fi
    done
    [ "$rc" = 0 ] && SLURM_CONF="$DIR/slurm.conf" sinfo
    return "$rc"
}

main 2,7 "$@"
