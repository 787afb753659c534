"""The control API (issue 13): FastAPI over the decision log and the Kafka control topic.

`create_app()` (api.server.app) builds it from an `ApiContext` (api.server.context); `stratflow
run --api HOST:PORT` serves it from the run's own process, `stratflow serve` on its own.
"""
