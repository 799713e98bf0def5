"""The webhook receiver: verify Knit's pushed events and land them, durable before the 200.

``knit_provider.webhook.app.create_app`` builds the ASGI app; ``python -m knit_provider.webhook``
serves it standalone; the plugin mounts it into Airflow's API server at ``/knit``.
"""
