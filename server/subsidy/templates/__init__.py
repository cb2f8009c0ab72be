"""Jinja2 templates of the subsidy package (a package so the wheel ships them as package data)."""
