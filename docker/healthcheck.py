#!/usr/bin/env python3
"""Container healthcheck: exit 0 when URL answers 2xx.

Usage: fineforge-healthcheck URL [ENV_VAR]; ENV_VAR names a variable holding `user:password` for basic auth.
"""

import base64
import os
import sys
import urllib.request

url = sys.argv[1]
request = urllib.request.Request(url)
credentials = os.environ.get(sys.argv[2], "") if len(sys.argv) > 2 else ""
if credentials:
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
with urllib.request.urlopen(request, timeout=5) as response:
    sys.exit(0 if 200 <= response.status < 300 else 1)
