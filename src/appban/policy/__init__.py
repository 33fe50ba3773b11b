"""Policies: what is banned, for whom, from when; and the state each device is in."""
