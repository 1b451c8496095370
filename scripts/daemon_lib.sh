# Shell helpers shared by the scripts that run a private daemon for the tests
# (scripts/slurm_single_node.sh, scripts/postgres_local.sh). Sourced, not run; the caller
# sets PROG (its name in messages) first.

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

# alive PID: the process exists and is not a zombie
alive() {
    local state
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

gone() { ! alive "$1"; }

# started_for PID DIR: PID's command line names DIR (guards against a reused PID)
started_for() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$2"; }

# port_busy PORT: something accepts connections on 127.0.0.1:PORT
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS COMMAND...: poll COMMAND every 0.5 s until it succeeds or time runs out
wait_for() {
    local tries=$(($1 * 2))
    shift
    while [ "$tries" -gt 0 ]; do
        "$@" && return 0
        sleep 0.5
        tries=$((tries - 1))
    done
    return 1
}

# main USAGE_LINES "$@": the scripts' one interface, `start|stop|status DIR`. Sets DIR and
# calls the caller's start, stop or status function; anything else prints the usage (lines
# USAGE_LINES of the caller's header comment, e.g. 2,6) and exits 2.
main() {
    local lines=$1
    shift
    if [ $# = 2 ]; then
        DIR=$2
        case "$1" in
            start | stop | status) "$1"; return ;;
        esac
    fi
    sed -n "${lines}s/^# \{0,1\}//p" "$0" >&2
    exit 2
}
