-- appban schema, version 1. Times are integer microseconds since the epoch, UTC.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE people (
    email      TEXT PRIMARY KEY,            -- lower-cased
    name       TEXT NOT NULL DEFAULT '',
    org_unit   TEXT NOT NULL DEFAULT '',
    groups     TEXT NOT NULL DEFAULT '',    -- ';'-joined, sorted
    timezone   TEXT NOT NULL DEFAULT 'UTC',
    updated_at INTEGER NOT NULL
);

CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,    -- appban's own id, shown as dev-<id>
    source          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    platform        TEXT NOT NULL,
    ownership       TEXT NOT NULL,
    owner           TEXT NOT NULL,
    model           TEXT,
    os_version      TEXT,
    inventory_scope TEXT NOT NULL,
    mail_reported   INTEGER,                -- device.mail_access as the source said, NULL if not
    eas_ids         TEXT NOT NULL DEFAULT '', -- ' '-joined ActiveSync DeviceIds
    observed_at     INTEGER NOT NULL,       -- the snapshot stored
    catalog_version INTEGER,                -- catalog the snapshot was filtered against; NULL: kept whole
    credential      INTEGER NOT NULL DEFAULT 0,
    decision        TEXT NOT NULL DEFAULT 'allow',
    reason          TEXT NOT NULL DEFAULT 'ok',
    gate_seq        INTEGER NOT NULL DEFAULT 0, -- change counter the gate follows
    UNIQUE (source, source_id)
);
CREATE INDEX devices_owner ON devices (owner);
CREATE INDEX devices_source_id ON devices (source_id);
CREATE INDEX devices_gate_seq ON devices (gate_seq);

CREATE TABLE device_eas (
    eas_id    TEXT NOT NULL,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (eas_id, device_id)
) WITHOUT ROWID;

CREATE TABLE observations (
    device_id      INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    app_key        TEXT NOT NULL,           -- the app id, or name:<name> without one
    app_id         TEXT,
    name           TEXT,
    version        TEXT,
    signing_sha256 TEXT,
    family         TEXT NOT NULL DEFAULT '',
    match_kind     TEXT NOT NULL DEFAULT '',
    confidence     TEXT NOT NULL DEFAULT '',
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    gone_at        INTEGER,                 -- first snapshot without it; NULL while present
    PRIMARY KEY (device_id, app_key)
) WITHOUT ROWID;
CREATE INDEX observations_family ON observations (family, device_id) WHERE gone_at IS NULL;
CREATE INDEX observations_app ON observations (app_id, device_id) WHERE gone_at IS NULL;

CREATE TABLE catalog_families (
    family        TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    publisher     TEXT NOT NULL DEFAULT '',
    added_version INTEGER NOT NULL
);

CREATE TABLE catalog_ids (
    kind          TEXT NOT NULL,
    value         TEXT NOT NULL,
    family        TEXT NOT NULL,            -- '' when watched only because a policy names it
    provenance    TEXT NOT NULL,
    added_version INTEGER NOT NULL,
    PRIMARY KEY (kind, value, family)
);

CREATE TABLE policies (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,          -- draft | active | withdrawn
    revision        INTEGER NOT NULL,
    body            TEXT NOT NULL,          -- the normalised policy, JSON
    source_text     TEXT NOT NULL,          -- the file as applied
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    withdrawn_at    INTEGER,
    withdraw_reason TEXT
);

CREATE TABLE exemptions (
    id         INTEGER PRIMARY KEY,
    policy_id  TEXT NOT NULL REFERENCES policies (id),
    person     TEXT,
    device_id  INTEGER REFERENCES devices (id),
    starts     INTEGER NOT NULL,
    until      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE attestations (
    id          INTEGER PRIMARY KEY,
    policy_id   TEXT NOT NULL REFERENCES policies (id),
    device_id   INTEGER NOT NULL REFERENCES devices (id),
    person      TEXT NOT NULL,
    attested_at INTEGER NOT NULL
);
CREATE INDEX attestations_device ON attestations (policy_id, device_id);

CREATE TABLE states (
    policy_id  TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    since      INTEGER NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    deny       TEXT NOT NULL DEFAULT '',    -- the gate reason this state contributes, or ''
    next_check INTEGER,                     -- when time alone could change it
    PRIMARY KEY (policy_id, device_id)
) WITHOUT ROWID;
CREATE INDEX states_device ON states (device_id);
CREATE INDEX states_next_check ON states (next_check) WHERE next_check IS NOT NULL;

CREATE TABLE state_history (
    id        INTEGER PRIMARY KEY,
    policy_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    old_state TEXT,
    new_state TEXT NOT NULL,
    at        INTEGER NOT NULL,
    cause     TEXT NOT NULL
);
CREATE INDEX state_history_policy ON state_history (policy_id, at);
CREATE INDEX state_history_device ON state_history (device_id, at);

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    data      TEXT NOT NULL,                -- canonical JSON
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
