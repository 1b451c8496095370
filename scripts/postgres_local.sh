#!/usr/bin/env bash
# A private PostgreSQL server whose whole state lives in one folder (docs/study_collector.md):
#   scripts/postgres_local.sh start DIR    initdb DIR/data (first time), start the server on a
#                                          free port of 127.0.0.1, print its SQLAlchemy URL
#   scripts/postgres_local.sh status DIR   whether the server started here runs (and its URL)
#   scripts/postgres_local.sh stop DIR     stop exactly the server that `start DIR` started
#
# Needs PostgreSQL's server programs (Debian: apt-get install postgresql; initdb, pg_ctl and
# postgres in /usr/lib/postgresql/VERSION/bin, or on PATH).
# - User: initdb and postgres refuse to run as root; called as root, the server runs as
#   $DUBFIV_PG_USER (default: postgres) with runuser, and DIR is handed to that user (so DIR
#   must be reachable by it: /tmp/pg-XXXX is, a folder under /root is not).
# - Port: $DUBFIV_PG_PORT, else the first free one from 15432 on; it listens on 127.0.0.1
#   only and puts its unix socket in DIR.
# - Access: database `dubfiv`, superuser `dubfiv` with a random password kept in
#   DIR/password (mode 600); TCP needs the password (scram-sha-256), the unix socket in DIR
#   is reachable by DIR's owner only.
# - `start` prints postgresql+psycopg://dubfiv:PASSWORD@127.0.0.1:PORT/dubfiv on stdout; the
#   server's PID is the first line of DIR/data/postmaster.pid; `stop` ends that PID only
#   (never by name); the log stays in DIR/log/postgres.log.
# On failure `start` stops what it started and exits 1 with a one-line reason on stderr.
# Keep DIR short: the unix socket path DIR/.s.PGSQL.PORT must stay under 100 characters.
set -u

PROG=postgres_local
. "$(dirname "$0")/daemon_lib.sh"
FIRST_PORT=15432
LAST_PORT=15631
WAIT_S=${DUBFIV_PG_WAIT_S:-60}

# ours: the PID in DIR/data/postmaster.pid if that process is alive and serves this DIR
# (its command line names DIR/data), else nothing; guards against a reused PID
ours() {
    local pid
    [ -f "$DIR/data/postmaster.pid" ] || return 1
    pid=$(head -1 "$DIR/data/postmaster.pid" | tr -dc '0-9')
    alive "$pid" && started_for "$pid" "$DIR/data" || return 1
    echo "$pid"
}

# server_bin DIR: DIR holds the server programs this script runs
server_bin() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

# find_bin: the folder of initdb/pg_ctl/postgres (that of initdb on PATH, links followed,
# else the newest /usr/lib/postgresql/VERSION/bin)
find_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1; then
        dir=$(dirname "$(readlink -f "$(command -v initdb)")")
        server_bin "$dir" && { echo "$dir"; return 0; }
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        server_bin "$dir" && { echo "$dir"; return 0; }
    done
    return 1
}

# find_psql: psql next to the server programs, else on PATH
find_psql() {
    if [ -x "$BIN/psql" ]; then
        echo "$BIN/psql"
    else
        command -v psql
    fi
}

