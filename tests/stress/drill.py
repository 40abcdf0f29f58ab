"""tests/stress/run's sessions: real concurrent sessions racing on one order.

Run by tests/stress/run, which makes the cluster, the database and the login
role and passes everything through the environment:
  STRESS_HOST STRESS_PORT STRESS_DB   where to connect
  STRESS_SU STRESS_APP                the superuser (the barrier and the checks)
                                      and the application's login role (every
                                      order, line and send)
  STRESS_ROUNDS                       rounds per part
  STRESS_SESSIONS                     sessions racing in each round
  STRESS_SENDERS                      of those, how many send the order in part b
  STRESS_BURST                        statements per line session per round
  STRESS_PRELOCK                      1: each line statement's transaction first
                                      locks its order (SELECT ... FOR NO KEY
                                      UPDATE); the drill's own control, see run
  STRESS_SEED                         seed of the rounds' mix of statements
  STRESS_PARTS                        which of parts a and b to run
  STRESS_RESULTS                      file the figures go to, one "name value"
                                      a line, for run's checks

Each round starts a fresh initiated order with three lines, makes every session
send its statements at the same moment, and then checks the order from a
session of its own. "The same moment": a session's first statement is sent as
  SELECT pg_advisory_xact_lock_shared(22, round); <statement>
in one simple query while the superuser holds that advisory lock exclusively.
When pg_locks shows every session waiting for it, the lock is released: the
sessions wake together and each runs its statement with a snapshot taken after
the wake (READ COMMITTED takes one per statement), in a transaction that ends
with the statement. Further statements of a burst follow at once, each in its
own transaction.

Part a: lines racing lines. Each session inserts a line, or updates or deletes
one of the order's first three lines. Afterwards the total must be the sum of
quantity * price over the order's lines (rule 4).

Part b: lines racing a send. STRESS_SENDERS sessions send the order (the first
to commit sends it, the others find it sent: a no-op, as a retried or doubled
send is), the others insert a line or update one. Afterwards the total must be
the sum of the lines, the order must be sent, and no line may have been
committed after the send (rule 6): with track_commit_timestamp, the commit time
of every line row's xmin must not be later than that of the 'sent' history row
the send wrote. A line refused with 23514 (frozen) is the expected outcome for a
session that loses the race.
"""

import collections
import concurrent.futures
import os
import random
import sys
import time

import psycopg2
import psycopg2.errorcodes

# Refusals a racing statement may get: 23514 (a frozen order, rule 6),
# 40001 and 40P01 (serialization failure, deadlock: PostgreSQL's own answers
# to a race, which a client retries). Anything else counts as unexpected.
EXPECTED = {"23514", "40001", "40P01"}
BARRIER_KEY = 22


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"stress: {name} is not set")
    return value


