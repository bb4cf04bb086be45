#!/bin/sh
# Runs once, on the first start of the postgres container (docker-entrypoint-initdb.d), as the
# superuser: a demo table, the CDC role chartlog connects as, and the publication chartlog
# reads (FOR ALL TABLES needs a superuser, so it is made here rather than by chartlog).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v cdc_password="$CHARTLOG_CDC_PASSWORD" <<'SQL'
CREATE TABLE public.patients (
  id          bigint PRIMARY KEY,
  full_name   text NOT NULL,
  ssn         text,
  birth_date  date,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE ROLE chartlog_cdc LOGIN REPLICATION PASSWORD :'cdc_password';
GRANT USAGE ON SCHEMA public TO chartlog_cdc;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO chartlog_cdc;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO chartlog_cdc;
CREATE PUBLICATION chartlog_clinic_pg FOR ALL TABLES;
SQL
