"""Shared plumbing: settings, the database handle, the SQL loader, typed errors, task and run queries."""
