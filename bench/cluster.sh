#!/usr/bin/env bash
# cluster.sh runs a cluster of thingid nodes on this machine and measures it:
# connections held across the nodes (memory per connection per node, the
# aggregate CONNECT rate), then QoS 0 and QoS 1 throughput and latency with
# publishers and subscribers on one node against publishers on one node and
# subscribers on another, each beside Debian's mosquitto alone and two
# mosquittos bridged (the peer's figure for cross-broker forwarding).
#
#   bench/cluster.sh [CONNECTIONS] [NODES]   # default 100000 over 6 nodes
#
# Every node is a `thingid serve` process on one PostgreSQL of its own and one
# nats-server with JetStream; every load generator is a `thingid bench mqtt`
# process holding the connections of one node, so that no process holds more
# than CONNECTIONS/NODES + a few hundred files (this machine allows 20,000 per
# process). Everything listens on loopback. Needs the Debian packages
# postgresql, nats-server, mosquitto and curl, and Go (it builds thingid).
set -euo pipefail
CONNECTIONS=${1:-100000}
NODES=${2:-6}
DURATION=${DURATION:-10s}
PORT=55440
per=$((CONNECTIONS / NODES))
if ((per > 17000)); then
	echo "cluster.sh: $per connections per node is more than a node takes here (connections.max 19,000 less its reserve of a tenth): give more nodes" >&2
	exit 2
fi
for tool in nats-server mosquitto curl; do
	command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is missing: apt-get install ${tool/nats-server/nats-server}" >&2; exit 2; }
done
work=$(mktemp -d /tmp/thingid-cluster.XXXXXX)
chmod 0755 "$work"
source "$(dirname "$0")/postgres.sh"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	stop_postgres "$work"
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/thingid" ./cmd/thingid
thingid=$work/thingid
own_postgres "$work" "$PORT"
nats-server -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)

export THINGID_STORAGE_TYPE=postgres THINGID_STORAGE_POSTGRES_DSN="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
THINGID_MASTERKEY=$(head -c 32 /dev/urandom | base64)
export THINGID_MASTERKEY THINGID_LOG_LEVEL=warn
export THINGID_MQTT_ENABLED=true THINGID_MQTT_TCP_ENABLED=true THINGID_MQTT_TLS_ADDRESS=127.0.0.1:0 THINGID_GATEWAY_ADDRESS=127.0.0.1:0
export THINGID_MQTT_CLUSTER_NATS_URL=nats://127.0.0.1:14222
# A node holds up to 19,000 connections, its generator's from 4 addresses; it
# keeps 744 descriptors for itself (connections.max: what a process may hold here
# is 20,000 files) and runs no gateway.
export THINGID_CONNECTIONS_MAX=19000 THINGID_MQTT_LIMITS_CONNECTIONSPERADDRESS=19000
# One issuer for the cluster (and for the generators' tokens), as behind a load balancer.
export THINGID_HTTP_PUBLICURL=https://localhost:18600
node_pid=()
# node K: HTTPS on 127.0.0.1:1860K, MQTT over TCP on 127.0.0.1:1190K.
for k in $(seq "$NODES"); do
	THINGID_MQTT_CLUSTER_NODE=node$k THINGID_HTTP_ADDRESS=127.0.0.1:$((18600 + k)) THINGID_MQTT_TCP_ADDRESS=127.0.0.1:$((11900 + k)) \
		"$thingid" serve --init --home "$work/node$k" >"$work/node$k.log" 2>&1 &
	node_pid[k]=$!
	pids+=($!)
	for i in $(seq 300); do
		curl -sf --cacert "$work/node1/pki/ca.crt" "https://localhost:$((18600 + k))/readyz/mqtt" >/dev/null 2>&1 && break
		if [[ $i == 300 ]] || ! kill -0 "${node_pid[k]}" 2>/dev/null; then
			echo "cluster.sh: node $k did not start:" >&2
			cat "$work/node$k.log" >&2
			exit 1
		fi
		sleep 0.2
	done
done
echo "$NODES nodes up ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"

bench() { "$thingid" --home "$work/node1" bench mqtt --mint-tokens "$@"; }
# The things the generators log in as, made once, so that every generator
# sees them in the same order.
echo "making $CONNECTIONS bench things..."
bench --address 127.0.0.1:11901 --first $((CONNECTIONS - 1)) --connections 1 >/dev/null

