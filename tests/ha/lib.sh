# Shared by tests/ha/run and bench/ha: a pg_auto_failover monitor and data nodes
# on this machine, as the postgres OS user, loopback only, and the bookkeeping
# that stops every process they start. The caller sets ha (the directory of
# everything: data, pg_autoctl's files, logs) and monitor_port, then sources
# this file (which sources scripts/lib.sh).

. scripts/lib.sh
# pg_autoctl's servers keep their sockets to themselves: psql goes over TCP.
pghost=127.0.0.1
# As the postgres OS user, from /, with pg_autoctl's files under $ha and without
# root's PG* variables (they would make it connect as the wrong role): unlike
# scripts/lib.sh's as_pg.
pg_env=(sudo -u postgres env -u PGUSER -u PGHOST -u PGPORT -u PGDATABASE -u PGOPTIONS
        XDG_CONFIG_HOME="$ha/xdg/config" XDG_DATA_HOME="$ha/xdg/data" XDG_RUNTIME_DIR="$ha/xdg/run")
as_pg() { (cd / && "${pg_env[@]}" "$@"); }
autoctl() { as_pg pg_autoctl "$@"; }
now() { date +%s.%N; }
# "node1:primary/primary node2:secondary/secondary": reported/assigned states.
states() { q "$monitor_port" pg_auto_failover "SELECT string_agg(nodename || ':' || reportedstate || '/' || goalstate, ' ' ORDER BY nodename) FROM pgautofailover.node" 2>/dev/null || true; }
states_are() { [ "$(states)" = "$1" ]; }
# pg_autoctl's pg_basebackup waits for a spread checkpoint (minutes): ask for
# an immediate one while a standby is being cloned.
checkpoint_and() { q "$1" postgres "CHECKPOINT" >/dev/null 2>&1 || true; shift; "$@"; }

# Every process started here leads its own process group (setsid), recorded in
# groups (the last one in $group) and in $ha/groups; servers are found through
# their postmaster.pid.
groups=()
start_group() { # start_group LOG command...
  local log=$1; shift
  (cd / && exec setsid "$@") >"$log" 2>&1 </dev/null &
  group=$!
  disown "$group" # no "Killed" notice from bash when it is killed
  groups+=("$group")
  echo "$group" >>"$ha/groups" # for the next run, should this one be killed outright
}
# All processes of a group, and a server with its children (they setsid).
group_pids() { ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'; }
server_pids() {
  local pid
  pid=$(head -1 "$1/postmaster.pid" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qa -- "$1" "/proc/$pid/cmdline" 2>/dev/null || return 0
  echo "$pid"; ps -o pid= --ppid "$pid" || true
}
alive() { local g; for g in "$@"; do [ -n "$(group_pids "$g")" ] && return 0; done; return 1; }
# Politely first (the keepers stop their servers), then by force.
stop_all() {
  local g d pids=()
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  wait_for 15 eval '! alive "${groups[@]}"' || true
  for g in "${groups[@]}"; do pids+=($(group_pids "$g")); done
  for d in "$ha"/*/; do pids+=($(server_pids "${d%/}")); done
  [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
}
# A fresh $ha. A run killed outright leaves processes, servers or pid files
# behind: stop what is still ours first.
fresh_ha() {
  local stale=() g f pid
  for g in $(cat "$ha/groups" 2>/dev/null); do stale+=($(group_pids "$g")); done
  for f in "$ha"/*/postmaster.pid "$ha/xdg/run/pg_autoctl$ha"/*/pg_autoctl.pid; do
    [ -f "$f" ] || continue
    pid=$(head -1 "$f")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qa -- "$ha" "/proc/$pid/cmdline" 2>/dev/null &&
      stale+=("$pid" $(ps -o pid= --ppid "$pid" || true))
  done
  [ ${#stale[@]} -eq 0 ] || { echo "stopping ${#stale[@]} processes of an earlier run"; kill -KILL "${stale[@]}" 2>/dev/null || true; sleep 1; }
  rm -rf "${ha:?}"
  mkdir -p "$ha/xdg/run" "$ha/logs"
  chown postgres:postgres "$(dirname "$ha")" && chown -R postgres:postgres "$ha"
}
port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=require"; }
# start_monitor [postgresql.conf lines...]: creates and runs the monitor; the
# lines go to postgresql.auto.conf, read last: they override pg_autoctl's own.
start_monitor() {
  autoctl create monitor --pgctl "$bin/pg_ctl" --pgdata "$ha/monitor" --pgport "$monitor_port" \
    --listen 127.0.0.1 --hostname 127.0.0.1 --auth trust --ssl-self-signed >"$ha/logs/monitor-create.log" 2>&1 ||
    { tail -20 "$ha/logs/monitor-create.log"; return 1; }
  printf '%s\n' "$@" | as_pg tee -a "$ha/monitor/postgresql.auto.conf" >/dev/null
  start_group "$ha/logs/monitor.log" "${pg_env[@]}" pg_autoctl run --pgdata "$ha/monitor"
  wait_for 30 q "$monitor_port" pg_auto_failover "SELECT 1" >/dev/null 2>&1
}
# init_node NAME [postgresql.conf lines...]: the first node starts from an initdb
# of ours so that its settings (copied to the standby by pg_basebackup) are in
# place before its first start.
init_node() {
  local name=$1; shift
  as_pg "$bin/initdb" -D "$ha/$name" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  printf '%s\n' "$@" | as_pg tee -a "$ha/$name/postgresql.auto.conf" >/dev/null
}
# start_node NAME PORT DB: registers and runs a keeper; the first node becomes
# the primary, the next one is cloned from it (pg_basebackup) as its standby.
start_node() {
  local name=$1 port=$2 db=$3
  start_group "$ha/logs/$name.log" "${pg_env[@]}" pg_autoctl create postgres --pgctl "$bin/pg_ctl" \
    --pgdata "$ha/$name" --pgport "$port" --listen 127.0.0.1 --hostname 127.0.0.1 --name "$name" --dbname "$db" \
    --monitor "$(monitor_uri)" --auth trust --ssl-self-signed --run
}
