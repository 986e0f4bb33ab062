"""Pipeline authoring: content-addressed snapshots of a step's source directory."""

from __future__ import annotations

import uuid

from django.db import models

from portal.models import Workspace


class Snapshot(models.Model):
    """A source directory as a manifest of per-file hashes; the files are stored once each,
    by hash (pipelines/snapshots.py). ``digest`` is the hash of the manifest itself."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="snapshots")
    digest = models.CharField(max_length=64)
    # {"relative/path.py": {"sha256": "...", "size": 123, "mode": 420}}
    manifest = models.JSONField()
    total_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "digest"], name="snapshot_digest_unique")
        ]

    def __str__(self) -> str:
        return self.digest[:12]
