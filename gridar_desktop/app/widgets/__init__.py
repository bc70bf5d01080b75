"""Thin widgets over the studio's state."""
