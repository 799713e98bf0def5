#!/bin/sh
# Runs once, when the postgres volume is created: a separate database and owner for the
# landing store and the normalized tables, apart from Airflow's metadata.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v knit_password="$KNIT_DB_PASSWORD" <<'SQL'
CREATE USER knit WITH PASSWORD :'knit_password';
CREATE DATABASE knit OWNER knit;
SQL
