-- Runs once on an empty timescaledb-data volume (docker-entrypoint-initdb.d).
-- The extension is per database, so enable it where the apps' tables live.
CREATE DATABASE macula;
\connect macula
CREATE EXTENSION IF NOT EXISTS timescaledb;
