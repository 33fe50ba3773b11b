-- appban schema, version 6: one physical device, however many sources report it.

-- A device that several source records describe ("linked"): its row holds the union of
-- their evidence, and each record's own report is kept in device_records. A device
-- reported by one source only is, as before, its one row in devices.
ALTER TABLE devices ADD COLUMN linked INTEGER NOT NULL DEFAULT 0;
-- Identifiers that name the physical device ("kind:value" lines), as the source gave them.
ALTER TABLE devices ADD COLUMN identifiers TEXT NOT NULL DEFAULT '';
-- A differential stream's position (osquery): the epoch and counter of the last report.
ALTER TABLE devices ADD COLUMN epoch INTEGER;
ALTER TABLE devices ADD COLUMN counter INTEGER;

CREATE TABLE device_records (
    id              INTEGER PRIMARY KEY,    -- shown as rec-<id>
    device_id       INTEGER NOT NULL REFERENCES devices (id),
    source          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    platform        TEXT NOT NULL,
    ownership       TEXT NOT NULL,
    owner           TEXT NOT NULL,          -- '' when the source names no one
    model           TEXT,
    os_version      TEXT,
    inventory_scope TEXT NOT NULL,
    mail_reported   INTEGER,
    eas_ids         TEXT NOT NULL DEFAULT '',
    observed_at     INTEGER NOT NULL,
    catalog_version INTEGER,
    identifiers     TEXT NOT NULL DEFAULT '',
    epoch           INTEGER,
    counter         INTEGER,
    linked_by       TEXT NOT NULL,          -- the identifier that linked it, "kind:value"
    linked_at       INTEGER NOT NULL,
    UNIQUE (source, source_id)
);
CREATE INDEX device_records_device ON device_records (device_id);

CREATE TABLE record_observations (
    record_id      INTEGER NOT NULL REFERENCES device_records (id) ON DELETE CASCADE,
    app_key        TEXT NOT NULL,
    app_id         TEXT,
    name           TEXT,
    version        TEXT,
    signing_sha256 TEXT,
    family         TEXT NOT NULL DEFAULT '',
    match_kind     TEXT NOT NULL DEFAULT '',
    confidence     TEXT NOT NULL DEFAULT '',
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    gone_at        INTEGER,
    PRIMARY KEY (record_id, app_key)
) WITHOUT ROWID;

-- Every source record's strong identifiers (and ActiveSync DeviceIds), to find the
-- records of one physical device; device_id is the device the record belongs to.
CREATE TABLE device_identifiers (
    kind      TEXT NOT NULL,
    value     TEXT NOT NULL,
    source    TEXT NOT NULL,
    source_id TEXT NOT NULL,
    owner     TEXT NOT NULL,                -- the record's owner, '' if unknown
    device_id INTEGER NOT NULL,
    PRIMARY KEY (kind, value, source, source_id)
) WITHOUT ROWID;
CREATE INDEX device_identifiers_record ON device_identifiers (source, source_id);
CREATE INDEX device_identifiers_device ON device_identifiers (device_id);

-- Pairs of records an admin unlinked: never linked again by an import.
CREATE TABLE unlinked (
    source_a    TEXT NOT NULL,
    source_id_a TEXT NOT NULL,
    source_b    TEXT NOT NULL,
    source_id_b TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (source_a, source_id_a, source_b, source_id_b)
) WITHOUT ROWID;
