# postgres.sh is sourced by the bench scripts that need a PostgreSQL of
# their own (nothing else writes to it while they measure).
#
#   own_postgres DIR PORT   # initdb in DIR/pg and start it on 127.0.0.1:PORT
#   stop_postgres DIR       # stop it (immediately: the data is thrown away)
#
# Needs the Debian package postgresql. As root, the server runs as postgres.
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

own_postgres() {
	local dir=$1 port=$2
	if [[ -z $pg_bindir ]]; then
		echo "no PostgreSQL server here: apt-get install postgresql" >&2
		return 1
	fi
	mkdir "$dir/pg"
	if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$dir/pg"; fi
	as_pg "$pg_bindir/initdb" -D "$dir/pg" -U postgres --auth=trust >/dev/null
	as_pg "$pg_bindir/pg_ctl" -D "$dir/pg" -l "$dir/pg/log" -w start \
		-o "-c listen_addresses=127.0.0.1 -p $port -k /tmp -c stats_fetch_consistency=none -c max_connections=300" >/dev/null
}

stop_postgres() {
	as_pg "$pg_bindir/pg_ctl" -D "$1/pg" -m immediate stop >/dev/null 2>&1 || true
}
