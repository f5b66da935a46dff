"""An upgrade rehearsed with a team's data (issue 24, item 5; `make rehearse-upgrade`).

The dev stack is deployed from an earlier commit of this repository (UPGRADE_FROM_REF in
versions.env, checked out as a git worktree that runs with this checkout's virtualenv, Pulumi
and tools) onto the session's real cluster, and used the way a team uses it: the admin signs up
and signs in (a browser session), alice signs up and the admin approves her, bob signs up and
waits; alice and the admin hold API tokens, alice's server runs with files in her home and her
browser signed in to it; the stack's own TFJob finishes with its checkpoints and TensorBoard
events on the training volume. Then `pulumi up` runs from this working tree over the same stack,
config file and state, and everything seeded is still there and works, after which `pulumi preview
--expect-no-changes` passes.

The rehearsal's stack is its own (name, Pulumi backend), in the dev stack's namespaces, and runs
before the session's stack is deployed (it uses only the `real` fixture, and conftest.py runs the
stack's tests after the others). It leaves the cluster as it found it: destroyed, its kept data
deleted for real (`kubectl delete namespace`, as docs/data.md says for data an earlier destroy
kept), its volumes gone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.localcluster.containerd import Containerd
from cluster.localcluster.images import digests
from cluster.localcluster.settings import tools
from components.hub_config.document import ROUTE_CHECK_SECONDS, TLS_SECRET_NAME
from components.mnist import DATA_MOUNT, TENSORBOARD
from e2e.local_stack import NAMESPACE as CONFIG_NAMESPACE
from e2e.local_stack import ROOT, LocalStack, condition
from hub_client import NAMESPACE, Client, component_pod, server_answers, wait_for_new_hub
from real_cluster import RealCluster, hub_context, wait_for
from upgrade_from import MissingRef, add_worktree, git, remove_worktree, resolve, wanted_ref

MNIST_NAMESPACE = "mnist"
JOB = "distributed-mnist"
ADMIN, APPROVED, PENDING = "admin", "alice", "bob"  # the dev stack's adminUsers is [admin]
CPU_PROFILE = "tensorflow-cpu"
# Enough for two checkpoints and evaluations (every 100 steps), and quick on 2 shared cores.
TRAIN_STEPS = 200
START_TIMEOUT = 600
TRAINING_TIMEOUT = 1500
# A file and a notebook in the approved user's home: path -> its text (a notebook's: its one cell).
FILES = {"rehearsal/notes.txt": "what the team wrote before the upgrade\n", "rehearsal/analysis.ipynb": "# Kept"}
# What a user's request for their own server's page says when it was answered by that server.
LAB_PATH = f"/user/{APPROVED}/lab"
# The earlier commit's hub leaves its Service for seconds when a few sign-ins keep it busy (its
# readiness probe: 3 failures of 1 s; seen twice on 2026-12-07 as the proxy's 503 between two
# sign-ins), so its clients send again what the proxy could not deliver. The hub this checkout
# deploys stays in its Service (components/jupyterhub.py, STAY_READY) and gets no such patience.
EARLIER_HUB_AWAY_SECONDS = 60
# Where each phase's seconds go (docs/benchmarks.md reads them from the test's output).
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="session")
def upgrade_commit() -> str:
    """Resolved before the real cluster starts: a clone without the commit fails at once."""
    try:
        return resolve(wanted_ref())
    except MissingRef as missing:
        pytest.fail(str(missing), pytrace=False)


@dataclass
class Person:
    """Someone with a browser (their own cookies) on the hub's port-forward."""

    name: str
    password: str
    browser: Client
    token: str = ""

    def sign_in(self) -> tuple[int, str]:
        """(status, page) of the login form's POST; 302 is signed in."""
        status, _, page = self.browser.open("POST", "/hub/login", follow=False, form={
            "username": self.name, "password": self.password, "_xsrf": self.browser.xsrf("/hub/login")})
        return status, page

    def sign_up(self) -> None:
        status, _, page = self.browser.open("POST", "/hub/signup", form={
            "username": self.name, "signup_password": self.password, "signup_password_confirmation": self.password,
            "_xsrf": self.browser.xsrf("/hub/signup")})
        assert status == 200, f"{self.name}'s sign-up: HTTP {status}: {page[:300]}"

    def new_token(self, note: str) -> str:
        """An API token, asked for with the password (as `jupyterhub token` or a script would)."""
        return self.browser.api("POST", f"/users/{self.name}/tokens", "",
                                {"note": note, "auth": {"username": self.name, "password": self.password}}, ok=(200, 201))["token"]


