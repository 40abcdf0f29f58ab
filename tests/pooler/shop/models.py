"""Unmanaged models over olaclick's orders and lines. No search_path (PgBouncer
1.18 refuses the startup "options" parameter), so db_table names the schema
through Django's quoting. created_at and created_by_user_id are left to the
database's defaults: Django writes every field it knows."""
from django.db import models


class Order(models.Model):
    id = models.BigAutoField(primary_key=True)
    restaurant_id = models.IntegerField()
    client_id = models.IntegerField()
    branch_id = models.IntegerField()
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    status = models.TextField(default="initiated")

    class Meta:
        managed = False
        db_table = 'olaclick"."orders'


class Line(models.Model):
    pk = models.CompositePrimaryKey("order_id", "product_id")
    order_id = models.BigIntegerField()
    product_id = models.IntegerField()
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        managed = False
        db_table = 'olaclick"."order_details'
