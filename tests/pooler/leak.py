"""Many clients of different tenants through PgBouncer in transaction mode,
each setting its tenant one of three ways, counting every row of another
tenant it sees or writes (tests/pooler/run).

Client i acts for restaurant i % tenants + 1 (actor: the user with the
restaurant's id) and sets its tenant
  local    the right way: SET LOCAL inside each transaction;
  session  with a session SET, but inside each transaction;
  careless with a session SET once, right after connecting (as a
           connection-init hook does), then transactions that set nothing.
local and session clients live orders (the order and 3 lines in one
transaction, then sent, then delivered) and read their tenant's orders;
careless clients read "their" orders and send "their" newest initiated
order. Every row read or returned by a write is checked against the
client's restaurant. Prints the counts as one JSON object; exits 1 when any
row of another tenant was seen or written, 0 otherwise.
"""
import argparse
import collections
import json
import subprocess
import sys
import threading

import psycopg

ap = argparse.ArgumentParser()
ap.add_argument("--dsn", required=True, help="the pooled connection string (password in PGPASSWORD)")
ap.add_argument("--clients", type=int, default=60)
ap.add_argument("--tenants", type=int, default=10)
ap.add_argument("--lives", type=int, default=8, help="order lives (or careless rounds) per client")
ap.add_argument("--after-login", help="shell command run once every client has logged in")
args = ap.parse_args()

MODES = ("local", "session", "careless")
lock = threading.Lock()
counts = collections.Counter()
errors = collections.Counter()
barrier = threading.Barrier(args.clients + 1)


def count(**kw):
    with lock:
        counts.update(kw)


def check(rows, tenant, what):
    """rows: (restaurant_id, ...) tuples; counts the foreign ones."""
    foreign = sum(1 for r in rows if r[0] != tenant)
    count(**{f"rows_{what}": len(rows), f"foreign_{what}": foreign})


def set_tenant(cur, mode, tenant):
    scope = "LOCAL " if mode == "local" else ""
    cur.execute(f"SET {scope}olaclick.restaurant_id = {tenant:d}")
    cur.execute(f"SET {scope}olaclick.user_id = {tenant:d}")


def life(conn, mode, tenant):
    with conn.transaction(), conn.cursor() as cur:
        set_tenant(cur, mode, tenant)
        cur.execute(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (%s, %s, %s)"
            " RETURNING restaurant_id, id, created_by_user_id",
            (tenant, tenant, tenant),
        )
        row = cur.fetchone()
        check([row], tenant, "written")
        order = row[1]
        if row[2] != tenant:
            count(wrong_actor=1)
        for k in (1, 2, 3):
            cur.execute(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (%s, %s, %s)"
                " RETURNING restaurant_id",
                (order, tenant * 10 + k, k),
            )
            check(cur.fetchall(), tenant, "written")
    for status in ("sent", "delivered"):
        with conn.transaction(), conn.cursor() as cur:
            set_tenant(cur, mode, tenant)
            cur.execute("UPDATE olaclick.orders SET status = %s WHERE id = %s RETURNING restaurant_id", (status, order))
            rows = cur.fetchall()
            check(rows, tenant, "written")
            if len(rows) != 1:
                count(lost_updates=1)
    with conn.transaction(), conn.cursor() as cur:
        set_tenant(cur, mode, tenant)
        cur.execute("SELECT restaurant_id, id FROM olaclick.orders")
        check(cur.fetchall(), tenant, "seen")
    count(lives=1)


def careless_round(conn, tenant):
    # Each statement its own transaction, as an ORM in autocommit sends them:
    # the tenant is whatever the server connection carries.
    with conn.cursor() as cur:
        cur.execute("SELECT restaurant_id, id FROM olaclick.orders")
        rows = cur.fetchall()
        check(rows, tenant, "seen")
        count(careless_rows_seen=len(rows))
        cur.execute(
            "UPDATE olaclick.orders SET status = 'sent'"
            " WHERE id = (SELECT max(id) FROM olaclick.orders WHERE status = 'initiated')"
            " RETURNING restaurant_id"
        )
        rows = cur.fetchall()
        check(rows, tenant, "written")
        count(careless_rows_written=len(rows))
    count(careless_rounds=1)


def client(i):
    mode, tenant = MODES[i % len(MODES)], i % args.tenants + 1
    try:
        # prepare_threshold=None: PgBouncer 1.18 in transaction mode can't
        # carry prepared statements from one transaction to the next.
        conn = psycopg.connect(args.dsn, autocommit=True, prepare_threshold=None, application_name=f"leak-{i}")
    except Exception as e:
        with lock:
            errors[f"connect: {e}".strip()] += 1
        barrier.wait()
        barrier.wait()
        return
    conn.add_notice_handler(lambda d: count(**{f"notice_{d.sqlstate}": 1}))
    barrier.wait()  # everyone logged in
    barrier.wait()  # --after-login has run
    if mode == "careless":
        with conn.cursor() as cur:
            set_tenant(cur, mode, tenant)
    for _ in range(args.lives):
        try:
            if mode == "careless":
                careless_round(conn, tenant)
            else:
                life(conn, mode, tenant)
        except psycopg.Error as e:
            with lock:
                errors[f"{mode} {e.sqlstate}"] += 1
    conn.close()


threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
for t in threads:
    t.start()
barrier.wait()
try:
    if args.after_login:
        subprocess.run(args.after_login, shell=True, check=True)
except BaseException:
    barrier.abort()  # the clients stop instead of waiting for ever
    raise
barrier.wait()
for t in threads:
    t.join()

result = {"clients": args.clients, "tenants": args.tenants, **dict(sorted(counts.items())), "errors": dict(sorted(errors.items()))}
print(json.dumps(result))
sys.exit(1 if counts["foreign_seen"] or counts["foreign_written"] else 0)
