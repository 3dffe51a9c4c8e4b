#!/bin/sh
# Runs once, on an empty data volume (postgres' /docker-entrypoint-initdb.d): the gateway's runtime
# role. It reads and writes rows of the tables the owner (POSTGRES_USER, who runs migrations)
# creates, and cannot create, alter or drop anything (README.md, "Database roles").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$POSTGRES_APP_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE picmetric_app LOGIN PASSWORD :'app_password';
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO picmetric_app;
GRANT USAGE ON SCHEMA public TO picmetric_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO picmetric_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO picmetric_app;
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO picmetric_app;
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO picmetric_app;
SQL
