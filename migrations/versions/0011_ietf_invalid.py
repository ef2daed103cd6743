"""IETF resumable uploads: an upload marked invalid

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 16:30:00

``resources.invalid_at`` is set when content went past an IETF upload's known length (draft
-08 on: the server rejects the request, marks the upload invalid and rejects any further
interaction with it). Such a resource answers 410 ``upload-invalid`` until it expires.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invalid_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('invalid_at')
