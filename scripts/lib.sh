# scripts/lib.sh: what every script that runs PostgreSQL servers shares.
# Sourced, not run: `. "$(git rev-parse --show-toplevel)/scripts/lib.sh"` or a
# path relative to the script. PostgreSQL refuses to run as root, so servers
# run as the postgres OS user, from / (it may not be able to enter a checkout
# under /root).

# Data directories, sockets and work files of every local cluster
# (OLACLICK_ROOT and OLACLICK_PORT_OFFSET let two checkouts run their drills
# side by side without sharing a server).
root=${OLACLICK_ROOT:-/var/tmp/olaclick}
off=${OLACLICK_PORT_OFFSET:-0}
bin=$(pg_config --bindir)

# use_postgres MAJOR: what follows (pg_config, $bin, the servers started) is
# that PostgreSQL: 15 is Debian 12's own (whichever pg_config is first on
# PATH), 17 and 18 are the ones scripts/postgres builds into its cache.
pg_cache=${OLACLICK_PG_CACHE:-/var/cache/olaclick/postgresql}
use_postgres() {
  if [ "$1" != 15 ]; then
    local dir=$pg_cache/$1/usr/lib/postgresql/$1/bin
    [ -x "$dir/pg_config" ] || { echo "PostgreSQL $1 is not built here: run scripts/postgres $1" >&2; return 1; }
    PATH=$dir:$PATH
  fi
  bin=$(pg_config --bindir)
}

# Every port the scripts use, loopback only: one table, so none collide.
port_demo=${OLACLICK_DEMO_PORT:-$((5499 + off))}         # scripts/demo
port_isolation=${OLACLICK_TEST_PORT:-$((5498 + off))}    # isolation specs, cache tests, ops drill 1-2
port_pgaudit=${OLACLICK_PGAUDIT_PORT:-$((5497 + off))}   # tests/pgaudit/run
port_pitr_primary=$((5496 + off))                        # tests/ops/run 3-4
port_pitr_restored=$((5495 + off))
port_standby=$((5494 + off))
port_bench=$((5493 + off))                               # bench/run, bench/cache
port_bench_orders=$((5457 + off))                        # bench/orders-partitioning
port_native=$((5488 + off))                              # tests/native/run
port_stress=$((5489 + off))                              # tests/stress/run
port_readme=$((5479 + off))                              # tests/readme/run
port_ha_monitor=$((5480 + off)) port_ha_node1=$((5481 + off)) port_ha_node2=$((5482 + off))  # tests/ha/run
port_bench_ha_monitor=$((5485 + off)) port_bench_ha_node1=$((5486 + off)) port_bench_ha_node2=$((5487 + off))  # bench/ha
port_health_primary=${OLACLICK_HEALTH_PORT:-$((5461 + off))}                # tests/health/run
port_health_standby=$((port_health_primary + 1))
port_access=$((5470 + off)) port_access_mtail=$((5471 + off))  # tests/access/run (mtail's metrics endpoint)
port_staging=$((5472 + off))                                 # tests/staging/run
port_passwords=$((5473 + off))                               # tests/passwords/run
port_pooler_pg=$((5492 + off)) port_pooler=$((5491 + off))  # tests/pooler/run: cluster, PgBouncer
port_demo_pooler=$((5476 + off))                         # scripts/demo's PgBouncer
port_bench_pooler=$((5475 + off))                        # bench/pooler's PgBouncer (its cluster: port_bench)
port_package=$((5460 + off))                             # tests/package/run (one version at a time)
port_isolation_17=$((5458 + off)) port_isolation_18=$((5459 + off))  # isolation_cluster 17, 18 (tests/isolation/run, tests/ops/run)
port_scale=$((5477 + off))                               # bench/scale

# isolation_cluster MAJOR: "NAME PORT" of that PostgreSQL's isolation cluster
# (tests/isolation/run, tests/ops/run 1-2); a data directory belongs to one
# major, so 17 and 18 have their own.
isolation_cluster() {
  if [ "$1" = 15 ]; then echo "isolation $port_isolation"
  else local port=port_isolation_$1; echo "isolation-pg$1 ${!port}"; fi
}

