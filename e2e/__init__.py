"""End-to-end runs of novabridge where its users run it."""
