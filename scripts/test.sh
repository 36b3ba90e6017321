#!/usr/bin/env bash
# Runs thingid's whole test suite on a fresh Debian machine: installs the real
# peers the tests talk to (Chromium, PostgreSQL, curl, openssl, mosquitto and its
# clients, OpenLDAP's clients, Python's ldap3, Redis, nginx, HAProxy, NATS, libcoap's coap-client, jq and python3 for the documents'
# commands, Node.js and npm for the accessibility check's axe-core), starts PostgreSQL
# on loopback, then runs gofmt, go vet and go test -race on every package.
# PostgreSQL is stopped at the end when this script started it; --keep (the
# first argument) leaves it running. Other arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
if [ "${1:-}" = "--keep" ]; then
  keep=true
  shift
fi

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v ldapsearch >/dev/null 2>&1 || need+=(ldap-utils)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# ip: the cluster test puts each node in a network namespace of its own.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Python's ldap3, a client of the directory's tests (Debian's, in /usr/bin/python3's packages).
python3 -c 'import ldap3' 2>/dev/null || /usr/bin/python3 -c 'import ldap3' 2>/dev/null || need+=(python3-ldap3)
# npm installs axe-core for the console's accessibility check.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! $keep && ! (exec 3<>/dev/tcp/127.0.0.1/55432) 2>/dev/null; then
  trap 'scripts/stop-postgres.sh' EXIT
fi
THINGID_TEST_POSTGRES_DSN="$(scripts/start-postgres.sh)"
export THINGID_TEST_POSTGRES_DSN
echo "test.sh: PostgreSQL at $THINGID_TEST_POSTGRES_DSN" >&2

unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# A package's time limit: internal/server, the longest, took 400 s on a
# quiet machine and 1,360 s on one whose fresh memory was slow; a package
# that hangs still ends well within CI's limit.
go test -race -count=1 -timeout 40m "$@" ./...
