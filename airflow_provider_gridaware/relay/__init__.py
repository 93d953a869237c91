"""The signed webhook relay: grid events pushed by POST, checked, stored, then acknowledged.

``auth`` (pure) checks a request's signature or token, timestamp and delivery id; ``app`` is the ASGI
application (``gridaware relay`` serves it standalone; ``relay_fastapi_app`` mounts it in Airflow's
api-server as a plugin app).
"""
