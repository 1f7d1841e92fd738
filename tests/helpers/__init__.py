"""Helpers shared by several test modules (test-only: nothing outside tests/ imports them).

- ``jobs``: job-store rows and submissions for the job-store tests.
- ``postgres``: a throwaway PostgreSQL server, from the system's binaries or the ``pgserver`` wheel.
"""
