"""The tamper-evident audit log: every decision and change, hash-chained."""

from appban.audit.log import AuditLog, Problem, verify

__all__ = ["AuditLog", "Problem", "verify"]
