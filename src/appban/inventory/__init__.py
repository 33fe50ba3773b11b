"""Knowing the fleet: check-ins and inventory files, and applying them to the store."""
