-- appban schema, version 9: osquery agents enrolled with `appban serve`, the refreshes
-- asked of them, and MDM app lists waiting for their device's facts.

-- One row per enrollment. The node key is random (256 bits) and shown to the agent
-- once; only its SHA-256 digest is kept. The node key decides the host: every result
-- the agent posts is filed under `host`, whatever the body says. Of what the agent
-- reports at enrollment only what links its records to other sources' is kept.
CREATE TABLE osquery_nodes (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL REFERENCES sources (name),
    host          TEXT NOT NULL,            -- the host_identifier it enrolled with
    digest        TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the node key
    hostname      TEXT,                     -- system_info.hostname
    serial        TEXT,                     -- system_info.hardware_serial
    uuid          TEXT,                     -- system_info.uuid (a Mac's hardware UUID)
    platform      TEXT,                     -- os_version.platform: darwin, windows, ubuntu...
    platform_like TEXT,                     -- os_version.platform_like: debian, rhel...
    enrolled_at   INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX osquery_nodes_host ON osquery_nodes (source, host);

-- `appban device refresh`: a request that a node run appban's app queries now. Handed
-- to the node by distributed/read (sent_at), answered by distributed/write (done_at).
CREATE TABLE osquery_refreshes (
    id           INTEGER PRIMARY KEY,
    node         INTEGER NOT NULL REFERENCES osquery_nodes (id),
    requested_at INTEGER NOT NULL,
    sent_at      INTEGER,
    done_at      INTEGER
);
CREATE INDEX osquery_refreshes_open ON osquery_refreshes (node, done_at);

-- An Apple MDM app list posted to the webhook before any DeviceInformation told its
-- device's platform: held until one does, then applied with it. Only the apps the
-- catalog may name are held (all of them with keep_full_inventory), with the catalog
-- version they were cut down with; one list per device, the newest.
CREATE TABLE mdm_held_apps (
    source          TEXT NOT NULL REFERENCES sources (name),
    device_key      TEXT NOT NULL,          -- the EnrollmentID or UDID
    observed_at     INTEGER NOT NULL,
    scope           TEXT NOT NULL,          -- full | managed
    user_enrollment INTEGER NOT NULL,
    apps            BLOB NOT NULL,          -- JSON: [{"id", "name", "version"}]
    catalog_version INTEGER,                -- NULL: every app kept
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (source, device_key)
);
CREATE INDEX mdm_held_apps_received ON mdm_held_apps (received_at);
