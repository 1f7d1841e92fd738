"""The service: FastAPI routes, settings, auth and the job store. Submits Ray jobs, never trains."""
