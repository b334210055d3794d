-- Seed the macula.local zone so ExternalDNS (in the kind clusters) and the agent's
-- DNS publisher can add records through the API from the first start; both only
-- manage records and expect the zone to exist.
INSERT INTO domains (name, type) VALUES ('macula.local', 'NATIVE');
INSERT INTO records (domain_id, name, type, content, ttl, auth)
SELECT id, 'macula.local', 'SOA',
       'ns1.macula.local hostmaster.macula.local 1 10800 3600 604800 60', 60, true
FROM domains WHERE name = 'macula.local';
INSERT INTO records (domain_id, name, type, content, ttl, auth)
SELECT id, 'macula.local', 'NS', 'ns1.macula.local', 60, true
FROM domains WHERE name = 'macula.local';
INSERT INTO records (domain_id, name, type, content, ttl, auth)
SELECT id, 'ns1.macula.local', 'A', '127.0.0.1', 60, true
FROM domains WHERE name = 'macula.local';