# As the postgres OS user, from /.
as_pg() { (cd / && sudo -u postgres "$@"); }
pgctl() { as_pg "$bin/pg_ctl" "$@"; }

# psql_at PORT DB [psql arguments...]: the superuser over the socket in $root
# (or $pghost, for clusters whose sockets live elsewhere), unaligned, stopping
# at the first error.
psql_at() { local port=$1 db=$2; shift 2; psql -X -qAt -v ON_ERROR_STOP=1 -h "${pghost:-$root}" -p "$port" -U postgres -d "$db" "$@"; }
# q PORT DB SQL...: one statement's output.
q() { local port=$1 db=$2; shift 2; psql_at "$port" "$db" -c "$*"; }
# sqlstate PORT DB SQL...: the SQLSTATE the statement fails with, as the
# superuser (or as $role when set), empty if it succeeds.
sqlstate() {
  local port=$1 db=$2; shift 2
  { psql -X -qAt -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "${pghost:-$root}" -p "$port" -U "${role:-postgres}" -d "$db" -c "$*" 2>&1 >/dev/null || true; } |
    grep -oE '^ERROR:  [0-9A-Z]{5}' | head -1 | cut -c9-
}
fresh_db() { q "$1" postgres "DROP DATABASE IF EXISTS $2 WITH (FORCE)"; q "$1" postgres "CREATE DATABASE $2"; }

# stop_cluster NAME: stops it if it runs; a killed server's stale pid file is
# no error.
stop_cluster() {
  [ -f "$root/$1/postmaster.pid" ] && pgctl -D "$root/$1" -m fast -w stop >/dev/null 2>&1 || true
}
# stop_pooler NAME: stops the PgBouncer scripts/cluster started for NAME
# (OLACLICK_POOLER_PORT), if it runs, and waits for it to exit.
stop_pooler() {
  local pid; pid=$(cat "$root/$1-pooler/pgbouncer.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
}
# fresh_cluster NAME PORT [postgresql.conf lines...]: a new data directory with
# trust authentication (throwaway drill clusters only; scripts/cluster makes
# the long-lived ones, with TLS and passwords), started.
fresh_cluster() {
  local name=$1 port=$2; shift 2
  stop_cluster "$name"; rm -rf "${root:?}/$name"
  mkdir -p "$root" && chown postgres:postgres "$root"
  as_pg "$bin/initdb" -D "$root/$name" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  printf '%s\n' "port = $port" "unix_socket_directories = '$root'" "listen_addresses = '127.0.0.1'" "$@" |
    as_pg tee -a "$root/$name/postgresql.conf" >/dev/null
  pgctl -D "$root/$name" -l "$root/$name/server.log" -w start >/dev/null
}

# Small helpers the drills and benchmarks share.
# wait_for SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds;
# fails when SECONDS pass first.
wait_for() {
  local seconds=$1; shift
  local deadline=$(( $(date +%s) + seconds ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
# A TCP port on loopback that nothing listens on (the kernel picks it).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The median of the numbers on stdin (separated by spaces or newlines).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# start_redis PORT [redis-server options...]: a throwaway Redis on loopback
# (no persistence), in the background, answering when this returns. The
# caller stops it (redis-cli -p PORT shutdown nosave).
start_redis() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes "$@" >/dev/null
  wait_for 10 redis-cli -p "$port" ping >/dev/null 2>&1
}

# A drill's report: set drill=NAME first. Each check prints "ok: ..." or
# "not ok: ..."; the first failure ends the drill; the closing line
# "NAME: N passed, 0 failed" is what scripts/test counts.
passed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "not ok: $1"; echo "$drill: $passed passed, 1 failed"; exit 1; }
same() { [ "$2" = "$3" ] && ok "$1" || fail "$1: expected [$2], got [$3]"; }
done_drill() { echo "$drill: $passed passed, 0 failed"; }
