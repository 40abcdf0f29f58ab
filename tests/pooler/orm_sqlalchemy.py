"""SQLAlchemy 2 through PgBouncer in transaction mode, set up as
docs/operations.md recommends (tests/pooler/run): psycopg 3 with
prepare_threshold=None, the tenant and actor set with set_config(.., true)
(SET LOCAL) when each transaction begins. An order's life, a read, and the
contract's refusals arriving as IntegrityError with their SQLSTATE.
Prints "ok: ..." per check; exits 1 at the first failure.
Arguments: SQLALCHEMY_URL RESTAURANT (the actor is the user with its id).
"""
import sys
from decimal import Decimal

from sqlalchemy import BigInteger, Integer, Numeric, create_engine, event, select, text
from sqlalchemy.dialects.postgresql import ENUM
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from checks import Checks

url, tenant = sys.argv[1], int(sys.argv[2])


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = {"schema": "olaclick"}
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    restaurant_id: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[int] = mapped_column(Integer)
    branch_id: Mapped[int] = mapped_column(Integer)
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2), server_default=text("0"))
    status: Mapped[str] = mapped_column(
        ENUM("initiated", "sent", "delivered", name="order_status", schema="olaclick", create_type=False),
        server_default=text("'initiated'"),
    )


class Line(Base):
    __tablename__ = "order_details"
    __table_args__ = {"schema": "olaclick"}
    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))


# prepare_threshold=None: psycopg 3 prepares a statement after 5 runs, and
# PgBouncer 1.18 in transaction mode hands the next run another server
# connection, where it doesn't exist.
engine = create_engine(url, connect_args={"prepare_threshold": None})


@event.listens_for(Session, "after_begin")
def set_tenant(session, transaction, connection):
    # Transaction-local, as olaclick.tenant_scope = transaction requires.
    connection.execute(
        text("SELECT set_config('olaclick.restaurant_id', :r, true), set_config('olaclick.user_id', :r, true)"),
        {"r": str(tenant)},
    )


checks = Checks("sqlalchemy")
ok = checks.ok


def refused(what, sqlstate, action):
    """action(session), committed in a session of its own, refused with `sqlstate`."""
    def write():
        with Session(engine) as s:
            action(s)
            s.commit()

    checks.refused(what, sqlstate, write, IntegrityError, lambda e: e.orig.sqlstate)


with Session(engine) as s:
    order = Order(restaurant_id=tenant, client_id=tenant, branch_id=tenant)
    s.add(order)
    s.flush()
    s.add_all(
        Line(order_id=order.id, product_id=tenant * 10 + k, quantity=k, price=Decimal("2.50")) for k in (1, 2, 3)
    )
    s.commit()
    oid = order.id
    s.refresh(order)
    ok(f"order {oid} and 3 lines, total {order.total}", order.total == Decimal("15.00") and order.status == "initiated")
    for status in ("sent", "delivered"):
        order.status = status
        s.commit()
        s.refresh(order)
        ok(f"order {oid} {status}", order.status == status)
    history = s.execute(
        text("SELECT status::text FROM olaclick.order_status_history WHERE order_id = :o ORDER BY id"), {"o": oid}
    ).scalars().all()
    ok(f"history {history}", history == ["initiated", "sent", "delivered"])
    seen = s.execute(select(Order.restaurant_id).distinct()).scalars().all()
    ok(f"reads only its restaurant: {seen}", seen == [tenant])

refused("a delivered order sent back", "23514", lambda s: s.get(Order, oid).__setattr__("status", "sent"))
refused("a line of a delivered order deleted", "23514", lambda s: s.delete(s.get(Line, (oid, tenant * 10 + 1))))
refused("an order for another restaurant's client", "23503",
        lambda s: s.add(Order(restaurant_id=tenant, client_id=tenant % 10 + 1, branch_id=tenant)))
