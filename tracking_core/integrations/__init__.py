"""Web-framework integrations: a request sets `tracking_core.tracking_context`.

Each module is imported only when the application names it, and only the framework's own
module imports its framework:

- `tracking_core.integrations.asgi`: ``TrackingMiddleware`` for any ASGI application.
- `tracking_core.integrations.wsgi`: ``TrackingMiddleware`` for any WSGI application.
- `tracking_core.integrations.django`: ``TrackingMiddleware`` and the ``TRACKING`` setting.
- `tracking_core.integrations.flask`: the ``Tracking`` extension.
- `tracking_core.integrations.fastapi`: ``tracking_dependency`` and ``TrackingMiddleware``.

This package itself imports nothing (see docs/environments/frameworks.md).
"""
