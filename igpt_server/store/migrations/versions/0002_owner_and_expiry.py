"""Sessions get an owner (the API key's name) and a last-use time (idle expiry).

A database made before Alembic may hold either column already (its ``_migrate`` added them
one by one), so each is added only when missing. Sessions from before expiry existed get a
full idle period from the upgrade on.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("sessions")}
    with op.batch_alter_table("sessions", recreate="never") as batch:
        if "owner" not in have:
            batch.add_column(sa.Column("owner", sa.Text))
        if "touched_at" not in have:
            batch.add_column(sa.Column("touched_at", sa.Float))
    op.execute(sa.text("UPDATE sessions SET touched_at = :now WHERE touched_at IS NULL").bindparams(now=time.time()))
