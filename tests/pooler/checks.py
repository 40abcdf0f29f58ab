"""What the ORM drills (orm_django.py, orm_sqlalchemy.py) share: one line per
check, "ok: ORM: ..." or "not ok: ORM: ...", and exit 1 at the first failure;
tests/pooler/run counts the "ok: " lines."""
import sys


class Checks:
    def __init__(self, orm):
        self.orm = orm

    def ok(self, what, cond):
        if not cond:
            print(f"not ok: {self.orm}: {what}")
            sys.exit(1)
        print(f"ok: {self.orm}: {what}")

    def refused(self, what, sqlstate, write, error, sqlstate_of):
        """write() must raise `error` (the ORM's IntegrityError) whose
        SQLSTATE, as sqlstate_of(the error) reads it, is `sqlstate`; a write
        that goes through fails the check."""
        try:
            write()
        except error as e:
            self.ok(f"{what}: {error.__name__} {sqlstate_of(e)}", sqlstate_of(e) == sqlstate)
            return
        self.ok(f"{what}: refused", False)
