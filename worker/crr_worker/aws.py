"""boto3 clients built from the config: explicit credentials, our own retries, bounded connection pools."""

from __future__ import annotations

import configparser
import os

import boto3
from botocore.config import Config

from crr_worker.config import ConfigError, Credentials


def load_keys(credentials: Credentials, key: str) -> dict:
    """boto3 session arguments from a shared-credentials INI file; {} means the default chain (env, role)."""
    if credentials.file is None and credentials.profile is None:
        return {}
    path = credentials.file or os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    profile = credentials.profile or "default"
    parser = configparser.ConfigParser()
    parser.read(path)
    if not parser.has_section(profile):
        raise ConfigError(key + ".profile", "profile %r not in %s" % (profile, path))
    section = parser[profile]
    try:
        keys = {
            "aws_access_key_id": section["aws_access_key_id"],
            "aws_secret_access_key": section["aws_secret_access_key"],
        }
    except KeyError as exc:
        raise ConfigError(key + ".file", "profile %r lacks %s" % (profile, exc.args[0])) from exc
    if section.get("aws_session_token"):
        keys["aws_session_token"] = section["aws_session_token"]
    return keys


def make_client(service: str, endpoint: str | None, region: str, keys: dict, pool: int, read_timeout: float):
    """A client that never retries by itself (retries belong to the site budget) and skips optional checksums.

    Optional CRC checksums are off because several S3-compatible servers reject the aws-chunked trailer
    encoding they imply; integrity is checked with Content-MD5 instead.
    """
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool,
        connect_timeout=5,
        read_timeout=read_timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session(region_name=region, **keys)
    return session.client(service, endpoint_url=endpoint, config=config)