# as_owner COMMAND...: run COMMAND as the server's user (root: $RUN_USER), in DIR
as_owner() {
    if [ -n "$RUN_USER" ]; then
        (cd "$DIR" && runuser -u "$RUN_USER" -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

setup_user() {
    RUN_USER=""
    [ "$(id -u)" = 0 ] || return 0
    RUN_USER=${DUBFIV_PG_USER:-postgres}
    id -u "$RUN_USER" >/dev/null 2>&1 \
        || die "called as root, but there is no user $RUN_USER to run the server (initdb refuses root): set DUBFIV_PG_USER to another user"
    command -v runuser >/dev/null 2>&1 || die "called as root, but runuser is missing (util-linux)"
}

free_port() {
    local port
    if [ -n "${DUBFIV_PG_PORT:-}" ]; then
        port_busy "$DUBFIV_PG_PORT" && die "port $DUBFIV_PG_PORT (DUBFIV_PG_PORT) is in use"
        echo "$DUBFIV_PG_PORT"
        return 0
    fi
    for port in $(seq "$FIRST_PORT" "$LAST_PORT"); do
        port_busy "$port" || { echo "$port"; return 0; }
    done
    die "no free port between $FIRST_PORT and $LAST_PORT (set DUBFIV_PG_PORT)"
}

url() {
    echo "postgresql+psycopg://dubfiv:$(cat "$DIR/password")@127.0.0.1:$(cat "$DIR/port")/dubfiv"
}

log_hint() { echo "(log in $DIR/log/postgres.log)"; }

# fail REASON: stop what start() started, say why (one line) and exit 1
fail() {
    stop_server >/dev/null 2>&1
    die "$*"
}

init_cluster() {
    local password
    password=$(od -An -N18 -tx1 /dev/urandom | tr -dc '0-9a-f')
    [ ${#password} = 36 ] || die "cannot read /dev/urandom for a password"
    (umask 077 && printf '%s\n' "$password" >"$DIR/password") || die "cannot write $DIR/password"
    [ -z "$RUN_USER" ] || chown "$RUN_USER" "$DIR/password" || die "cannot chown $DIR/password"
    as_owner "$BIN/initdb" -D "$DIR/data" -U dubfiv --pwfile="$DIR/password" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale \
        >>"$DIR/log/initdb.log" 2>&1 \
        || die "initdb failed (log in $DIR/log/initdb.log)"
    chmod 600 "$DIR/password"
}

start() {
    local port pid
    BIN=$(find_bin) || die "no PostgreSQL server programs (initdb, pg_ctl): apt-get install postgresql"
    PSQL=$(find_psql) || die "no psql next to $BIN/initdb or on PATH: apt-get install postgresql-client"
    setup_user
    case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
    mkdir -p "$DIR/log" || die "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    pid=$(ours) && die "a server already runs in $DIR (pid $pid; stop it first: $0 stop $DIR)"
    chmod 700 "$DIR"  # the unix socket in DIR lets DIR's owner in without a password
    if [ -n "$RUN_USER" ]; then
        chown "$RUN_USER" "$DIR" "$DIR/log" || die "cannot hand $DIR to user $RUN_USER"
        runuser -u "$RUN_USER" -- test -w "$DIR" \
            || die "user $RUN_USER cannot reach $DIR (a parent folder is closed to it): use a folder such as /tmp/pg"
    fi
    port=$(free_port) || exit 1
    [ $((${#DIR} + 20)) -le 100 ] \
        || die "DIR is too long for PostgreSQL's unix socket (${#DIR} characters): use a short path such as /tmp/pg"
    [ -f "$DIR/data/PG_VERSION" ] || init_cluster
    echo "$port" >"$DIR/port"
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log/postgres.log" -w -t "$WAIT_S" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR" start >/dev/null 2>&1 \
        || fail "the server did not start $(log_hint)"
    ours >/dev/null || fail "the server exited at once $(log_hint)"
    if ! as_owner "$PSQL" -h "$DIR" -p "$port" -U dubfiv -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = 'dubfiv'" 2>/dev/null | grep -q 1; then
        as_owner "$PSQL" -h "$DIR" -p "$port" -U dubfiv -d postgres -qc \
            "CREATE DATABASE dubfiv" >>"$DIR/log/postgres.log" 2>&1 \
            || fail "cannot create the database dubfiv $(log_hint)"
    fi
    say "server (pid $(ours)) on 127.0.0.1:$port, data in $DIR/data"
    url
}

# stop_server: fast shutdown (SIGINT) of the PID recorded in DIR, then SIGQUIT, SIGKILL
stop_server() {
    local pid
    pid=$(ours) || return 0
    kill -INT "$pid" 2>/dev/null
    wait_for 30 gone "$pid" && return 0
    kill -QUIT "$pid" 2>/dev/null
    wait_for 5 gone "$pid" && return 0
    kill -KILL "$pid" 2>/dev/null
    wait_for 5 gone "$pid"
}

stop() {
    [ -d "$DIR" ] || { say "no server in $DIR"; return 0; }
    DIR=$(cd "$DIR" && pwd)
    stop_server || die "the server of $DIR (pid $(ours)) did not end"
    say "stopped the server of $DIR"
}

status() {
    local pid
    [ -d "$DIR" ] || die "no server in $DIR"
    DIR=$(cd "$DIR" && pwd)
    if pid=$(ours); then
        echo "postgres: running (pid $pid, port $(cat "$DIR/port" 2>/dev/null))"
        url
        return 0
    fi
    echo "postgres: not running"
    return 3
}

main 2,6 "$@"
