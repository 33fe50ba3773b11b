-- appban schema, version 7: who may post check-ins to `appban serve`.

-- A source is a name check-ins are filed under (`intune`, `agent`, ...). Posting to
-- the API needs one of its tokens; the token decides the source.
CREATE TABLE sources (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

-- Tokens and osquery enroll secrets are random (256 bits) and shown once; only their
-- SHA-256 digest is kept, so a copy of the database grants nothing.
CREATE TABLE source_tokens (
    id         INTEGER PRIMARY KEY,
    source     TEXT NOT NULL REFERENCES sources (name),
    kind       TEXT NOT NULL,               -- 'token' (check-ins, webhooks) | 'osquery-secret' (enroll)
    digest     TEXT NOT NULL UNIQUE,        -- hex SHA-256 of the whole token
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX source_tokens_source ON source_tokens (source, kind);