echo "== $CONNECTIONS connections held over $NODES nodes (one generator per node) =="
start=$SECONDS
for k in $(seq "$NODES"); do
	# (not through bench(): $! must be thingid's own process, which SIGUSR1 reaches)
	"$thingid" --home "$work/node1" bench mqtt --mint-tokens --address 127.0.0.1:$((11900 + k)) --first $(((k - 1) * per)) --connections "$per" \
		--concurrency 16 --source-ips 4 --broker-pid "${node_pid[k]}" --hold 30m >"$work/held$k.txt" 2>"$work/held$k.err" &
	gen[k]=$!
done
# The generators hold their connections until every one has opened its own,
# then measure their nodes' memory together (SIGUSR1 ends their --hold).
most=0 since=$start
while kill -0 "${gen[@]}" 2>/dev/null; do
	n=$(ss -Htn state established "( sport >= :11901 and sport <= :$((11900 + NODES)) )" | wc -l)
	((n > most)) && most=$n since=$SECONDS
	(($(cat "$work"/held*.err | grep -c 'holding ') == NODES)) && break
	sleep 2
done
kill -USR1 "${gen[@]}" 2>/dev/null || true # (a generator that failed has ended)
failed=0
for k in $(seq "$NODES"); do wait "${gen[k]}" || failed=1; done
for k in $(seq "$NODES"); do
	echo "-- node $k"
	cat "$work/held$k.txt"
done
awk -v most="$most" -v secs="$((since - start))" '/connections opened/ {o += $3} /RSS per connection/ {m += $5; n++}
	END {printf "held at once: %d, after %d s (%.0f CONNECTs/s over the cluster); opened: %d; RSS per connection, mean of nodes: %.1f KiB\n", most, secs, most / (secs > 0 ? secs : 1), o, m / (n > 0 ? n : 1)}' \
	"$work"/held*.txt
if ((failed != 0)); then
	echo "cluster.sh: a generator failed; the end of each one's output and each node's log:" >&2
	for f in "$work"/held*.err "$work"/node*.log; do echo "-- $f" >&2; tail -c 1500 "$f" | tr '\r' '\n' | tail -n 5 >&2; done
	exit 1
fi

# The peer: mosquitto alone (A), and A bridged to B (every things/# message
# forwarded at QoS 1 both ways).
cat >"$work/mosq-a.conf" <<CONF
listener 11951 127.0.0.1
allow_anonymous true
CONF
cat >"$work/mosq-b.conf" <<CONF
listener 11952 127.0.0.1
allow_anonymous true
connection a
address 127.0.0.1:11951
topic things/# both 1
CONF
mosquitto -c "$work/mosq-a.conf" >"$work/mosq-a.log" 2>&1 &
pids+=($!)
mosquitto -c "$work/mosq-b.conf" >"$work/mosq-b.log" 2>&1 &
pids+=($!)
sleep 2 # the bridge connects

for qos in 0 1; do
	echo "== QoS $qos, 10 publishers, 2 subscribers, $DURATION: on one node / on one mosquitto =="
	bench --address 127.0.0.1:11901 --publishers 10 --subscribers 2 --qos "$qos" --duration "$DURATION" \
		--baseline 127.0.0.1:11951 2>/dev/null
	echo "== the same, subscribers on node 2 / on the bridged mosquitto =="
	bench --address 127.0.0.1:11901 --subscribe-address 127.0.0.1:11902 --publishers 10 --subscribers 2 --qos "$qos" \
		--duration "$DURATION" --baseline 127.0.0.1:11951 --baseline-subscribe-address 127.0.0.1:11952 2>/dev/null
done
echo "== latency at 100 messages/s per publisher (QoS 1), subscribers on node 2 / on the bridged mosquitto =="
bench --address 127.0.0.1:11901 --subscribe-address 127.0.0.1:11902 --publishers 10 --subscribers 2 --qos 1 --rate 100 \
	--duration "$DURATION" --baseline 127.0.0.1:11951 --baseline-subscribe-address 127.0.0.1:11952 2>/dev/null
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
