"""The Django app of tests/pooler/orm_django.py: olaclick's tables, unmanaged."""
