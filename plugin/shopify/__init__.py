"""retouch."""
