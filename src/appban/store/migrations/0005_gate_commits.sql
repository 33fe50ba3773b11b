-- appban schema, version 5: which history a gate has followed.

-- Each committed change of the gate counter gets a random token. A gate remembers the
-- token of the counter value it last read; if the database later holds another token
-- there (a copy restored over it, even one whose counter has since gone further), the
-- history is not the one it followed, and it loads the table whole. Old rows are
-- pruned: a gate that finds its row gone loads whole too.
CREATE TABLE gate_commits (
    seq   INTEGER PRIMARY KEY,
    token TEXT NOT NULL
);
