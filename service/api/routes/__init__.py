"""One router per resource: allocate, jobs, health."""
