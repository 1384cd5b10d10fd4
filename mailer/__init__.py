"""Issue -> email. Knows nothing about subscribers or queues, so it can be used (and tested) alone."""
