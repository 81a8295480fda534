"""Destination config -> endpoint module."""

from __future__ import annotations

from pipeline.config import (
    AccountDeletionDestination,
    AudienceImportDestination,
    AudienceImportLegacyDestination,
    DataDeletionDestination,
    JobConfig,
    NetworkPrivacyDestination,
    NurtureUnsubscribeDestination,
)
from pipeline.endpoints.account_deletion import AccountDeletion
from pipeline.endpoints.audience_import import AudienceImport
from pipeline.endpoints.base import Endpoint
from pipeline.endpoints.data_deletion import DataDeletion
from pipeline.endpoints.network_privacy import NetworkPrivacy
from pipeline.endpoints.nurture_unsubscribe import NurtureUnsubscribe

_SINGLE_IDENTIFIER = {
    AudienceImportDestination: AudienceImport,
    AudienceImportLegacyDestination: AudienceImport,
    DataDeletionDestination: DataDeletion,
    NurtureUnsubscribeDestination: NurtureUnsubscribe,
}
_MULTI_COLUMN = {
    NetworkPrivacyDestination: NetworkPrivacy,
    AccountDeletionDestination: AccountDeletion,
}


def endpoint_for(job: JobConfig) -> Endpoint:
    columns = job.source.columns.mapped()
    kind = type(job.destination)
    if kind in _SINGLE_IDENTIFIER:
        (role,) = columns
        endpoint = _SINGLE_IDENTIFIER[kind](job.destination, role)
    else:
        endpoint = _MULTI_COLUMN[kind](job.destination, columns)
    endpoint.target = job.destination.target()
    return endpoint
