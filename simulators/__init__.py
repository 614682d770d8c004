"""Stand-ins for every device and for the center, for tests and technicians' test benches."""
