"""The bureau's web UI: server-rendered dashboards (Jinja2 + htmx + ECharts, all vendored), Chinese first."""
