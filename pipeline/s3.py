"""boto3 clients for sources and outputs, from the standard credential chain."""

from __future__ import annotations

from typing import Any

from pipeline.config import OutputConfig, S3Options


def s3_client(options: S3Options) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.Session(profile_name=options.profile, region_name=options.region)
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    return session.client("s3", endpoint_url=options.endpoint_url, config=config)


def put_args(output: OutputConfig) -> dict[str, str]:
    args: dict[str, str] = {}
    if output.server_side_encryption:
        args["ServerSideEncryption"] = output.server_side_encryption
    if output.kms_key_id:
        args["SSEKMSKeyId"] = output.kms_key_id
    return args
