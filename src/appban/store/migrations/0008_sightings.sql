-- appban schema, version 8: what the gate saw, and devices seen reading mail.

-- Every (DeviceId, user, DeviceType, protocol) the gate answered, coalesced: when it
-- was first and last seen and how often. Written by the gate's flusher, a batch a
-- second, never on a request's path. The gate answers before the mail server
-- authenticates anyone, so a row proves little: it shows DeviceIds no inventory knows
-- (`appban device list --unseen`). Capped (sightings_max_rows: past it, new keys are
-- refused and counted) and expired (sightings_max_age), so random DeviceIds cannot
-- grow it without bound. Text is stored as appban.text lets it be shown: anything
-- else percent-encoded.
CREATE TABLE sightings (
    eas_id      TEXT NOT NULL,              -- the ActiveSync DeviceId; '' for IMAP, POP3, SMTP
    username    TEXT NOT NULL,              -- the user the gate would trust; '' when none
    device_type TEXT NOT NULL,              -- ActiveSync DeviceType; '' when none
    protocol    TEXT NOT NULL,              -- activesync | imap | pop3 | smtp | other
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (eas_id, username, device_type, protocol)
);
CREATE INDEX sightings_last_seen ON sightings (last_seen);

-- Rows held (kept here so that the cap costs no count of the table) and new keys
-- refused at the cap, since the database was made.
INSERT INTO meta (key, value) VALUES ('sightings_rows', '0');
INSERT INTO meta (key, value) VALUES ('sightings_refused', '0');

-- When the gate first saw the device's owner use one of its DeviceIds (a Jamf or
-- Apple MDM record names the DeviceId as an identifier, not as mail): from then on the
-- device reads mail (SPEC, Device). NULL: never.
ALTER TABLE devices ADD COLUMN mail_seen INTEGER;
