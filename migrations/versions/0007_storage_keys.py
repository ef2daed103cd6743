"""Resource generations: ``resources.storage_key``

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

A resource whose id a signed creation URL derived -- created again by that URL after a
DELETE -- stores each creation's bytes under a key of its own (``<id>.<generation>``), so a
writer of an earlier creation never touches a later one's. NULL means the key is the id: random
ids (created once) and every existing row, whose objects already have that name; nothing is
renamed, and a release before this one keeps serving all but the new keyed resources.

The downgrade refuses while any row has a key: the previous release would look for those
objects under the bare id and not find them. Delete those resources (or keep this revision).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storage_key', sa.String(length=128), nullable=True))


def downgrade() -> None:
    keyed = op.get_bind().execute(
        sa.text("SELECT count(*) FROM resources WHERE storage_key IS NOT NULL")
    ).scalar_one()
    if keyed:
        raise RuntimeError(
            f"{keyed} resources store their bytes under a generation key, which revision 0006 "
            "cannot find; delete them before downgrading"
        )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('storage_key')
