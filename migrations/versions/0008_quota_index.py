"""Quotas: an index of each owner's open resources

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 12:00:00

A partial index: only incomplete resources and tus finals whose digest is pending are in it,
so the quota check of a creation reads the creator's open resources and nothing else.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

OPEN = "status = 'incomplete' OR (concat = 'final' AND sha256 IS NULL)"


def upgrade() -> None:
    op.create_index(
        'ix_resources_owner_open', 'resources', ['owner'], unique=False,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index('ix_resources_owner_open', table_name='resources')
