-- PowerDNS Admin keeps its users/settings in the same PostgreSQL instance, so one
-- volume (dns-postgres-data) holds all DNS state and is backed up together.
CREATE DATABASE powerdnsadmin OWNER pdns;
