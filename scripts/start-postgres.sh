#!/usr/bin/env bash
# start-postgres.sh starts (or reuses) a throwaway PostgreSQL for the store tests on
# 127.0.0.1:55432 and prints its DSN as the only line on stdout, so callers can do
#   export THINGID_TEST_POSTGRES_DSN="$(scripts/start-postgres.sh)"
# It never installs packages: the Debian package `postgresql` must be present.
set -euo pipefail

PORT=55432
DIR="${THINGID_PG_DIR:-/tmp/thingid-pg}"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
DB=thingid_test
DSN="postgres://postgres@127.0.0.1:${PORT}/${DB}?sslmode=disable"

# Everything below logs to stderr: stdout carries only the DSN.
exec 3>&1 1>&2

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$bindir" || ! -x "$bindir/pg_ctl" ]]; then
	echo "start-postgres: no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
	exit 1
fi

# PostgreSQL refuses to run as root: run its tools as the postgres OS user then.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

mkdir -p "$DIR"
if [[ $(id -u) -eq 0 ]]; then
	chown postgres:postgres "$DIR"
fi
chmod 0700 "$DIR"

if [[ ! -s "$DATA/PG_VERSION" ]]; then
	echo "start-postgres: initdb in $DATA" >&2
	# trust only on loopback (--auth-local for the socket, --auth-host for TCP,
	# and listen_addresses below keeps the server off every other interface).
	as_pg "$bindir/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust \
		--encoding=UTF8 --locale=C.UTF-8 >&2
	cat > "$DATA/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128      trust
HBA
	if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$DATA/pg_hba.conf"; fi
fi

if ! as_pg "$bindir/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
	echo "start-postgres: starting on 127.0.0.1:$PORT (log: $LOG)" >&2
	# 3>&-: the server must not inherit the saved stdout, or a caller reading
	# the DSN with $(...) would wait for the server to exit.
	as_pg "$bindir/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
		-o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200" >&2 3>&- </dev/null
fi

psql=("$bindir/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
if [[ "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
	as_pg "${psql[@]}" -c "CREATE DATABASE $DB" >&2
fi

echo "$DSN" >&3
