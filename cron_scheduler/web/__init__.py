"""The web dashboard, JSON API and Prometheus metrics (`cron-scheduler web`).

A process of its own over the same files as the CLI: it reads jobs.json and state.db through
the CLI's services (views, control), acts through the same request path, and never writes
state.db except for those requests. The framework (Starlette + uvicorn), Jinja2 and
prometheus_client are the optional `web` extra: only this package imports them.

Modules: auth (token, binds), data (the reads the pages need), words (schedules in words),
charts (SVG), api (JSON and actions), pages (HTML), live (Server-Sent Events), metrics
(/metrics), app (routes and serving), child (the daemon's --web).
"""
