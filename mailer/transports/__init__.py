"""Transports hand a rendered batch to a mail system. The engine sees only the protocol in base.py."""
