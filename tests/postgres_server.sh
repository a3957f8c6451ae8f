# A throw-away PostgreSQL server for the test suite; sourced by ./run (bash).
#
#   pg_test_server_start   install Debian's postgresql package when missing (as root, apt-get),
#                          initdb a cluster in a temp dir, start it on 127.0.0.1 on a free port,
#                          export MRKL_TEST_POSTGRES_URL and MRKL_REQUIRE_POSTGRES=1
#   pg_test_server_stop    stop it and remove the temp dir (./run calls it from an EXIT trap)
#
# A server given from outside (MRKL_TEST_POSTGRES_URL already set) is used as is.
# When no server can be had, the URL stays unset while MRKL_REQUIRE_POSTGRES=1, so the
# PostgreSQL tests fail (they never skip silently in CI). Set MRKL_SKIP_POSTGRES_SETUP=1
# to leave PostgreSQL out entirely (then those tests skip).

MRKL_PG_DIR=""
MRKL_PG_BIN=""

_pg_log() { echo "[postgres] $*" >&2; }

_pg_find_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then MRKL_PG_BIN="$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        MRKL_PG_BIN="$(dirname "$(command -v initdb)")"; return 0
    fi
    return 1
}

_pg_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        _pg_log "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
        return 1
    fi
    _pg_log "installing Debian's postgresql package (apt-get)"
    # no default cluster: the tests make their own (postgresql-common reads this directory)
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/mrkl-no-main-cluster.conf
    export DEBIAN_FRONTEND=noninteractive
    # bounded: a slow or unreachable mirror costs minutes, not the whole CI budget
    local opts=(-o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o DPkg::Lock::Timeout=120)
    timeout 300 apt-get "${opts[@]}" update -qq >&2 || _pg_log "apt-get update failed; trying the install anyway"
    timeout 600 apt-get "${opts[@]}" install -y -qq --no-install-recommends postgresql >&2
}

# run a PostgreSQL program as the postgres user when we are root (initdb refuses root)
_pg_as_owner() {
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
        (cd "$MRKL_PG_DIR" && runuser -u postgres -- "$@")
    elif [ "$(id -u)" = 0 ]; then
        (cd "$MRKL_PG_DIR" && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    else
        "$@"
    fi
}

pg_test_server_start() {
    export MRKL_REQUIRE_POSTGRES=1
    if [ -n "${MRKL_SKIP_POSTGRES_SETUP:-}" ]; then
        unset MRKL_REQUIRE_POSTGRES
        _pg_log "MRKL_SKIP_POSTGRES_SETUP is set: PostgreSQL tests will be skipped"
        return 0
    fi
    if [ -n "${MRKL_TEST_POSTGRES_URL:-}" ]; then
        _pg_log "using the server in MRKL_TEST_POSTGRES_URL"
        return 0
    fi
    if ! _pg_find_bin; then
        _pg_install || true
        _pg_find_bin || { _pg_log "no PostgreSQL: its tests will fail"; return 0; }
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        _pg_log "running as root but there is no 'postgres' user to own the cluster: PostgreSQL tests will fail"
        return 0
    fi
    local parent="${TMPDIR:-/tmp}"
    [ "$(id -u)" = 0 ] && parent=/tmp  # the postgres user must be able to reach it
    MRKL_PG_DIR="$(mktemp -d "$parent/mrkl-pg.XXXXXX")"
    [ "$(id -u)" = 0 ] && chown postgres: "$MRKL_PG_DIR"
    local port
    port="$("${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    if ! _pg_as_owner "$MRKL_PG_BIN/initdb" -D "$MRKL_PG_DIR/data" -U postgres --auth=trust -E UTF8 \
            --locale=C --no-sync >"$MRKL_PG_DIR/initdb.log" 2>&1; then
        _pg_log "initdb failed: $(tail -3 "$MRKL_PG_DIR/initdb.log")"
        return 0
    fi
    if ! _pg_as_owner "$MRKL_PG_BIN/pg_ctl" -D "$MRKL_PG_DIR/data" -l "$MRKL_PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $MRKL_PG_DIR -c fsync=off -c max_connections=50" \
            start >/dev/null; then
        _pg_log "the server did not start: $(tail -5 "$MRKL_PG_DIR/server.log" 2>/dev/null)"
        return 0
    fi
    export MRKL_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    _pg_log "PostgreSQL $("$MRKL_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $MRKL_PG_DIR)"
}

pg_test_server_stop() {
    if [ -n "$MRKL_PG_DIR" ] && [ -d "$MRKL_PG_DIR" ]; then
        if [ -f "$MRKL_PG_DIR/data/postmaster.pid" ]; then
            _pg_as_owner "$MRKL_PG_BIN/pg_ctl" -D "$MRKL_PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
                || _pg_log "could not stop the server in $MRKL_PG_DIR"
        fi
        rm -rf "$MRKL_PG_DIR"
        MRKL_PG_DIR=""
    fi
}
