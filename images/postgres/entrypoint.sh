#!/bin/sh
# The bundled PostgreSQL of Cairn's Helm chart: PostgreSQL 15 run by a non-root user (uid 999).
#
# On first start (an empty $PGDATA) it initialises the cluster: the superuser `postgres` can connect
# only over the Unix socket inside this container (peer authentication), and the role
# $POSTGRES_USER, owner of the database $POSTGRES_DB, logs in over TCP with the password in
# $POSTGRES_PASSWORD (scram-sha-256). Then it runs postgres in the foreground, listening on all
# addresses, as PID 1 (postgres handles SIGTERM as a smart shutdown and reaps its children).
set -eu

: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
: "${POSTGRES_USER:=cairn}"
: "${POSTGRES_DB:=cairn}"
: "${POSTGRES_SOCKET_DIR:=/tmp}"
BIN=/usr/lib/postgresql/15/bin

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "cairn-postgres: POSTGRES_PASSWORD is not set (the chart takes it from a Secret)" >&2
  exit 1
fi
case "$POSTGRES_PASSWORD" in
  *"
"*) echo "cairn-postgres: POSTGRES_PASSWORD must be one line" >&2; exit 1 ;;
esac
case "$POSTGRES_USER$POSTGRES_DB" in
  *[!a-z0-9_]*) echo "cairn-postgres: POSTGRES_USER and POSTGRES_DB must match [a-z0-9_]+" >&2; exit 1 ;;
esac

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "cairn-postgres: initialising $PGDATA"
  mkdir -p "$PGDATA"
  "$BIN/initdb" -D "$PGDATA" -U postgres --no-locale -E UTF8 --auth-local=peer --auth-host=reject >/dev/null
  # Single-user mode (one statement a line): no server, nothing listening until the cluster is ready.
  password=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
  out=$("$BIN/postgres" --single -D "$PGDATA" postgres 2>&1 <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$password';
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
) || { echo "$out" >&2; exit 1; }
  if printf '%s' "$out" | grep -q 'ERROR:'; then
    printf '%s\n' "$out" | grep -v 'PASSWORD' >&2
    rm -rf "${PGDATA:?}"/*
    exit 1
  fi
  cat >"$PGDATA/pg_hba.conf" <<HBA
# TYPE  DATABASE         USER         ADDRESS    METHOD
local   all              postgres                peer
host    $POSTGRES_DB     $POSTGRES_USER  0.0.0.0/0  scram-sha-256
host    $POSTGRES_DB     $POSTGRES_USER  ::/0       scram-sha-256
HBA
  echo "cairn-postgres: created role $POSTGRES_USER and database $POSTGRES_DB"
fi

# PostgreSQL refuses a data directory that others can read (an fsGroup may have widened it).
chmod 0700 "$PGDATA"
exec "$BIN/postgres" -D "$PGDATA" \
  -c listen_addresses='*' \
  -c unix_socket_directories="$POSTGRES_SOCKET_DIR" \
  -c password_encryption=scram-sha-256 \
  "$@"
