#!/usr/bin/env bash
# stop-postgres.sh stops the throwaway PostgreSQL that start-postgres.sh
# started (its data directory stays, for a faster next start).
set -euo pipefail

DIR="${THINGID_PG_DIR:-/tmp/thingid-pg}"
DATA="$DIR/data"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n "$bindir" && -s "$DATA/PG_VERSION" ]] || exit 0
if [[ $(id -u) -eq 0 ]]; then
	runuser -u postgres -- "$bindir/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
else
	"$bindir/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
fi
