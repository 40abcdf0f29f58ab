"""Django 5 through PgBouncer in transaction mode, set up as
docs/operations.md recommends (tests/pooler/run): psycopg 3 with
prepare_threshold=None, DISABLE_SERVER_SIDE_CURSORS, and the tenant and actor
set with set_config(.., true) (SET LOCAL) at the start of each atomic block.
An order's life, reads (one through .iterator(), which would use a
server-side cursor), and the contract's refusals arriving as IntegrityError
with their SQLSTATE. Prints "ok: ..." per check; exits 1 at the first failure.
Arguments: HOST PORT DBNAME USER SSLROOTCERT RESTAURANT; password in PGPASSWORD.
"""
import os
import sys
from contextlib import contextmanager
from decimal import Decimal

import django
from django.conf import settings

host, port, dbname, user, ca, tenant = sys.argv[1:7]
tenant = int(tenant)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
settings.configure(
    INSTALLED_APPS=["shop"],
    USE_TZ=True,
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": host,
            "PORT": port,
            "NAME": dbname,
            "USER": user,
            "PASSWORD": os.environ["PGPASSWORD"],
            # A named cursor lives in one server connection's transaction;
            # PgBouncer may give the next FETCH another one.
            "DISABLE_SERVER_SIDE_CURSORS": True,
            "OPTIONS": {"sslmode": "verify-full", "sslrootcert": ca, "prepare_threshold": None},
        }
    },
)
django.setup()

from django.db import IntegrityError, connection, transaction  # noqa: E402

from checks import Checks  # noqa: E402
from shop.models import Line, Order  # noqa: E402


@contextmanager
def as_tenant():
    """One transaction acting for the restaurant; the tenant ends with it."""
    with transaction.atomic():
        with connection.cursor() as c:
            c.execute(
                "SELECT set_config('olaclick.restaurant_id', %s, true), set_config('olaclick.user_id', %s, true)",
                [str(tenant), str(tenant)],
            )
        yield


checks = Checks("django")
ok = checks.ok


def refused(what, sqlstate, action):
    """action(), in a transaction acting for the restaurant, refused with `sqlstate`."""
    def write():
        with as_tenant():
            action()

    checks.refused(what, sqlstate, write, IntegrityError, lambda e: e.__cause__.sqlstate)


with as_tenant():
    order = Order.objects.create(restaurant_id=tenant, client_id=tenant, branch_id=tenant)
    for k in (1, 2, 3):
        Line.objects.create(order_id=order.id, product_id=tenant * 10 + k, quantity=k, price=Decimal("2.50"))
with as_tenant():
    order.refresh_from_db()
ok(f"order {order.id} and 3 lines, total {order.total}", order.total == Decimal("15.00") and order.status == "initiated")
for status in ("sent", "delivered"):
    with as_tenant():
        order.status = status
        order.save(update_fields=["status"])
    with as_tenant():
        order.refresh_from_db()
    ok(f"order {order.id} {status}", order.status == status)
with as_tenant():
    seen = sorted({o.restaurant_id for o in Order.objects.all().iterator()})
ok(f"reads only its restaurant, through .iterator(): {seen}", seen == [tenant])

# Outside a transaction that set it, there is no tenant: no rows (fail closed).
ok("no tenant outside as_tenant(): order not visible", not Order.objects.filter(id=order.id).exists())

refused("a delivered order sent back", "23514", lambda: Order.objects.filter(id=order.id).update(status="sent"))
stale = Order(id=order.id, restaurant_id=tenant, client_id=tenant, branch_id=tenant, total=0, status="delivered")
refused("save() of a stale total", "23514", lambda: stale.save())
refused("an order for another restaurant's client", "23503",
        lambda: Order.objects.create(restaurant_id=tenant, client_id=tenant % 10 + 1, branch_id=tenant))
