"""A job's trace context

Adds `jobs.traceparent`: the W3C traceparent of the submit's span, to which each photo's trace
(made by the worker that answers it) links. Only adds, so older code keeps serving.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 13:12:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "traceparent")
