"""The `aiomesos` command line."""
