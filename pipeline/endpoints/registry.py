"""Destination config -> endpoint module."""

from __future__ import annotations

from typing import get_args

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
from pipeline.endpoints.base import Endpoint, EndpointBase
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


def endpoint_class(endpoint: str) -> type[EndpointBase]:
    """The class that sends to a job file's `destination.endpoint`: what the commands that read outputs alone
    (status, lookup) ask of it, without building it from credentials."""
    for destination, endpoint_type in (_SINGLE_IDENTIFIER | _MULTI_COLUMN).items():
        if endpoint in get_args(destination.model_fields["endpoint"].annotation):
            return endpoint_type
    raise KeyError(endpoint)


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
