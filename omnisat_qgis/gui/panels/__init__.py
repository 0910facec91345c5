"""Self-contained panels the OmniSat dock hosts."""
