"""Executors: how a step runs on a compute target kind (local processes, docker containers)."""
