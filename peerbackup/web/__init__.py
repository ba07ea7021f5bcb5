"""The dashboard page and its assets (static/), served by the admin interface (daemon/dashboard.py)."""
