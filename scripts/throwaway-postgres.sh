#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1, for tests and trying distributed studies.
#   scripts/throwaway-postgres.sh start DIR   -> prints postgresql+psycopg://signlab:PASSWORD@127.0.0.1:PORT/postgres
#   scripts/throwaway-postgres.sh stop DIR
# Needs Debian's `postgresql` package (binaries in /usr/lib/postgresql/*/bin) or initdb on PATH.
# As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR}
dir=$(realpath -m "${2:?usage: $0 start|stop DIR}")
cd /  # the postgres user may not be allowed into the caller's folder

bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
if [ ! -x "$bin/initdb" ]; then
  echo "throwaway-postgres: no initdb found (install Debian's postgresql package)" >&2
  exit 3
fi
as_owner=()
if [ "$(id -u)" -eq 0 ]; then as_owner=(runuser -u postgres --); fi

# As root, the cluster lives in a folder of its own that the postgres user can reach
# (DIR may sit under a private temp folder); DIR/cluster-path says where.
case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    cluster=$(mktemp -d /tmp/signlab-postgres.XXXXXX)
    chown postgres "$cluster"
    echo "$cluster" > "$dir/cluster-path"
    dir=$cluster
  fi
  password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "$password" > "$dir/pwfile"
  [ "$(id -u)" -ne 0 ] || chown postgres "$dir/pwfile"
  "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U signlab --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql+psycopg://signlab:$password@127.0.0.1:$port/postgres"
  ;;
stop)
  cluster=$dir
  [ ! -f "$dir/cluster-path" ] || cluster=$(cat "$dir/cluster-path")
  [ -d "$cluster/data" ] && "${as_owner[@]}" "$bin/pg_ctl" -D "$cluster/data" -m fast -w stop >/dev/null || true
  [ ! -f "$dir/cluster-path" ] || rm -rf "$cluster"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2
  ;;
esac