@dataclass
class Seeded:
    """What the team had before the upgrade."""

    people: dict[str, Person]
    server_pod_uid: str
    claims: dict[str, str]  # "namespace/name" -> uid
    volume_files: dict[str, int]  # path on the training volume -> size
    approvals: dict[str, str]  # NativeAuthenticator's accounts: name -> authorized ("Yes"/"No")
    job_uid: str
    chief_uid: str
    ca: str  # the hub's CA certificate, which the browsers trust
    hub_pod: dict[str, Any]
    stack: LocalStack
    clients: list[Client] = field(default_factory=list)


def claims(real: RealCluster) -> dict[str, str]:
    found = {}
    for namespace in (NAMESPACE, MNIST_NAMESPACE):
        for claim in real.get("pvc", "-n", namespace)["items"]:
            assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
            found[f"{namespace}/{claim['metadata']['name']}"] = claim["metadata"]["uid"]
    return found


def volume_files(real: RealCluster) -> dict[str, int]:
    """Every file on the training volume with its size, read in TensorBoard's pod (which mounts it)."""
    script = ("import json, os; print(json.dumps({os.path.join(d, f): os.path.getsize(os.path.join(d, f)) "
              f"for d, _, fs in os.walk({DATA_MOUNT!r}) for f in fs}}))")
    out = real.kubectl("exec", "-n", MNIST_NAMESPACE, f"deploy/{TENSORBOARD}", "--", "python", "-c", script)
    return json.loads(out.stdout)


def tfjob(real: RealCluster) -> dict[str, Any]:
    return real.get("tfjob", "-n", MNIST_NAMESPACE, JOB)


def finished(real: RealCluster) -> dict[str, Any] | None:
    job = tfjob(real)
    return job if condition(job, "Succeeded") or condition(job, "Failed") else None


def ca_certificate(real: RealCluster) -> str:
    return real.get("secret", "-n", NAMESPACE, TLS_SECRET_NAME)["data"]["ca.crt"]


def old_config(commit: str) -> dict[str, Any]:
    """The earlier commit's dev stack config, as a team would have written it then, with the
    rehearsal's shorter training."""
    dev = yaml.safe_load(show(commit, "Pulumi.dev.yaml"))["config"]
    config = {key.removeprefix(f"{CONFIG_NAMESPACE}:"): value for key, value in dev.items()}
    config["mnist"]["trainSteps"] = TRAIN_STEPS
    return config


def show(commit: str, path: str) -> str:
    return git(ROOT, "show", f"{commit}:{path}").stdout


def approvals(admin: Person) -> dict[str, str]:
    """NativeAuthenticator's accounts as its authorization page shows them to the admin: name ->
    "Yes" (authorized) or "No"."""
    status, where, page = admin.browser.open("GET", "/hub/authorize", follow=False)
    assert (status, where) == (200, "/hub/authorize"), f"the admin's authorization page: HTTP {status} at {where}"
    return dict(re.findall(r"<tr[^>]*\bid=([\w.-]+)>\s*<td>[^<]*</td>\s*(?:<td>[^<]*</td>\s*){0,2}?<td>(Yes|No)</td>", page))


def server_ready(person: Person) -> bool:
    server = person.browser.api("GET", f"/users/{person.name}", person.token)["servers"].get("")
    if server is None:
        person.browser.api("POST", f"/users/{person.name}/server", person.token, {"profile": CPU_PROFILE}, ok=(201, 202))
        return False
    return server["ready"]


