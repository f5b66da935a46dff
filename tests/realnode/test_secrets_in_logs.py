"""No secret of the stack in the hub's, the proxy's or the idle culler's log (issue 27, item 1).

Runs after the notebook tests (the stack's tests run in file order), so the logs hold sign-ups,
sign-ins, spawns through the proxy and the culler's rounds. The culler runs as a service the hub
starts, so its lines are in the hub's log. The state files and CLI output are checked on the
simulated stack (tests/e2e/test_interrupted_up.py), which also sets an OAuth client secret; this
stack signs in natively and has none.
"""

from __future__ import annotations

from components import jupyterhub
from components.hub_config import document as hub
from e2e.local_stack import LocalStack
from leaks import leaks, secret_data
from real_cluster import RealCluster

NAMESPACE = "jupyterhub"


def test_no_secret_in_the_hub_proxy_and_culler_logs(stack: LocalStack, real: RealCluster) -> None:
    secrets = {}
    for name in (jupyterhub.SECRET_NAME, hub.TLS_SECRET_NAME):
        data = real.get("secret", "-n", NAMESPACE, name)["data"]
        secrets.update({f"Secret {name} key {key}": value for key, value in secret_data(data).items()})
    assert {f"Secret {jupyterhub.SECRET_NAME} key {jupyterhub.PROXY_TOKEN_KEY}",
            f"Secret {jupyterhub.SECRET_NAME} key {jupyterhub.COOKIE_SECRET_KEY}",
            f"Secret {hub.TLS_SECRET_NAME} key tls.key"} <= set(secrets), sorted(secrets)
    logs = {}
    for deployment in (hub.HUB_SERVICE, hub.PROXY_DEPLOYMENT):
        logs[f"the {deployment}'s log"] = real.kubectl("logs", "-n", NAMESPACE, f"deploy/{deployment}", "--all-containers").stdout
    assert hub.CULLER_SERVICE in logs[f"the {hub.HUB_SERVICE}'s log"], "the culler's service is not in the hub's log"
    assert logs[f"the {hub.PROXY_DEPLOYMENT}'s log"].strip(), "the proxy logged nothing"
    found = leaks(secrets, logs)
    assert not found, "secrets in the logs:\n" + "\n".join(found)
