"""The jobs service: a framework daemon users submit batch jobs and workflows to (docs/jobs.md)."""
