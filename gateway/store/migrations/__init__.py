"""Alembic's revisions of the results database (see gateway.store.migrate); they ship with the
package."""
