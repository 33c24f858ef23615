# A scratch PostgreSQL for the benchmarks that measure the PostgreSQL journal (journal.sh,
# postgres.sh): Debian's newest installed, run as the postgres user (the scripts run as root),
# in DIR/pg on a free loopback port, with its defaults but fsync and synchronous_commit on.
#
#   source scratch-postgres.sh
#   start_scratch_postgres DIR [SERVER OPTIONS]   # sets PG_BIN, PG_DIR and PG_PORT
#   psql -d postgres -c '...'                     # as the superuser, over the server's socket
#   stop_scratch_postgres                         # stops it and removes its data

# scratch_postgres_check: exits 2 saying why where no scratch PostgreSQL can run.
scratch_postgres_check() {
    local version
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
    [[ -n $version ]] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 2; }
    [[ $(id -u) == 0 ]] || { echo "run as root: PostgreSQL is started as the postgres user" >&2; exit 2; }
    PG_BIN=/usr/lib/postgresql/$version/bin
    PG_VERSION=$version
}

as_postgres() { runuser -u postgres -- "$@"; }

start_scratch_postgres() {
    scratch_postgres_check
    PG_DIR=$1/pg
    mkdir -p "$PG_DIR"
    chown postgres "$PG_DIR"
    PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale C.UTF-8 >"$PG_DIR/initdb.log"
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=on -c synchronous_commit=on ${2:-}" \
        >/dev/null
}

psql() {
    PGOPTIONS="-c client_min_messages=warning" as_postgres "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -qAt \
        -v ON_ERROR_STOP=1 "$@"
}

stop_scratch_postgres() {
    [[ -n ${PG_DIR:-} ]] || return 0
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR/data"
}
