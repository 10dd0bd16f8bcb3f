"""The server-rendered web UI: Jinja2 templates, one stylesheet, English and Russian."""
