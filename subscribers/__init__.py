"""The audience and its rules: lists, subscribers, consent and suppression. Never imports the worker."""
