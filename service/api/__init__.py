"""The HTTP surface: the FastAPI app (`service.api.app:app`), its dependencies, middleware,
request policy, probes, request metrics, and every route under `routes/`. It hands jobs to
service/jobs/ and never runs one itself."""
