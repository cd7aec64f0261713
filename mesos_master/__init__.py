"""The aiomesos master: tracks agents and frameworks, allocates with DRF, offers resources."""
