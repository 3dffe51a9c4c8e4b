"""Analyses belong to an owner; stored URLs lose their credentials

Adds `owner` (gateway.tenancy.owner_of: a hash of the API key that made the analysis). Analyses
stored before owners existed belong to the anonymous owner: readable where the gateway runs
without API keys, by no key where it has them. Stored URLs lose their userinfo, query string and
fragment, which the gateway kept before (tokens and passwords of clients).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 20:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.tenancy import ANONYMOUS, public_url

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_analyses = sa.table(
    "analyses",
    sa.column("id", sa.String),
    sa.column("source_kind", sa.String),
    sa.column("source", sa.String),
    sa.column("owner", sa.String),
)


def upgrade() -> None:
    op.add_column("analyses", sa.Column("owner", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    connection.execute(sa.update(_analyses).values(owner=ANONYMOUS))
    urls = connection.execute(
        sa.select(_analyses.c.id, _analyses.c.source).where(_analyses.c.source_kind == "url")
    ).all()
    for analysis_id, source in urls:
        if public_url(source) != source:
            connection.execute(
                sa.update(_analyses)
                .where(_analyses.c.id == analysis_id)
                .values(source=public_url(source))
            )
    with op.batch_alter_table("analyses") as batch:
        batch.alter_column("owner", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("owner")
