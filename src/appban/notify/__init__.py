"""Telling people: the notice outbox's sender, its channels and templates, and the
signed links to each employee's own page."""
