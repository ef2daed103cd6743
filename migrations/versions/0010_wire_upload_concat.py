"""tus: the Upload-Concat of a final upload as it was received

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:00:00

tus Concatenation asks HEAD of a final upload to echo ``Upload-Concat`` as received: the URLs
the client named (absolute or relative), not paths rebuilt from the partials' ids. Finals
created before this revision keep the rebuilt form (the column is NULL for them).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upload_concat', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_column('upload_concat')
