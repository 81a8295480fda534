"""One pooled requests.Session per run, sized to the endpoint's concurrency."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

from pipeline.version import __version__

USER_AGENT = f"rokt-pipeline/{__version__}"
CONNECT_TIMEOUT_SECONDS = 10.0


def pooled_session(concurrency: int) -> requests.Session:
    session = requests.Session()
    # Retries are ours (pipeline.http.retry): urllib3's would hide attempts from the ledger.
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(concurrency, 1), max_retries=0, pool_block=False)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # TLS verification stays on for every base URL; there is deliberately no switch to turn it off.
    session.verify = True
    session.trust_env = True
    return session
