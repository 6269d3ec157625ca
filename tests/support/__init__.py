"""Helpers the tests of every component share (tests/ is on sys.path, so they import as `support.*`)."""