def connect(user, restaurant=None):
    conn = psycopg2.connect(host=env("STRESS_HOST"), port=env("STRESS_PORT"), dbname=env("STRESS_DB"),
                            user=user, application_name="olaclick-stress")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET default_transaction_isolation = 'read committed'")
        if restaurant is not None:
            cur.execute("SELECT pg_catalog.set_config('olaclick.restaurant_id', %s, false)", (str(restaurant),))
    return conn


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def run_statement(conn, sql):
    """(SQLSTATE, message) of the statement's failure, or None if it committed."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return None
    except psycopg2.Error as e:
        if e.pgcode is None:
            # No SQLSTATE: the connection broke (a crashed backend ends every
            # session). Nothing after this can be trusted.
            raise
        return (e.pgcode, e.pgerror.strip().splitlines()[0] if e.pgerror else "")


def run_session(conn, barrier, statements):
    """One session's share of a round: the first statement behind the barrier,
    the others right after it, each in its own transaction. Their outcomes."""
    first = run_statement(conn, f"{barrier}; {statements[0]}")
    return [first] + [run_statement(conn, s) for s in statements[1:]]


class Part:
    def __init__(self, name):
        self.name = name
        self.rounds = 0
        self.statements = 0
        self.committed = 0
        self.refusals = collections.Counter()
        self.unexpected = []
        self.mismatches = []
        self.violations = []
        self.sends = 0
        self.orders_sent = 0

    def record(self, outcome):
        self.statements += 1
        if outcome is None:
            self.committed += 1
            return
        code, message = outcome
        self.refusals[code] += 1
        if code not in EXPECTED:
            self.unexpected.append(f"{code} {message}")

    def report(self, out):
        refusals = ", ".join(f"{c} x{n}" for c, n in sorted(self.refusals.items())) or "none"
        committed = (f"{self.committed - self.sends} line changes and {self.sends} sends committed"
                     if self.name == "b" else f"{self.committed} committed")
        print(f"stress part {self.name}: {self.rounds} rounds, {self.statements} statements, {committed}, "
              f"refusals: {refusals}, {len(self.mismatches)} total mismatches, "
              f"{len(self.violations)} frozen-line violations")
        for label, items in (("mismatch", self.mismatches), ("violation", self.violations),
                             ("unexpected", self.unexpected)):
            for item in items[:5]:
                print(f"  {label}: {item}")
            if len(items) > 5:
                print(f"  ... {len(items) - 5} more")
        p = self.name
        out.write(f"{p}_rounds {self.rounds}\n{p}_statements {self.statements}\n"
                  f"{p}_committed {self.committed}\n{p}_mismatches {len(self.mismatches)}\n"
                  f"{p}_violations {len(self.violations)}\n{p}_unexpected {len(self.unexpected)}\n"
                  f"{p}_refused_23514 {self.refusals['23514']}\n{p}_sends {self.sends}\n"
                  f"{p}_orders_sent {self.orders_sent}\n")


class Drill:
    def __init__(self):
        self.sessions = int(env("STRESS_SESSIONS"))
        self.burst = int(env("STRESS_BURST"))
        self.senders = int(env("STRESS_SENDERS"))
        self.prelock = env("STRESS_PRELOCK", "0") == "1"
        self.before = 3  # lines each order has when a round starts: what updates and deletes change
        self.su = connect(env("STRESS_SU"))
        r, c, b = one(self.su, """
            SELECT r.id, (SELECT min(c.id) FROM olaclick.clients c WHERE c.restaurant_id = r.id),
                   (SELECT min(b.id) FROM olaclick.branches b WHERE b.restaurant_id = r.id)
            FROM olaclick.restaurants r ORDER BY r.id LIMIT 1""")
        self.restaurant, self.client, self.branch = r, c, b
        with self.su.cursor() as cur:
            # Products that cost something: every line change then moves the
            # total, so a lost change can't hide behind a zero.
            cur.execute("SELECT p.id FROM olaclick.products p WHERE p.restaurant_id = %s AND p.price > 0 "
                        "ORDER BY p.id", (r,))
            self.products = [row[0] for row in cur.fetchall()]
        if len(self.products) < self.before + 1:
            sys.exit(f"stress: restaurant {r} has {len(self.products)} priced products, "
                     f"{self.before + 1} needed")
        self.app = connect(env("STRESS_APP"), r)
        self.workers = [connect(env("STRESS_APP"), r) for _ in range(self.sessions)]
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.sessions)
        self.barrier = 0

    def new_order(self, lines):
        """A fresh initiated order with the first `lines` products, made as the application."""
        (order,) = one(self.app, "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) "
                                 "VALUES (%s, %s, %s) RETURNING id", (self.restaurant, self.client, self.branch))
        with self.app.cursor() as cur:
            for p in self.products[:lines]:
                cur.execute("INSERT INTO olaclick.order_details (order_id, product_id, quantity) "
                            "VALUES (%s, %s, 2)", (order, p))
        return order

    def race(self, sessions):
        """Runs each list of statements in a session of its own, the sessions
        released at once; the outcomes, in the same shape."""
        self.barrier += 1
        key = self.barrier
        barrier = f"SELECT pg_catalog.pg_advisory_xact_lock_shared({BARRIER_KEY}, {key})"
        one(self.su, "SELECT pg_catalog.pg_advisory_lock(%s, %s)", (BARRIER_KEY, key))
        try:
            futures = [self.pool.submit(run_session, w, barrier, statements)
                       for w, statements in zip(self.workers, sessions)]
            deadline = time.monotonic() + 30
            while True:
                (waiting,) = one(self.su, "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
                                          "AND NOT granted AND classid = %s AND objid = %s AND objsubid = 2",
                                 (BARRIER_KEY, key))
                if waiting == len(sessions):
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"stress: only {waiting} of {len(sessions)} sessions reached the barrier in 30 s")
                time.sleep(0.0005)
        finally:
            one(self.su, "SELECT pg_catalog.pg_advisory_unlock(%s, %s)", (BARRIER_KEY, key))
        return [f.result() for f in futures]

    def total_check(self, order):
        """None if the order's total is the sum of its lines, else what differs."""
        total, lines, n = one(self.su, """
            SELECT o.total, coalesce(sum(d.quantity * d.price), 0), count(d.*)
            FROM olaclick.orders o LEFT JOIN olaclick.order_details d ON d.order_id = o.id
            WHERE o.id = %s GROUP BY o.id, o.total""", (order,))
        if total != lines:
            return f"order {order}: total {total}, its {n} lines sum to {lines}"
        return None

    def line_change(self, rng, order, fresh, kinds, weights):
        """One statement changing one line of the order: a new line (while
        products are left), or an update or delete of a line it had before the
        round."""
        kind = rng.choices(kinds, weights=weights)[0]
        product = next(fresh, None) if kind == "insert" else None
        target = rng.choice(self.products[:self.before])
        if kind == "insert" and product is not None:
            sql = ("INSERT INTO olaclick.order_details (order_id, product_id, quantity) "
                   f"VALUES ({order}, {product}, {rng.randint(1, 9)})")
        elif kind == "delete":
            sql = f"DELETE FROM olaclick.order_details WHERE order_id = {order} AND product_id = {target}"
        else:
            sql = ("UPDATE olaclick.order_details SET quantity = quantity + "
                   f"{rng.randint(1, 9)} WHERE order_id = {order} AND product_id = {target}")
        if self.prelock:
            sql = f"SELECT FROM olaclick.orders WHERE id = {order} FOR NO KEY UPDATE; {sql}"
        return sql

    # What races the lines in each part: the kinds of line change (with their
    # weights) and whether sends race them too.
    PARTS = {"a": (("insert", "update", "delete"), (2, 1, 1), False),
             "b": (("insert", "update"), (1, 1), True)}

    def part(self, name, rounds, rng):
        """Part a or b (see the top of this file), `rounds` fresh orders."""
        kinds, weights, sends = self.PARTS[name]
        senders = self.senders if sends else 0
        part = Part(name)
        for _ in range(rounds):
            order = self.new_order(self.before)
            fresh = iter(self.products[self.before:])
            sessions = [[self.line_change(rng, order, fresh, kinds, weights)
                         for _ in range(self.burst)]
                        for _ in range(self.sessions - senders)]
            # Each send after a random pause of up to half a millisecond per
            # statement of a burst, so that it lands among the line changes,
            # not always first in line.
            for _ in range(senders):
                pause = rng.uniform(0, 0.0005 * self.burst)
                sessions.append([f"SELECT pg_catalog.pg_sleep({pause:.6f}); "
                                 f"UPDATE olaclick.orders SET status = 'sent' WHERE id = {order}"])
            outcomes = self.race(sessions)
            for session in outcomes:
                for outcome in session:
                    part.record(outcome)
            part.rounds += 1
            problem = self.total_check(order)
            if problem:
                part.mismatches.append(problem)
            if senders:
                part.sends += sum(1 for session in outcomes[-senders:] if session[0] is None)
                self.sent_check(part, order)
        return part

    def sent_check(self, part, order):
        """Part b's checks after a round: the order is sent (counted), and no
        line was committed after the send (a violation each order)."""
        (status,) = one(self.su, "SELECT status::text FROM olaclick.orders WHERE id = %s", (order,))
        if status == "sent":
            part.orders_sent += 1
        late = one(self.su, """
            SELECT count(*), string_agg(format('product %%s committed %%s', d.product_id,
                                               pg_catalog.pg_xact_commit_timestamp(d.xmin)), ', '),
                   (SELECT pg_catalog.pg_xact_commit_timestamp(h.xmin) FROM olaclick.order_status_history h
                    WHERE h.order_id = %s AND h.status = 'sent')
            FROM olaclick.order_details d
            WHERE d.order_id = %s
              AND pg_catalog.pg_xact_commit_timestamp(d.xmin) > (
                  SELECT pg_catalog.pg_xact_commit_timestamp(h.xmin) FROM olaclick.order_status_history h
                  WHERE h.order_id = %s AND h.status = 'sent')""", (order, order, order))
        if late[0]:
            part.violations.append(f"order {order} sent at {late[2]}: {late[1]}")

def main():
    rounds = int(env("STRESS_ROUNDS"))
    seed = int(env("STRESS_SEED"))
    drill = Drill()
    print(f"stress: {rounds} rounds per part, {drill.sessions} sessions, seed {seed}, "
          f"restaurant {drill.restaurant}")
    with open(env("STRESS_RESULTS"), "w") as out:
        for name in Drill.PARTS:
            if name not in env("STRESS_PARTS"):
                continue
            started = time.monotonic()
            part = drill.part(name, rounds, random.Random(f"{seed}-{name}"))
            part.report(out)
            print(f"  ({time.monotonic() - started:.1f} s)")
            out.flush()


if __name__ == "__main__":
    main()
