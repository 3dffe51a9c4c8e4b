"""Create the analyses table

Exactly the table `Base.metadata.create_all` made before migrations existed, so that such a
database can be adopted at this revision (gateway.store.migrate).

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:19:03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=2048), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_analyses_cache_key"), "analyses", ["cache_key"])
    op.create_index(op.f("ix_analyses_image_sha256"), "analyses", ["image_sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_analyses_image_sha256"), table_name="analyses")
    op.drop_index(op.f("ix_analyses_cache_key"), table_name="analyses")
    op.drop_table("analyses")
