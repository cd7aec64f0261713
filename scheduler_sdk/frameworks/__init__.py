"""Frameworks shipped with the product."""
