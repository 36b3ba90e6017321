#!/usr/bin/env bash
# pgcost.sh measures what each of thingid's operations costs PostgreSQL: the
# transactions it commits, the rows it writes and the WAL it generates, per
# operation, on a PostgreSQL of its own (nothing else writes there while it
# counts). These are the inputs of the capacity model in docs/deployment.md:
# unlike requests per second, they do not depend on the machine's load.
#
#   bench/pgcost.sh [N]      # N operations of each kind (default 200)
#
# Needs the Debian packages postgresql, curl and jq, and Go (it builds thingid).
set -euo pipefail
N=${1:-200}
PORT=55439
work=$(mktemp -d /tmp/thingid-pgcost.XXXXXX)
chmod 0755 "$work"
source "$(dirname "$0")/postgres.sh"
cleanup() {
	[[ -n ${serve:-} ]] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
	stop_postgres "$work"
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/thingid" ./cmd/thingid
own_postgres "$work" "$PORT"
psql=(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qtAX)

export THINGID_STORAGE_TYPE=postgres THINGID_STORAGE_POSTGRES_DSN="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
export THINGID_MQTT_ENABLED=true THINGID_MQTT_TCP_ENABLED=true THINGID_LOG_LEVEL=warn THINGID_HTTP_ADDRESS=127.0.0.1:18543 THINGID_MQTT_TCP_ADDRESS=127.0.0.1:11983
export THINGID_MQTT_TLS_ADDRESS=127.0.0.1:0 THINGID_GATEWAY_ADDRESS=127.0.0.1:0
home="$work/home"
"$work/thingid" serve --init --home "$home" >"$work/serve.log" 2>&1 &
serve=$!
for i in $(seq 150); do
	curl -sf --cacert "$home/pki/ca.crt" https://localhost:18543/readyz >/dev/null 2>&1 && break
	if [[ $i == 150 ]] || ! kill -0 "$serve" 2>/dev/null; then
		echo "pgcost: thingid serve did not start:" >&2
		cat "$work/serve.log" >&2
		exit 1
	fi
	sleep 0.2
done

# counters: rows written to thingid's tables, WAL bytes of the whole server, and the
# database's size.
counters() {
	sleep 11 # an idle backend reports its statistics within 10 s (PGSTAT_IDLE_INTERVAL)
	"${psql[@]}" -F ' ' -c "SELECT (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables),
		pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, pg_database_size('postgres')"
}
# measure NAME COMMAND...: runs COMMAND and prints the counters' growth per operation.
measure() {
	local name=$1
	shift
	read -r r0 w0 s0 <<<"$(counters)"
	"$@" >/dev/null 2>&1
	read -r r1 w1 s1 <<<"$(counters)"
	awk -v n="$N" -v name="$name" -v r="$((r1 - r0))" -v w="$((w1 - w0))" -v s="$((s1 - s0))" \
		'BEGIN { printf "%-32s %6.2f rows written %7.0f WAL bytes %7.0f bytes stored per operation\n", name, r/n, w/n, s/n }'
}

out=$("$work/thingid" --home "$home" clients create --name pgcost --grant-type client_credentials --scope 'mqtt:pub:things/+/telemetry')
id=$(sed -n 's/.*client_id: //p' <<<"$out")
secret=$(sed -n 's/.*client_secret: //p' <<<"$out")
tokens() {
	for _ in $(seq "$N"); do
		curl -sf --cacert "$home/pki/ca.crt" -u "$id:$secret" -d grant_type=client_credentials \
			https://localhost:18543/oauth2/token >/dev/null
	done
}
device=urn:ietf:params:scim:schemas:core:2.0:Device
ext=urn:thingid:params:scim:schemas:extension:thing:2.0:Device
scim() {
	for i in $(seq "$N"); do
		curl -sf --cacert "$home/pki/ca.crt" -H "Authorization: Bearer $admin" -H 'Content-Type: application/scim+json' \
			-d "{\"schemas\":[\"$device\",\"$ext\"],\"displayName\":\"d$i\",\"$ext\":{\"serialNumber\":\"PGC-$i\"}}" \
			https://localhost:18543/scim/v2/Devices >/dev/null
	done
}
# The first administrator's one-time password must be changed before the CLI mints a token for it.
once=$(cat "$home/admin-password.txt")
api() { curl -sf --cacert "$home/pki/ca.crt" -c "$work/jar" -b "$work/jar" -H 'Content-Type: application/json' -d "$2" "https://localhost:18543$1" >/dev/null; }
api /api/v1/signin "{\"userName\":\"admin\",\"password\":\"$once\"}"
api /api/v1/password "{\"currentPassword\":\"$once\",\"newPassword\":\"pgcost measures, nothing else\"}"
admin=$("$work/thingid" --home "$home" admin token --name pgcost)

measure "client_credentials token" tokens
measure "SCIM device create" scim
measure "factory issue (per device)" "$work/thingid" --home "$home" factory issue --model PG1 --manufacturer Acme \
	--count "$N" --out "$work/batch"
# bench mqtt --mint-tokens creates its things and its grant on the first run: not counted.
mqtt() {
	"$work/thingid" --home "$home" bench mqtt --address 127.0.0.1:11983 --mint-tokens --connections "$N" --concurrency 8
}
mqtt >/dev/null 2>&1
measure "MQTT CONNECT, new token" mqtt
