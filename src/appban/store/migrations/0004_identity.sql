-- appban schema, version 4: a database's identity, and the key of mail-password hashes.

-- A random identity made once, when the database is created (or upgraded to this
-- version). A gate that follows the store reloads its whole table when the identity
-- changes: a different database (a restore, a copy) put in place of the one it knew.
INSERT INTO meta (key, value)
SELECT 'database_id', lower(hex(randomblob(16)))
WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'database_id');

-- The key of the keyed hash (HMAC-SHA-256) that mail passwords are stored under.
INSERT INTO meta (key, value)
SELECT 'credential_key', lower(hex(randomblob(32)))
WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'credential_key');
