"""Operators: thin tasks that resolve arguments and call one hook method."""
