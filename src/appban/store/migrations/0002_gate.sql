-- appban schema, version 2: what the mail gate follows besides devices.

-- ActiveSync DeviceIds a device stopped using, so a gate's table can drop them.
CREATE TABLE gate_tombstones (
    seq       INTEGER NOT NULL,             -- the device's gate_seq when it dropped the id
    eas_id    TEXT NOT NULL,
    device_id INTEGER NOT NULL
);
CREATE INDEX gate_tombstones_seq ON gate_tombstones (seq);

-- Per-device mail passwords for IMAP, POP3 and SMTP (argon2 hashes; the password is
-- shown once when issued and never stored).
CREATE TABLE credentials (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id),
    username   TEXT NOT NULL,               -- the owner's e-mail, lower-cased
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    seq        INTEGER NOT NULL             -- gate change counter at issue or revocation
);
CREATE INDEX credentials_device ON credentials (device_id);
CREATE INDEX credentials_seq ON credentials (seq);