def put_files(person: Person) -> None:
    base = f"/user/{person.name}/api/contents"
    status, _, text = person.browser.open("PUT", f"{base}/rehearsal", person.token, {"type": "directory"}, browser=False)
    assert status in (200, 201), f"a directory in {person.name}'s home: HTTP {status}: {text[:300]}"
    for path, text in FILES.items():
        model = {"type": "file", "format": "text", "content": text}
        if path.endswith(".ipynb"):
            model = {"type": "notebook", "content": {"cells": [{"cell_type": "markdown", "id": "kept", "metadata": {}, "source": text}],
                                                     "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
        status, _, text = person.browser.open("PUT", f"{base}/{path}", person.token, model, browser=False)
        assert status in (200, 201), f"{path} in {person.name}'s home: HTTP {status}: {text[:300]}"


def home_files(person: Person, browser: bool = False) -> dict[str, str]:
    """The seeded files' texts as the user's server reads them from the home volume (with the
    token, or with the browser's cookies only)."""
    found = {}
    for path in FILES:
        status, _, text = person.browser.open("GET", f"/user/{person.name}/api/contents/{path}",
                                              None if browser else person.token, follow=False, browser=browser)
        assert status == 200, f"{path} in {person.name}'s home: HTTP {status}: {text[:300]}"
        content = json.loads(text)["content"]
        found[path] = content["cells"][0]["source"] if path.endswith(".ipynb") else content
    return found


# What a stack puts outside its namespaces, and the namespaces themselves: the rehearsal must leave
# none of its own, or the session's stack (deployed next) would meet them.
CLUSTER_WIDE = ("namespaces", "customresourcedefinitions", "clusterroles", "clusterrolebindings", "persistentvolumes",
                "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "priorityclasses", "storageclasses")


def cluster_wide(real: RealCluster) -> set[str]:
    out = real.kubectl("get", ",".join(CLUSTER_WIDE), "-o", "name").stdout
    return set(out.split())


def cleanup(real: RealCluster, stack: LocalStack, before: set[str]) -> None:
    """The stack destroyed and the data it keeps deleted for real: the session's stack finds the
    cluster as the rehearsal found it (BEFORE: its cluster-wide objects then)."""
    stack.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=900)
    real.kubectl("delete", "namespace", NAMESPACE, MNIST_NAMESPACE, "--ignore-not-found", "--timeout=300s",
                 check=False, timeout=330)

    def volumes_gone() -> bool:
        left = [v["metadata"]["name"] for v in real.get("pv")["items"]
                if (v["spec"].get("claimRef") or {}).get("namespace") in (NAMESPACE, MNIST_NAMESPACE)]
        return not left

    wait_for(volumes_gone, 180, "the rehearsal's volumes deleted", interval=2)
    # A namespace takes a while to go (Terminating): the next stack could not create it meanwhile.
    try:
        wait_for(lambda: not cluster_wide(real) - before, 180, "no cluster-wide object of the rehearsal left", interval=2)
    except AssertionError:
        raise AssertionError(f"the rehearsal left {sorted(cluster_wide(real) - before)}") from None


def page_answers(hub: Client, path: str) -> bool:
    """Whether PATH answers 200 through the hub's port-forward now (a refused or reset connection: no)."""
    try:
        return hub.open("GET", path, browser=False)[0] == 200
    except OSError:
        return False


def earlier_images_on_the_nodes(real: RealCluster, worktree: Path) -> list[str]:
    """The earlier commit's images on every node, as a cluster running that release has them. The
    nodes hold this checkout's images; an image whose recipe changed since has another content tag,
    which the worktree's own `images.containerd` builds (a cache hit where it was built before) and
    imports. Returns the references imported."""
    python = [str(worktree / ".venv" / "bin" / "python")]
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    listed = subprocess.run(
        [*python, "-c", "from images.recipe import load, names\nfor n in names(): print(n, load(n).reference())"],
        cwd=worktree, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    wanted = dict(line.split() for line in listed if line.strip())  # name -> mlplatform/<name>:<tag>
    imported = []
    for settings in real.nodes():
        containerd = Containerd(settings, tools())
        for name, reference in wanted.items():
            if f"docker.io/{reference}" in digests(containerd):
                continue
            out = subprocess.run([*python, "-m", "images.containerd", name, "--address", str(containerd.socket),
                                  "--ctr", str(containerd.bin / "ctr")],
                                 cwd=worktree, env=env, capture_output=True, text=True, timeout=1200)
            assert out.returncode == 0, f"the earlier {reference} into {settings.spec.name}: {out.stdout}{out.stderr}"
            imported.append(f"{settings.spec.name}: {reference}")
    return imported


@pytest.fixture(scope="module")
def seeded(upgrade_commit: str, real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    theirs = show(upgrade_commit, "requirements.txt")
    assert theirs == (ROOT / "requirements.txt").read_text(), \
        f"{upgrade_commit}'s requirements.txt differs from this checkout's: the rehearsal runs both with one virtualenv"
    before = cluster_wide(real)
    taken = sorted({f"namespace/{n}" for n in (NAMESPACE, MNIST_NAMESPACE)} & before)
    assert not taken, f"{taken} exist: the rehearsal deploys into the dev stack's namespaces, before the session's stack (conftest.py)"
    base = Path(tmp_path_factory.mktemp("upgrade"))
    worktree = add_worktree(upgrade_commit, base / "old")
    started = time.monotonic()
    print(f"the earlier commit's images the nodes lacked, imported: {earlier_images_on_the_nodes(real, worktree)}")
    MEASURED["the earlier commit's images imported (s)"] = round(time.monotonic() - started, 1)
    stack = LocalStack(base / "stack", stack="upgrade", extra_config=old_config(upgrade_commit), root=worktree,
                       source="Pulumi.dev.yaml")
    stack.cluster_dir, stack.kubeconfig = real.cluster_dir, real.kubeconfig
    stack.env.update({k: v for k, v in real.env.items() if k.startswith("MLPLATFORM_CLUSTER_") or k == "MLPLATFORM_KUBECONFIG"})
    clients: list[Client] = []
    try:
        started = time.monotonic()
        stack.create_stack()
        stack.pulumi("up", "--yes", "--skip-preview", timeout=900)
        MEASURED["the earlier commit's stack deployed (s)"] = round(time.monotonic() - started, 1)

        context = hub_context(real)
        hub = Client(real, context, hub_away_patience=EARLIER_HUB_AWAY_SECONDS)
        clients.append(hub)
        hub.connect()
        wait_for(hub.healthy, 300, "the earlier hub's /hub/health through proxy-public", interval=1)
        # /hub/health can answer while the proxy still gives 503 for the hub's pages (seen once, in a
        # run with the other tiers beside it): the sign-up page itself must answer first.
        wait_for(lambda: page_answers(hub, "/hub/signup"), 120, "the earlier hub's sign-up page through proxy-public",
                 interval=1)
        people = {}
        for name in (ADMIN, APPROVED, PENDING):
            browser = Client(real, context, port=hub.port, hub_away_patience=EARLIER_HUB_AWAY_SECONDS)
            clients.append(browser)
            people[name] = Person(name, secrets.token_urlsafe(12), browser)
        admin, alice, bob = people[ADMIN], people[APPROVED], people[PENDING]
        started = time.monotonic()
        # The earlier NativeAuthenticator authorizes an admin's sign-up at once.
        admin.sign_up()
        assert admin.sign_in()[0] == 302, "the admin signs in after signing up"
        admin.token = admin.new_token("before the upgrade")
        for person in (alice, bob):
            person.sign_up()
        status, _, page = admin.browser.open("GET", f"/hub/authorize/{APPROVED}", follow=False)
        assert status == 302, f"the admin's approval of {APPROVED}: HTTP {status}: {page[:300]}"
        assert alice.sign_in()[0] == 302, f"{APPROVED} signs in once approved"
        status, page = bob.sign_in()
        assert status == 200 and "has not been authorized" in page, f"{PENDING} waits for approval: HTTP {status}"
        alice.token = alice.new_token("before the upgrade")
        wait_for(lambda: server_ready(alice), START_TIMEOUT, f"{APPROVED}'s server ready", interval=2)
        put_files(alice)
        # Her browser opens JupyterLab: the server's own cookie, by OAuth through the hub.
        status, where, _ = alice.browser.open("GET", LAB_PATH)
        assert (status, where) == (200, LAB_PATH), f"{APPROVED}'s JupyterLab: HTTP {status} at {where}"
        assert home_files(alice, browser=True) == FILES
        MEASURED["the team's users, tokens, server and files seeded (s)"] = round(time.monotonic() - started, 1)

        started = time.monotonic()
        job = wait_for(lambda: finished(real), TRAINING_TIMEOUT, "the earlier stack's TFJob finished", interval=5)
        assert condition(job, "Succeeded"), job.get("status")
        MEASURED["then until its TFJob Succeeded (s)"] = round(time.monotonic() - started, 1)
        chief = real.get("pod", "-n", MNIST_NAMESPACE, f"{JOB}-chief-0")
        hub_pod = component_pod(real, "hub")
        assert hub_pod, "not one hub pod"
        yield Seeded(people, real.get("pod", "-n", NAMESPACE, f"jupyter-{APPROVED}")["metadata"]["uid"], claims(real),
                     volume_files(real), approvals(admin), job["metadata"]["uid"], chief["metadata"]["uid"], ca_certificate(real),
                     hub_pod, stack, clients)
    finally:
        for client in clients:
            client.close()
        started = time.monotonic()
        stack.root = ROOT
        try:
            cleanup(real, stack, before)
        finally:
            remove_worktree(worktree)
        MEASURED["destroyed and its kept data deleted (s)"] = round(time.monotonic() - started, 1)
        print(f"measured: {json.dumps(MEASURED)}")


@pytest.fixture(scope="module")
def upgraded(seeded: Seeded, real: RealCluster) -> Seeded:
    """`pulumi up` from this working tree over the earlier commit's stack; the hub back."""
    hub = seeded.clients[0]
    stack = seeded.stack
    stack.root = ROOT
    started = time.monotonic()
    stack.pulumi("up", "--yes", "--skip-preview", timeout=900)
    MEASURED["pulumi up from the working tree (s)"] = round(time.monotonic() - started, 1)
    for client in seeded.clients:
        client.hub_away_patience = 0.0
    # The proxy may have been replaced too: a new port-forward, and the routes within the hub's check.
    hub.connect()
    for person in seeded.people.values():
        person.browser.port = hub.port
    now = component_pod(real, "hub")
    rolled = now is None or now["metadata"]["uid"] != seeded.hub_pod["metadata"]["uid"]
    print(f"the upgrade {'rolled' if rolled else 'did not roll'} the hub's pod")
    if rolled:
        wait_for_new_hub(hub, seeded.hub_pod, 300)
    wait_for(hub.healthy, 300, "/hub/health after the upgrade", interval=1)
    alice = seeded.people[APPROVED]
    wait_for(lambda: server_answers(hub, APPROVED, alice.token), ROUTE_CHECK_SECONDS + 15,
             f"{APPROVED}'s server through the proxy after the upgrade", interval=1)
    MEASURED["hub and the server's route back after the up (s)"] = round(time.monotonic() - started, 1)
    return seeded


def fresh_browser(person: Person) -> Client:
    """A browser with no cookies yet, on the same port-forward."""
    return Client(person.browser.real, person.browser.context, port=person.browser.port)


def test_the_hub_keeps_its_certificate(upgraded: Seeded, real: RealCluster) -> None:
    assert ca_certificate(real) == upgraded.ca, "the browsers' trusted CA was replaced by the upgrade"


def test_both_users_are_still_there_the_pending_one_still_pending(upgraded: Seeded) -> None:
    people = upgraded.people
    admin, alice, bob = people[ADMIN], people[APPROVED], people[PENDING]
    # A pending user is NativeAuthenticator's alone until approved: the hub's user list has only
    # those who signed in; the admin's authorization page lists both.
    names = {u["name"] for u in admin.browser.api("GET", "/users", admin.token)}
    assert {ADMIN, APPROVED} <= names and PENDING not in names, names
    assert approvals(admin) == upgraded.approvals == {ADMIN: "Yes", APPROVED: "Yes", PENDING: "No"}
    assert Person(APPROVED, alice.password, fresh_browser(admin)).sign_in()[0] == 302, \
        f"{APPROVED} signs in with her password after the upgrade"
    status, page = Person(PENDING, bob.password, fresh_browser(admin)).sign_in()
    assert status == 200 and "has not been authorized" in page, f"{PENDING} still waits for approval: HTTP {status}"


def test_api_tokens_are_still_valid(upgraded: Seeded) -> None:
    for person in (upgraded.people[ADMIN], upgraded.people[APPROVED]):
        assert person.browser.api("GET", "/user", person.token)["name"] == person.name


def test_browser_sessions_are_still_valid(upgraded: Seeded) -> None:
    for person in (upgraded.people[ADMIN], upgraded.people[APPROVED]):
        status, where, page = person.browser.open("GET", "/hub/home", follow=False)
        assert (status, where) == (200, "/hub/home") and person.name in page, \
            f"{person.name}'s hub session after the upgrade: HTTP {status} at {where}"
    # Alice's browser still reads her server without signing in again (its own cookie).
    assert home_files(upgraded.people[APPROVED], browser=True) == FILES


def test_the_running_server_is_the_same_pod_and_keeps_its_files(upgraded: Seeded, real: RealCluster) -> None:
    alice = upgraded.people[APPROVED]
    assert real.get("pod", "-n", NAMESPACE, f"jupyter-{APPROVED}")["metadata"]["uid"] == upgraded.server_pod_uid
    server = alice.browser.api("GET", f"/users/{APPROVED}", alice.token)["servers"].get("")
    assert server and server["ready"], f"the hub no longer knows {APPROVED}'s server: {server}"
    assert home_files(alice) == FILES
    assert claims(real) == upgraded.claims, "a volume was replaced"


def test_the_checkpoints_and_events_are_on_the_training_volume(upgraded: Seeded, real: RealCluster) -> None:
    job = tfjob(real)
    assert job["metadata"]["uid"] == upgraded.job_uid and condition(job, "Succeeded"), job.get("status")
    chief = real.get("pod", "-n", MNIST_NAMESPACE, f"{JOB}-chief-0")
    assert chief["metadata"]["uid"] == upgraded.chief_uid, "the job trained again"
    files = volume_files(real)
    assert files == upgraded.volume_files
    names = [Path(p).name for p in files]
    assert any(n.startswith("ckpt-") for n in names) and any(n.startswith("events.out.tfevents") for n in names), sorted(files)


def test_the_first_admin_signs_in_with_the_stacks_password(upgraded: Seeded) -> None:
    """The working tree's hub sets the first admin's password to the stack's generated one
    (guarded_native.py) at every start: the password the admin chose at sign-up stops working,
    their session and tokens do not."""
    admin = upgraded.people[ADMIN]
    generated = upgraded.stack.pulumi("stack", "output", "jupyterhubAdminPassword", "--show-secrets").stdout.strip()
    assert Person(ADMIN, generated, fresh_browser(admin)).sign_in()[0] == 302
    status, page = Person(ADMIN, admin.password, fresh_browser(admin)).sign_in()
    assert status == 200 and "Invalid username or password" in page, f"the admin's own password: HTTP {status}"


def test_then_the_stack_previews_no_changes(upgraded: Seeded) -> None:
    upgraded.stack.pulumi("preview", "--expect-no-changes", timeout=600)


def test_the_upgraded_stack_keeps_the_data_on_destroy_from_now_on(upgraded: Seeded) -> None:
    """The earlier commit deleted everything on destroy; after the upgrade the namespaces and the
    claims the stack made are retained, and the stack records what it keeps (`keptData`)."""
    resources = upgraded.stack.kubernetes_resources()
    retained = {(r["type"].rsplit(":", 1)[1], r["outputs"]["metadata"].get("namespace", ""), r["outputs"]["metadata"]["name"])
                for r in resources if r.get("retainOnDelete")}
    wanted = {("Namespace", "", NAMESPACE), ("Namespace", "", MNIST_NAMESPACE),
              ("PersistentVolumeClaim", NAMESPACE, "hub-db-dir"), ("PersistentVolumeClaim", MNIST_NAMESPACE, f"{JOB}-data")}
    assert wanted <= retained, f"retained on destroy: {sorted(retained)}"
    kept = json.loads(upgraded.stack.pulumi("stack", "output", "keptData", "--json").stdout)
    assert kept, "no keptData output after the upgrade"
