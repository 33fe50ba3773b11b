"""Enforcing at the mail gateway: decisions for mail proxies."""
