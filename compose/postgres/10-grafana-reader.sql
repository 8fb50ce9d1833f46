-- Run by the postgres image once, when its data volume is empty (docker-entrypoint-initdb.d), as
-- POSTGRES_USER in POSTGRES_DB. Grafana reads the results as this role: it can SELECT every table
-- and view the app's migrations create later (pg_read_all_data), and change nothing. Dev-only
-- password: compose.yaml gives Grafana the same one (STOCKS_PG_PASSWORD).
CREATE ROLE grafana_reader LOGIN PASSWORD 'grafana-reader-dev-password';
GRANT pg_read_all_data TO grafana_reader;
