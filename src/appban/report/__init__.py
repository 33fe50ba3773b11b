"""Showing and proving: status counts, devices with evidence, history."""
