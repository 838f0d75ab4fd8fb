"""Root conftest: the project's own tests use the fixtures that tracking-core ships."""

pytest_plugins = ["tracking_core.testing"]
