#!/usr/bin/env bash
# A throw-away PostgreSQL primary with a streaming standby that applies WAL late, for tests of
# read-replica routing against real replication lag.
#
#   scripts/pg_standby.sh start DIR   # prints the DATABASE_URL / DB_POSTGRESQL_READ1_DSN exports
#   scripts/pg_standby.sh stop DIR    # stops both servers and removes DIR
#
# Uses PostgreSQL's own initdb, pg_basebackup -R and pg_ctl (no container). Run as root, the
# servers run as the postgres user. Settings (environment):
#   PG_STANDBY_PRIMARY_PORT, PG_STANDBY_REPLICA_PORT (the first free ports from 55432),
#   PG_STANDBY_APPLY_DELAY (300ms: the standby's recovery_min_apply_delay),
#   PG_STANDBY_DATABASE (gateway: created on the primary, replicated to the standby).
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 start|stop|stop-replica|start-replica DIR" >&2
  exit 2
fi

# The first port from $1 on that nothing listens on.
free_port_from() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
  done
  echo "$port"
}

# The port a node was configured with at start (the last `port =` line of its config wins).
configured_port() {
  sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/postgresql.conf" | tail -n 1
}

if [[ -f "$dir/replica/postgresql.conf" ]]; then
  primary_port=$(configured_port "$dir/primary")
  replica_port=$(configured_port "$dir/replica")
else
  primary_port=${PG_STANDBY_PRIMARY_PORT:-$(free_port_from 55432)}
  replica_port=${PG_STANDBY_REPLICA_PORT:-$(free_port_from $((primary_port + 1)))}
fi
apply_delay=${PG_STANDBY_APPLY_DELAY:-300ms}
database=${PG_STANDBY_DATABASE:-gateway}

bindir=${PG_BINDIR:-}
if [[ -z "$bindir" ]]; then
  if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    bindir=$(pg_config --bindir)
  else
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
fi
[[ -x "$bindir/initdb" ]] || { echo "initdb not found (set PG_BINDIR)" >&2; exit 1; }

# PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

wait_ready() {
  local port=$1
  for _ in $(seq 1 100); do
    "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -q && return 0
    sleep 0.1
  done
  echo "PostgreSQL on port $port did not start" >&2
  return 1
}

start_replica() {
  as_postgres "$bindir/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -w -t 30 start >/dev/null
  wait_ready "$replica_port"
}

case "$command" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
      chown postgres: "$dir"
    fi
    if [[ ! -d "$dir/primary" ]]; then
      as_postgres "$bindir/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
      cat >>"$dir/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
      echo "host replication postgres 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
    fi
    as_postgres "$bindir/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w -t 30 start >/dev/null
    wait_ready "$primary_port"
    if [[ ! -d "$dir/replica" ]]; then
      as_postgres "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
        -D "$dir/replica" -R -X stream --no-sync
      cat >>"$dir/replica/postgresql.conf" <<EOF
port = $replica_port
hot_standby = on
recovery_min_apply_delay = '$apply_delay'
# Queries on the standby are short; a conflict with replay cancels them rather than holding WAL.
max_standby_streaming_delay = 5s
EOF
    fi
    start_replica
    "$bindir/psql" -h 127.0.0.1 -p "$primary_port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1 \
      || "$bindir/psql" -h 127.0.0.1 -p "$primary_port" -U postgres -qc "CREATE DATABASE \"$database\""
    echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$primary_port/$database"
    echo "export DB_POSTGRESQL_READ1_DSN=postgres://postgres@127.0.0.1:$replica_port/$database"
    echo "export PG_STANDBY_DIR=$dir"
    ;;
  stop-replica)
    as_postgres "$bindir/pg_ctl" -D "$dir/replica" -m fast -w stop >/dev/null
    ;;
  start-replica)
    start_replica
    ;;
  stop)
    for node in replica primary; do
      if [[ -f "$dir/$node/postmaster.pid" ]]; then
        as_postgres "$bindir/pg_ctl" -D "$dir/$node" -m immediate -w stop >/dev/null || true
      fi
    done
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command: $command" >&2
    exit 2
    ;;
esac
