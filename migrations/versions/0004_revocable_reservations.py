"""IETF resumable uploads: a newer request may end a stale append (revocable reservations)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:30:00

Two columns with server defaults (false): the previous release keeps working against this
schema, its reservations are simply never revocable.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revocable', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('revoked', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_column('revoked')
        batch_op.drop_column('revocable')
