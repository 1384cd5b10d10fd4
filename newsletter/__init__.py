"""The composition root: the CLI and the web app that people use. Everything else is imported from here."""
