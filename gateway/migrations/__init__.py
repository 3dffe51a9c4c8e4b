"""Alembic's revisions of the results database (see gateway.migrate); they ship with the package."""
