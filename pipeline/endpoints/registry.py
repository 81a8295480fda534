"""Destination config -> endpoint module."""

from __future__ import annotations

from pipeline.config import (
    AudienceImportDestination,
    AudienceImportLegacyDestination,
    DataDeletionDestination,
    JobConfig,
    NurtureUnsubscribeDestination,
)
from pipeline.endpoints.audience_import import AudienceImport
from pipeline.endpoints.base import Endpoint
from pipeline.endpoints.data_deletion import DataDeletion
from pipeline.endpoints.nurture_unsubscribe import NurtureUnsubscribe

_MODULES = {
    AudienceImportDestination: AudienceImport,
    AudienceImportLegacyDestination: AudienceImport,
    DataDeletionDestination: DataDeletion,
    NurtureUnsubscribeDestination: NurtureUnsubscribe,
}


def endpoint_for(job: JobConfig) -> Endpoint:
    (role,) = job.source.columns.mapped().keys()
    return _MODULES[type(job.destination)](job.destination, role)
