-- appban schema, version 10: the notice outbox, the policy moments already planned,
-- and employees' requests for an exemption.

-- One row per notice per channel. A row is written in the same transaction as the
-- state change or policy event that causes it (so a crash can neither lose one nor
-- invent one) and says what the notice is about, not its text: it is rendered when
-- sent. (policy_id, person, kind, occasion, channel) is unique: planning the same
-- notice twice keeps one.
CREATE TABLE notices (
    id            INTEGER PRIMARY KEY,
    policy_id     TEXT NOT NULL,
    person        TEXT NOT NULL,              -- the recipient's email (people.email)
    kind          TEXT NOT NULL,              -- memo | reminder | policy_changed | blocked | restored
                                              -- | correction | exemption | exemption_expiring
    occasion      TEXT NOT NULL,              -- what tells two notices of one kind apart:
                                              -- '' (memo, correction), the reminder's or the
                                              -- block's time, the revision, the exemption id
    channel       TEXT NOT NULL,              -- mail | webhook
    devices       TEXT NOT NULL DEFAULT '',   -- device ids the notice is about, comma-separated
    created_at    INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,           -- not sent before
    state         TEXT NOT NULL,              -- pending | sending | sent | failed | cancelled
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try      INTEGER,                    -- after a temporary failure: not before
    claimed_until INTEGER,                    -- while sending: the sender's lease
    sent_at       INTEGER,
    last_error    TEXT NOT NULL DEFAULT '',
    UNIQUE (policy_id, person, kind, occasion, channel)
);
CREATE INDEX notices_pending ON notices (state, due_at, id);
CREATE INDEX notices_leases ON notices (state, claimed_until);
CREATE INDEX notices_person ON notices (person);

-- Policy-wide moments whose notices were planned (the memo wave, each reminder): a
-- moment is planned once, whoever's clock reaches it first.
CREATE TABLE notice_marks (
    policy_id TEXT NOT NULL,
    mark      TEXT NOT NULL,                  -- 'memo' | 'reminder:<micros>'
    at        INTEGER NOT NULL,               -- when it was planned
    PRIMARY KEY (policy_id, mark)
);

-- An employee's request, from their own page, to be exempted from a policy.
CREATE TABLE exemption_requests (
    id           INTEGER PRIMARY KEY,
    policy_id    TEXT NOT NULL,
    person       TEXT NOT NULL,
    device_id    INTEGER,                     -- NULL: every device of the person
    reason       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    state        TEXT NOT NULL,               -- pending | granted | refused
    decided_at   INTEGER,
    decided_by   TEXT NOT NULL DEFAULT '',
    answer       TEXT NOT NULL DEFAULT '',    -- the refusal's reason
    exemption_id INTEGER
);
CREATE INDEX exemption_requests_state ON exemption_requests (state, id);

-- The key that signs employees' personal page links (appban.notify.links): 256
-- random bits, made with the database.
INSERT INTO meta (key, value) VALUES ('link_key', lower(hex(randomblob(32))));
