#!/usr/bin/env python3
"""Create the named buckets in the local S3-compatible store (idempotent; retried while the store starts).

Usage: fineforge-create-buckets BUCKET... with FINEFORGE_S3_ENDPOINT_URL, FINEFORGE_S3_ACCESS_KEY_ID and
FINEFORGE_S3_SECRET_ACCESS_KEY in the environment (the store's own credentials, never AWS_*: those would
also sign requests to public buckets such as s3://commoncrawl).
"""

import os
import sys
import time

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

ATTEMPTS = 30

client = botocore.session.get_session().create_client(
    "s3",
    region_name="us-east-1",
    endpoint_url=os.environ["FINEFORGE_S3_ENDPOINT_URL"],
    aws_access_key_id=os.environ["FINEFORGE_S3_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["FINEFORGE_S3_SECRET_ACCESS_KEY"],
)
for _ in range(ATTEMPTS):
    try:
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
        break
    except (BotoCoreError, ClientError) as error:
        print(f"store not ready ({error}); retrying", file=sys.stderr)
        time.sleep(2)
else:
    sys.exit(f"the store at {os.environ['FINEFORGE_S3_ENDPOINT_URL']} did not answer")
for name in sys.argv[1:]:
    if name not in existing:
        client.create_bucket(Bucket=name)
    print(f"bucket {name}: ready")
