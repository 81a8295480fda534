"""Destination config -> endpoint module."""

from __future__ import annotations

from pipeline.config import AudienceImportDestination, AudienceImportLegacyDestination, JobConfig
from pipeline.endpoints.audience_import import AudienceImport
from pipeline.endpoints.base import Endpoint


def endpoint_for(job: JobConfig) -> Endpoint:
    destination = job.destination
    (role,) = job.source.columns.mapped().keys()
    if isinstance(destination, (AudienceImportDestination, AudienceImportLegacyDestination)):
        return AudienceImport(destination, role)
    raise NotImplementedError(f"no endpoint module for {destination.endpoint}")
