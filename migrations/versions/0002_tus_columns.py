"""tus: Upload-Metadata and the concatenation role of a resource

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:00:00

Only nullable columns are added, so the previous release keeps working against this schema
(it neither reads nor writes them).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upload_metadata', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('concat', sa.String(length=8), nullable=True))
        batch_op.create_check_constraint(
            'concat_known', "concat IS NULL OR concat IN ('partial', 'final')"
        )


def downgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_constraint('concat_known', type_='check')
        batch_op.drop_column('concat')
        batch_op.drop_column('upload_metadata')
