"""Email and page templates, shipped as package data."""
