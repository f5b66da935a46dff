"""The platform's hub configuration, run on this machine for the browser test.

It loads the real jupyterhub_config.py with the document the component rendered (both as the
ConfigMap holds them, paths in $HUB_CONFIG_FILE and $MLPLATFORM_HUB_CONFIG) and changes only
what a hub outside Kubernetes must: where the hub, the proxy and the database are, and the
spawner, which is KubeSpawner with a local process for the pod (standin_spawner.py).
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821
load_subconfig(os.environ["HUB_CONFIG_FILE"])  # noqa: F821

sys.path.insert(0, str(Path(__file__).parent))
hub_port = int(os.environ["HUB_PORT"])
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{hub_port}"
c.JupyterHub.bind_url = f"https://localhost:{os.environ['PROXY_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['PROXY_API_PORT']}"
c.JupyterHub.db_url = f"sqlite:///{os.environ['HUB_DATA_DIR']}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{os.environ['HUB_DATA_DIR']}/jupyterhub_cookie_secret"
c.JupyterHub.spawner_class = "standin_spawner.StandInKubeSpawner"
# In the cluster user pods outlive the hub; here the stand-in servers must end with it.
c.JupyterHub.cleanup_servers = True

# A test that drives the hub's REST API as an admin names the token of its own service.
if os.environ.get("TEST_ADMIN_TOKEN"):
    c.JupyterHub.services.append({"name": "test-driver", "api_token": os.environ["TEST_ADMIN_TOKEN"]})
    c.JupyterHub.load_roles.append({"name": "admin", "services": ["test-driver"]})
