"""Several hosts, the kubeadm way: ``minik8s init`` on the master, ``minik8s join`` on each
worker, ``minik8s token`` to let more workers in, ``minik8s reset`` to take a host out.

``init`` makes the PKI (the cluster CA with the API server's serving certificate naming the
host's address, the component and admin client certificates, and etcd's separate CA with
server, peer and API-server-client pairs), starts etcd with mutual TLS on client and peer
ports (https only), the API server, the scheduler and the controller-manager (which signs node
certificates with the cluster CA), publishes ConfigMap ``kube-public/cluster-info`` (the
server URL and CA, the one object anonymous clients may read) and creates a bootstrap token.
Then, as kubeadm does, the master becomes a node too (unless ``--skip-node``): a node
certificate signed right here, Docker, a kubelet that registers the Node with the taint
``node-role.kubernetes.io/control-plane:NoSchedule`` and a kube-proxy; the role label is set
afterwards with the admin's credentials, since a kubelet may not give its node a role.

``join`` trusts nothing at first: it fetches ``cluster-info`` over unverified TLS, checks the
SHA-256 of the CA's SubjectPublicKeyInfo against the pinned ``--discovery-token-ca-cert-hash``
(aborting on a mismatch), requires the ConfigMap's ``jws-kubeconfig-<token id>`` (the
controller-manager's bootstrap signer writes it: a detached JWS over the kubeconfig with the
token's secret, so only someone who knows the token can publish a cluster-info this host
accepts) and verifies it, fetches the ConfigMap again over TLS verified by that CA, then
authenticates with the bootstrap token to post a CertificateSigningRequest for
``system:node:<name>`` (its key never leaves the host). The controller-manager approves it for
a valid token, consuming a single-use token, and signs it; with the resulting node identity
the host asks for its kubelet serving certificate (signer ``kubernetes.io/kubelet-serving``,
the node's address and name as SANs), so the API server verifies the kubelet when relaying
logs and exec. Then the kubelet (and kube-proxy, with the node's credentials) start in the
background, with logs and pid files under the host's home folder like ``minik8s up``'s.
Processes, logs and state folders are ``minik8s.cli.local``'s ``Home``, so ``minik8s status``
works on either host."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import io
import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from minik8s.api import bootstraptoken as bt
from minik8s.cli import local
from minik8s.cli.local import ClusterError, Home
from minik8s.client.kubeconfig import ClientConfig, KubeconfigError, load_kubeconfig, \
    write_kubeconfig
from minik8s.pki import ca_public_key_hash, ensure_pki, make_csr
from minik8s.pki.jws import detached_signature_valid

COMMANDS = ("init", "join", "token", "reset")
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SECRETS_PATH = f"/api/v1/namespaces/{bt.NAMESPACE}/secrets"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# How long join waits for the bootstrap signer to sign cluster-info for a fresh token.
JWS_WAIT = 30.0
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# kubeadm's mark-control-plane: the master's Node carries this label (set by the admin, since
# a kubelet may not give itself a role) and the kubelet registers it with the NoSchedule taint.
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
CONTROL_PLANE_TAINT = f"{CONTROL_PLANE_LABEL}:NoSchedule"


# --- small pieces ----------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta | None:
    """``24h``, ``1h30m``, ``90s``, ``15m`` or plain seconds; ``0`` means never (None)."""
    text = (text or "").strip()
    if text.isdigit():
        seconds = int(text)
    else:
        parts = re.findall(r"(\d+)(h|m|s)", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ClusterError(f"invalid duration {text!r} (use e.g. 24h, 30m, 90s, or 0 for "
                               f"never)")
        seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    return timedelta(seconds=seconds) if seconds else None


def source_address(towards: str = "10.255.255.255") -> str:
    """This host's address on the route towards ``towards`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((towards, 9))
        except OSError:
            raise ClusterError(f"no route towards {towards}: pass --advertise-address / "
                               f"--node-ip") from None
        return s.getsockname()[0]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``HOST:PORT`` (or an https:// URL) -> (host, port); the port defaults to 6443."""
    raw = endpoint if "://" in endpoint else f"https://{endpoint}"
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ClusterError(f"invalid master address {endpoint!r} (expected HOST:PORT)")
    try:
        return parts.hostname, parts.port or 6443
    except ValueError:
        raise ClusterError(f"invalid port in {endpoint!r}") from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def node_name_of(node_name: str | None) -> str:
    """``--node-name``, or the host name, lower-cased; a ClusterError if it is no DNS name."""
    name = (node_name or socket.gethostname()).lower()
    if not _NODE_NAME.match(name) or len(name) > 63:
        raise ClusterError(f"invalid node name {name!r}: use --node-name")
    return name


class Api:
    """A few synchronous API calls (the CLI runs them one at a time): answers as JSON, errors
    as ``ApiError`` with the Status message."""

    def __init__(self, server: str, ctx: ssl.SSLContext, token: str | None = None):
        self.server = server.rstrip("/")
        self.ctx = ctx
        self.token = token

    @classmethod
    def from_config(cls, config: ClientConfig) -> "Api":
        return cls(config.server, config.ssl_context(), config.token)

    def call(self, method: str, path: str, body: Any = None, timeout: float = 15,
             content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("message") or err.reason
            except ValueError:
                message = err.reason
            raise ApiError(err.code, str(message)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ClusterError(f"cannot reach the API server at {self.server}: {reason}") \
                from None


class ApiError(ClusterError):
    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (HTTP {code})")
        self.code = code
        self.message = message


def _admin_api(kubeconfig: Path) -> tuple[Api, ClientConfig]:
    try:
        config = load_kubeconfig(kubeconfig)
    except KubeconfigError as exc:
        raise ClusterError(f"{exc} (run this on the master, or pass --kubeconfig)") from None
    return Api.from_config(config), config


def _kubeconfig_of(a: argparse.Namespace) -> Path:
    if getattr(a, "kubeconfig", None):
        return Path(a.kubeconfig).expanduser()
    return Home.at(a.home).kubeconfig


# --- bootstrap tokens ------------------------------------------------------------------------


def create_token(api: Api, *, ttl: timedelta | None, reusable: bool = False,
                 description: str = "", token: str | None = None) -> str:
    token = token or bt.generate()
    bt.parse(token)
    api.call("POST", SECRETS_PATH, bt.new_secret(token, ttl=ttl, reusable=reusable,
                                                  description=description))
    return token


def join_command(config: ClientConfig, token: str) -> str:
    parts = urlsplit(config.server)
    endpoint = f"{_url_host(parts.hostname or '')}:{parts.port or 443}"
    return (f"minik8s join {endpoint} --token {token} --discovery-token-ca-cert-hash "
            f"{ca_public_key_hash(config.ca_pem or b'')}")


def token_command(a: argparse.Namespace) -> int:
    api, config = _admin_api(_kubeconfig_of(a))
    if a.token_command == "create":
        ttl = parse_duration(a.ttl)
        if a.token:
            try:
                bt.parse(a.token)
            except bt.TokenFormatError as exc:
                raise ClusterError(str(exc)) from None
        token = create_token(api, ttl=ttl, reusable=a.reusable, description=a.description,
                             token=a.token)
        print(join_command(config, token) if a.print_join_command else token)
        return 0
    if a.token_command == "list":
        items = api.call("GET", SECRETS_PATH).get("items") or []
        rows = [["TOKEN", "TTL", "EXPIRES", "USES", "DESCRIPTION"]]
        now = datetime.now(timezone.utc)
        for s in items:
            if s.get("type") != bt.SECRET_TYPE:
                continue
            d = bt.data_of(s)
            exp = bt.expiration(s)
            ttl = "<forever>" if exp is None else (
                "<expired>" if exp <= now else _short((exp - now).total_seconds()))
            uses = ("used by " + bt.used_by(s)) if bt.used_by(s) else (
                "once" if bt.is_single_use(s) else "many")
            rows.append([f"{d.get('token-id', '?')}.{d.get('token-secret', '?')}", ttl,
                         d.get("expiration", "<never>"), uses, d.get("description", "")])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return 0
    # delete
    status = 0
    for value in a.tokens:
        token_id = value.split(".", 1)[0]
        if not re.fullmatch(r"[a-z0-9]{6}", token_id):
            print(f"error: {value!r} is not a token or token id", file=sys.stderr)
            status = 1
            continue
        try:
            api.call("DELETE", f"{SECRETS_PATH}/{bt.secret_name(token_id)}")
            print(f"bootstrap token {token_id!r} deleted")
        except ApiError as err:
            if err.code != 404:
                raise
            print(f"error: bootstrap token {token_id!r} not found", file=sys.stderr)
            status = 1
    return status


def _short(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# --- init ------------------------------------------------------------------------------------


def init(home: Home, *, advertise_address: str | None = None, port: int = 6443,
         etcd_servers: str | None = None, etcd_cafile: str | None = None,
         etcd_certfile: str | None = None, etcd_keyfile: str | None = None,
         token_ttl: str = "24h", pod_network_cidr: str = DEFAULT_CLUSTER_CIDR,
         controller_manager_args: list[str] | None = None, node_name: str | None = None,
         skip_node: bool = False) -> int:
    ttl = parse_duration(token_ttl)
    address = advertise_address or source_address()
    name = None if skip_node else node_name_of(node_name)
    if name and not (shutil.which("docker") and (shutil.which("dockerd")
                                                 or local._docker_ready())):
        raise ClusterError("the master is also a node and runs its pods with Docker, which is "
                           "not installed (Debian: apt-get install -y docker.io); or pass "
                           "--skip-node for the control plane alone")
    if local.running_pid(home, "apiserver") is not None:
        raise ClusterError(f"a control plane already runs from {home.root}; get a join "
                           f"command with `minik8s token create --print-join-command "
                           f"--home {home.root}`, or start over with `minik8s reset`")
    for d in (home.root, home.logs, home.run):
        d.mkdir(parents=True, exist_ok=True)
    settings = local._load_settings(home)
    if settings.get("mode") not in (None, "init"):
        raise ClusterError(f"{home.root} holds a {settings['mode']!r} state; use another "
                           f"--home or `minik8s reset` first")
    settings.update(mode="init", advertise_address=address, port=port)
    started: list[str] = []

    pki = ensure_pki(home.pki, hosts=[address])
    etcd_tls: list[str] = []
    if etcd_servers:
        if any(u.strip().startswith("https://") for u in etcd_servers.split(",")) and not (
                etcd_cafile and etcd_certfile and etcd_keyfile):
            raise ClusterError("https etcd members need --etcd-cafile, --etcd-certfile and "
                               "--etcd-keyfile")
        for f in (etcd_cafile, etcd_certfile, etcd_keyfile):
            if f and not Path(f).is_file():
                raise ClusterError(f"no such file: {f}")
        servers = etcd_servers
        if etcd_cafile:
            etcd_tls = ["--etcd-cafile", str(Path(etcd_cafile).resolve()),
                        "--etcd-certfile", str(Path(etcd_certfile).resolve()),
                        "--etcd-keyfile", str(Path(etcd_keyfile).resolve())]
    else:
        from minik8s.pki.etcd import ensure_etcd_pki

        epki = ensure_etcd_pki(home.pki / "etcd", hosts=[address])
        client_port = settings.get("etcd_client_port") or (
            2379 if local._port_free(address, 2379) else local.free_port())
        peer_port = settings.get("etcd_peer_port") or (
            2380 if local._port_free(address, 2380) else local.free_port())
        settings.update(etcd_client_port=client_port, etcd_peer_port=peer_port)
        servers = f"https://127.0.0.1:{client_port}"
        if local.running_pid(home, "etcd") is None:
            home.etcd_data.mkdir(parents=True, exist_ok=True, mode=0o700)
            local.spawn(home, "etcd", local.etcd_command(
                home.etcd_data, client_port, peer_port, host=address, tls=epki.tls_files()))
            started.append(f"etcd       https://{_url_host(address)}:{client_port} (mutual "
                           f"TLS, peers too; data {home.etcd_data})")
        local._wait_tcp("127.0.0.1", client_port, 30, home, "etcd")
        cert, key = epki.client
        etcd_tls = ["--etcd-cafile", str(epki.ca_cert), "--etcd-certfile", str(cert),
                    "--etcd-keyfile", str(key)]
    settings["etcd_servers"] = servers
    local._save_settings(home, settings)

    if not local._port_free("0.0.0.0", port):
        raise ClusterError(f"port {port} is taken by another program; use --port")
    local.spawn(home, "apiserver", local._python_component(
        "apiserver", "--etcd-servers", servers, *etcd_tls, "--secure-port", str(port),
        "--bind-address", "0.0.0.0", "--advertise-address", address, "--pki-dir", str(home.pki),
        "--cluster-cidr", pod_network_cidr))
    server = f"https://{_url_host(address)}:{port}"
    started.append(f"apiserver  {server}")
    local._wait_ready(f"https://127.0.0.1:{port}/readyz", pki.ca_cert, 60, "the API server",
                      home, "apiserver")
    cm_args = ["--cluster-signing-cert-file", str(pki.ca_cert),
               "--cluster-signing-key-file", str(pki.ca_key), *(controller_manager_args or [])]
    local._start_control_plane(home, pki, f"https://127.0.0.1:{port}", started, [],
                               {"controller-manager": cm_args})

    write_kubeconfig(home.kubeconfig, server=server, ca_pem=pki.ca_cert.read_bytes(),
                     cert_pem=pki.admin_cert.read_bytes(), key_pem=pki.admin_key.read_bytes(),
                     user_name="kubernetes-admin", cluster_name="minik8s")
    api, config = _admin_api(home.kubeconfig)
    publish_cluster_info(api, server, pki.ca_cert.read_bytes(), pod_network_cidr)
    token = create_token(api, ttl=ttl, description="made by minik8s init")
    registered = None
    if name:
        settings.update(node_name=name, node_ip=address, cluster_cidr=pod_network_cidr)
        local._save_settings(home, settings)
        _start_master_node(home, pki, name, address, server, pod_network_cidr, started)
        registered = _wait_registered(home, api, name, timeout=30)
        if registered:
            mark_control_plane(api, name)

    print("started:")
    for line in started:
        print(f"  {line}")
    if registered:
        print(f"\nnode {name} registered, labelled {CONTROL_PLANE_LABEL} and tainted "
              f"NoSchedule: only pods that tolerate the taint run on the master")
    elif name:
        print(f"\nwarning: node {name} did not register within 30s; see "
              f"{home.logs / f'kubelet-{name}.log'}", file=sys.stderr)
    print(f"\nadmin kubeconfig: {home.kubeconfig}")
    print(f"  mkctl --kubeconfig {home.kubeconfig} get nodes")
    print("\nTo add a worker, run this on it as root:\n")
    print(f"  {join_command(config, token)}\n")
    expiry = f"expires in {token_ttl}" if ttl else "never expires"
    print(f"The token works for one worker and {expiry}. For each further worker, print a "
          f"new command here with:\n  minik8s token create --print-join-command "
          f"--home {home.root}")
    print(f"Stop this control plane with: minik8s reset --home {home.root}")
    return 0


def _start_master_node(home: Home, pki: Any, name: str, ip: str, server: str,
                       cluster_cidr: str, started: list[str]) -> None:
    """The master as a node, as kubeadm makes it: a node identity signed here with the
    cluster CA (init holds it; a worker gets its own through a CSR), Docker, then a kubelet
    that registers the Node with the control-plane NoSchedule taint, and a kube-proxy; the
    same process names as ``join``'s, so ``minik8s status`` and ``reset`` see them."""
    from minik8s.pki import issue_node_cert

    folder = home.nodes / name
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem = pki.ca_cert.read_bytes()
    (folder / "ca.crt").write_bytes(ca_pem)
    # client (system:node:NAME) and serving certificate in one: its SANs are the node's
    # address and name, so the API server verifies this kubelet for logs and exec
    cert, key = issue_node_cert(pki, name, hosts=[ip, name])
    kubeconfig = write_kubeconfig(folder / "kubeconfig", server=server, ca_pem=ca_pem,
                                  cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
                                  user_name=f"system:node:{name}", cluster_name="minik8s")
    local._ensure_docker(home, started)
    local._ensure_images()
    if local.running_pid(home, f"kubelet-{name}") is None:
        local.spawn(home, f"kubelet-{name}", local._python_component(
            "kubelet", "--node-name", name, "--kubeconfig", str(kubeconfig),
            "--root-dir", str(folder), "--node-ip", ip, "--network", "bridge",
            "--cluster-cidr", cluster_cidr, "--tls-cert-file", str(cert),
            "--tls-private-key-file", str(key), "--client-ca-file", str(folder / "ca.crt"),
            "--register-with-taints", CONTROL_PLANE_TAINT))
        started.append(f"kubelet    node {name} ({ip}; taint {CONTROL_PLANE_TAINT})")
    if local._component_available("kube-proxy") and \
            local.running_pid(home, f"kube-proxy-{name}") is None:
        local.spawn(home, f"kube-proxy-{name}", local._python_component(
            "kube-proxy", "--node-name", name, "--kubeconfig", str(kubeconfig),
            "--node-ip", ip, "--cluster-cidr", cluster_cidr, "--service-cidr", SERVICE_CIDR))
        started.append(f"kube-proxy node {name}")


def mark_control_plane(api: Api, name: str) -> dict:
    """kubeadm's mark-control-plane phase: the role label on the master's Node, set with the
    admin's credentials (a merge patch: running it again changes nothing)."""
    return api.call("PATCH", f"/api/v1/nodes/{name}",
                    {"metadata": {"labels": {CONTROL_PLANE_LABEL: ""}}},
                    content_type="application/merge-patch+json")


def publish_cluster_info(api: Api, server: str, ca_pem: bytes,
                         cluster_cidr: str | None = None) -> None:
    """ConfigMap ``kube-public/cluster-info`` as kubeadm writes it: a kubeconfig with the
    cluster (server and CA) and no user; plus the pod network range (``clusterCIDR``), so
    that joining kubelets need not be told."""
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "contexts": [], "current-context": "", "preferences": {}, "users": []},
        sort_keys=False)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": kubeconfig}}
    if cluster_cidr:
        body["data"]["clusterCIDR"] = cluster_cidr
    try:
        api.call("POST", "/api/v1/namespaces/kube-public/configmaps", body)
    except ApiError as err:
        if err.code != 409:
            raise
        current = api.call("GET", CLUSTER_INFO)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        api.call("PUT", CLUSTER_INFO, body)


# --- join ------------------------------------------------------------------------------------


def _cluster_from(cm: Any) -> tuple[str, bytes]:
    try:
        doc = yaml.safe_load(cm["data"]["kubeconfig"])
        cluster = doc["clusters"][0]["cluster"]
        return cluster["server"], base64.b64decode(cluster["certificate-authority-data"])
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        raise ClusterError("the master's cluster-info ConfigMap holds no usable kubeconfig "
                           "(was it made by `minik8s init`?)") from None


def discover(host: str, port: int, pinned: str | None, token: str, timeout: float = 15,
             wait: float = JWS_WAIT) -> tuple[str, bytes, dict]:
    """``(server, ca_pem, data)`` from the master's cluster-info, once the CA matches
    ``pinned`` (None: not pinned, ``--discovery-token-unsafe-skip-ca-verification``) and the
    kubeconfig carries a valid JWS signature for ``token`` (``data``: the ConfigMap's data as
    read over TLS verified by that CA).

    A missing signature is waited for up to ``wait`` seconds (the signer may lag a token just
    created); with a pinned CA the token is first tried against the (now authenticated)
    master, so an unknown or expired token is refused at once instead of after the wait.
    The token is never sent to a server that is not authenticated."""
    try:
        token_id, token_secret = bt.parse(token)
    except bt.TokenFormatError as exc:
        raise ClusterError(str(exc)) from None
    base = f"https://{_url_host(host)}:{port}"
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    key = bt.JWS_KEY_PREFIX + token_id
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        try:
            cm = Api(base, insecure).call("GET", CLUSTER_INFO, timeout=timeout)
        except ApiError as err:
            raise ClusterError(f"cannot read cluster-info from {base}: {err.message}") \
                from None
        server, ca_pem = _cluster_from(cm)
        if pinned is not None:
            _check_pin(ca_pem, pinned, base)
        data = cm.get("data") or {}
        signature = data.get(key)
        if signature:
            break
        if pinned is not None and _token_refused(base, ca_pem, token, token_id, timeout):
            raise ClusterError(f"the master refused the bootstrap token: it is unknown, "
                               f"expired or already used, and cluster-info carries no "
                               f"signature for token id {token_id!r} (create a new one on "
                               f"the master with `minik8s token create "
                               f"--print-join-command`)")
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"there is no JWS signature for token id {token_id!r} in the master's "
                f"cluster-info ConfigMap (key {key}) after {wait:.0f}s: the token is unknown, "
                f"expired or not for signing (usage-bootstrap-signing), or the "
                f"controller-manager's bootstrapsigner is not running; refusing to trust "
                f"{base}")
        if not waiting:
            print(f"waiting up to {wait:.0f}s for the master to sign cluster-info for token "
                  f"id {token_id} ...", flush=True)
            waiting = True
        time.sleep(1)
    kubeconfig = data.get(bt.KUBECONFIG_KEY) or ""
    if not detached_signature_valid(signature, kubeconfig, token_id, token_secret):
        raise ClusterError(f"the JWS signature ({key}) of the master's cluster-info does not "
                           f"verify with this token: whoever published it does not know the "
                           f"token; refusing to trust {base}")
    verified = ClientConfig(server=base, ca_pem=ca_pem).ssl_context()
    try:  # the same document again, this time over TLS checked against the pinned CA
        again = Api(base, verified).call("GET", CLUSTER_INFO, timeout=timeout)
    except ClusterError as err:
        raise ClusterError(f"{base} does not present a certificate of the "
                           f"{'pinned' if pinned else 'signed'} CA: {err}") from None
    if ((again.get("data") or {}).get(bt.KUBECONFIG_KEY) != kubeconfig
            or _cluster_from(again) != (server, ca_pem)):
        raise ClusterError("cluster-info changed between the two reads; try again")
    return server, ca_pem, dict(again.get("data") or {})


def _check_pin(ca_pem: bytes, pinned: str, base: str) -> None:
    try:
        actual = ca_public_key_hash(ca_pem)
    except ValueError:
        raise ClusterError("the master's cluster-info carries no valid CA certificate") \
            from None
    if not hmac.compare_digest(actual, pinned):
        raise ClusterError(f"the master's CA does not match the pinned hash: its public key "
                           f"hash is {actual}, --discovery-token-ca-cert-hash is {pinned}; "
                           f"refusing to trust {base}")


def _token_refused(base: str, ca_pem: bytes, token: str, token_id: str,
                   timeout: float) -> bool:
    """Whether the master (verified by its pinned CA) rejects ``token`` (HTTP 401): reading
    one of the token's own CertificateSigningRequest names uses nothing up."""
    api = Api(base, ClientConfig(server=base, ca_pem=ca_pem).ssl_context(), token=token)
    try:
        api.call("GET", f"{CSR_PATH}/node-csr-{token_id}-probe", timeout=timeout)
    except ApiError as err:
        return err.code == 401
    except ClusterError:
        return False
    return False


def _request_certificate(api: Api, name: str, csr_pem: bytes, signer: str,
                         usages: list[str], timeout: float) -> bytes:
    """Post a CSR and wait until it is signed; the certificate PEM."""
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": signer,
                     "usages": usages}}
    api.call("POST", CSR_PATH, body)
    deadline = time.monotonic() + timeout
    while True:
        csr = api.call("GET", f"{CSR_PATH}/{name}")
        status = csr.get("status") or {}
        for c in status.get("conditions") or []:
            if c.get("type") in ("Denied", "Failed"):
                raise ClusterError(f"the master {c['type'].lower()} certificate request "
                                   f"{name}: {c.get('reason', '')}: {c.get('message', '')}")
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        if time.monotonic() > deadline:
            raise ClusterError(f"certificate request {name} was not signed within "
                               f"{timeout:.0f}s (is the controller-manager running on the "
                               f"master? `mkctl get csr` shows it)")
        time.sleep(0.3)


def join(home: Home, endpoint: str, *, token: str, ca_cert_hash: str | None,
         node_name: str | None = None, node_ip: str | None = None,
         cluster_cidr: str | None = None, timeout: float = 60,
         unsafe_skip_ca_verification: bool = False) -> int:
    try:
        token_id, _ = bt.parse(token)
    except bt.TokenFormatError as exc:
        raise ClusterError(str(exc)) from None
    pinned = None
    if ca_cert_hash is not None:
        pinned = ca_cert_hash.strip().lower()
        if not _HASH_RE.match(pinned):
            raise ClusterError(f"--discovery-token-ca-cert-hash {ca_cert_hash!r} is not "
                               f"sha256:<64 hex digits>")
    elif not unsafe_skip_ca_verification:
        raise ClusterError("joining without --discovery-token-ca-cert-hash trusts any CA "
                           "that signs cluster-info with the token; pass the hash, or "
                           "--discovery-token-unsafe-skip-ca-verification to accept that")
    name = node_name_of(node_name)
    host, port = split_endpoint(endpoint)
    if local.running_pid(home, f"kubelet-{name}") is not None:
        raise ClusterError(f"node {name} already runs from {home.root}; run `minik8s reset "
                           f"--home {home.root}` first")
    settings = local._load_settings(home)
    if settings.get("mode") not in (None, "join"):
        raise ClusterError(f"{home.root} holds a {settings['mode']!r} state; use another "
                           f"--home")
    ip = node_ip or source_address(host)

    server, ca_pem, info = discover(host, port, pinned, token)
    if pinned:
        print(f"the master's CA matches {pinned}; cluster-info is signed for token id "
              f"{token_id}; API server {server}")
    else:
        print(f"cluster-info is signed for token id {token_id} (CA not pinned: "
              f"--discovery-token-unsafe-skip-ca-verification); API server {server}")
    cluster_cidr = cluster_cidr or info.get("clusterCIDR") or DEFAULT_CLUSTER_CIDR
    ca_ctx = ClientConfig(server=server, ca_pem=ca_pem).ssl_context()
    boot = Api(server, ca_ctx, token=token)
    csr_pem, key_pem = make_csr(f"system:node:{name}", ["system:nodes"])
    try:
        cert_pem = _request_certificate(
            boot, f"node-csr-{token_id}-{secrets.token_hex(4)}", csr_pem, CLIENT_SIGNER,
            ["digital signature", "key encipherment", "client auth"], timeout)
    except ApiError as err:
        if err.code == 401:
            raise ClusterError("the master refused the bootstrap token: it is unknown, "
                               "expired or already used (create a new one on the master with "
                               "`minik8s token create --print-join-command`)") from None
        raise
    folder = home.nodes / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca_pem)
    kubeconfig = write_kubeconfig(folder / "kubeconfig", server=server, ca_pem=ca_pem,
                                  cert_pem=cert_pem, key_pem=key_pem,
                                  user_name=f"system:node:{name}", cluster_name="minik8s")
    print(f"node client certificate issued for system:node:{name}")

    node_api = Api.from_config(load_kubeconfig(kubeconfig))
    serving_csr, serving_key = make_csr(f"system:node:{name}", ["system:nodes"],
                                        hosts=[ip, name])
    serving_cert = _request_certificate(
        node_api, f"kubelet-serving-{name}-{secrets.token_hex(4)}", serving_csr,
        SERVING_SIGNER, ["digital signature", "key encipherment", "server auth"], timeout)
    cert_file, key_file = folder / "kubelet-serving.crt", folder / "kubelet-serving.key"
    _write_private(key_file, serving_key)
    cert_file.write_bytes(serving_cert)

    for d in (home.root, home.logs, home.run):
        d.mkdir(parents=True, exist_ok=True)
    settings.update(mode="join", server=server, node_name=name, node_ip=ip,
                    cluster_cidr=cluster_cidr)
    local._save_settings(home, settings)
    started: list[str] = []
    local._ensure_docker(home, started)
    local._ensure_images()
    kubelet = local._python_component(
        "kubelet", "--node-name", name, "--kubeconfig", str(kubeconfig),
        "--root-dir", str(folder), "--node-ip", ip, "--network", "bridge",
        "--cluster-cidr", cluster_cidr, "--tls-cert-file", str(cert_file),
        "--tls-private-key-file", str(key_file), "--client-ca-file", str(folder / "ca.crt"))
    local.spawn(home, f"kubelet-{name}", kubelet)
    started.append(f"kubelet     node {name} ({ip})")
    if local._component_available("kube-proxy"):
        # kube-proxy reads Services, Endpoints and Nodes: the node's identity may do that.
        local.spawn(home, f"kube-proxy-{name}", local._python_component(
            "kube-proxy", "--node-name", name, "--kubeconfig", str(kubeconfig),
            "--node-ip", ip, "--cluster-cidr", cluster_cidr, "--service-cidr", SERVICE_CIDR))
        started.append(f"kube-proxy  node {name}")

    registered = _wait_registered(home, node_api, name, timeout=30)
    print("started:")
    for line in started:
        print(f"  {line}")
    print(f"logs: {home.logs}")
    if registered:
        print(f"\nnode {name} registered with the cluster; on the master: mkctl get nodes")
    else:
        print(f"\nwarning: node {name} did not register within 30s; see "
              f"{home.logs / f'kubelet-{name}.log'}", file=sys.stderr)
    print(f"Take this host out with: minik8s reset --home {home.root}")
    return 0


def _wait_registered(home: Home, api: Api, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if local.running_pid(home, f"kubelet-{name}") is None:
            return False
        try:
            api.call("GET", f"/api/v1/nodes/{name}", timeout=5)
            return True
        except ClusterError:
            time.sleep(0.5)
    return False


def _write_private(path: Path, data: bytes) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# --- reset -----------------------------------------------------------------------------------


def reset(home: Home) -> int:
    """Stop what ``init`` or ``join`` started from ``home``, remove the pod containers of
    this host's node (the joined worker, or the master's own), and delete the state (PKI,
    etcd data, kubeconfigs)."""
    settings = local._load_settings(home)
    names = sorted(p.stem for p in home.run.glob("*.pid")) if home.run.exists() else []
    stopped = [n for n in names if n.startswith(("kubelet-", "kube-proxy-"))
               and local.stop(home, n)]
    node = settings.get("node_name")
    cleaned: list[str] = []
    if settings.get("mode") in ("join", "init") and node:
        removed = _remove_node_containers(node, home.nodes / node / "ca.crt")
        if removed:
            print(f"removed {removed} pod container(s) of node {node}")
        cleaned = _remove_node_network()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = local.down(home, purge=True)
    rest = []
    for line in out.getvalue().splitlines():
        if line.startswith("stopped: "):
            stopped += line[len("stopped: "):].split(", ")
        elif line != "nothing was running":
            rest.append(line)
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    if cleaned:
        print("removed: " + ", ".join(cleaned))
    for line in rest:
        print(line)
    return code


def _remove_node_network() -> list[str]:
    """What this host's kubelet and kube-proxy set up in its network namespace (the one
    ``reset`` runs in, as ``init``/``join`` did): the pod bridge, routes and egress chain,
    then kube-proxy's rules, service bridge and addresses (``kube-proxy --cleanup``)."""
    try:
        from kubelet.network.bridge import teardown
        removed = teardown()
    except Exception as exc:  # noqa: BLE001 - reset goes on; say what was left
        print(f"warning: the pod network was not removed: {exc}", file=sys.stderr)
        removed = []
    if local._component_available("kube-proxy"):
        out = subprocess.run(local._python_component("kube-proxy", "--cleanup"),
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            print(f"warning: kube-proxy --cleanup failed: {out.stderr.strip()[-300:]}",
                  file=sys.stderr)
        elif out.stdout.startswith("removed: "):
            removed += out.stdout.strip()[len("removed: "):].split(", ")
    return removed


def _remove_node_containers(node: str, ca_file: Path) -> int:
    docker = shutil.which("docker")
    if docker is None or not ca_file.exists():
        return 0
    from minik8s.pki import cluster_id

    out = subprocess.run(
        [docker, "ps", "-aq", "--filter", f"label=io.minik8s.node={node}",
         "--filter", f"label=io.minik8s.cluster={cluster_id(ca_file.read_bytes())}"],
        capture_output=True, text=True)
    ids = out.stdout.split()
    if ids:
        subprocess.run([docker, "rm", "-f", *ids], capture_output=True, text=True)
    return len(ids)


# --- command line ----------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    i = sub.add_parser("init", help="make this host a cluster's master (kubeadm-like)",
                       description="Create the PKI, start etcd (mutual TLS), the API server, "
                                   "scheduler and controller-manager; make this host a node "
                                   "too (Docker, a kubelet and kube-proxy; the Node is "
                                   f"labelled {CONTROL_PLANE_LABEL} and tainted "
                                   f"{CONTROL_PLANE_TAINT}, so only pods tolerating it run "
                                   "here); and print a `minik8s join` command for workers.")
    i.add_argument("--advertise-address", help="this host's address the workers reach "
                   "(default: the address of the default route)")
    i.add_argument("--port", type=int, default=6443, help="API server port (default 6443)")
    i.add_argument("--home", help="state folder (default $MINIK8S_HOME or ~/.minik8s)")
    i.add_argument("--etcd-servers", help="use this external etcd cluster (comma-separated "
                   "client URLs) instead of starting one")
    i.add_argument("--etcd-cafile", help="CA of the external etcd members")
    i.add_argument("--etcd-certfile", help="client certificate for the external etcd")
    i.add_argument("--etcd-keyfile", help="key of --etcd-certfile")
    i.add_argument("--token-ttl", default="24h", help="lifetime of the printed token "
                   "(default 24h; 0: never expires)")
    i.add_argument("--pod-network-cidr", default=DEFAULT_CLUSTER_CIDR,
                   help=f"range of the nodes' pod ranges (default {DEFAULT_CLUSTER_CIDR})")
    i.add_argument("--controller-manager-arg", action="append", default=[], metavar="ARG",
                   help="extra controller-manager flag, repeatable")
    i.add_argument("--node-name", help="the master's node name (default: the host name)")
    i.add_argument("--skip-node", action="store_true",
                   help="no kubelet on this host (e.g. no Docker here): the control plane "
                        "only")

    j = sub.add_parser("join", help="add this host to a cluster as a worker node",
                       description="Check the master's CA against the pinned hash and the "
                                   "token's signature on cluster-info, get a node certificate "
                                   "with the bootstrap token, then start the kubelet and "
                                   "kube-proxy in the background.")
    j.add_argument("master", metavar="MASTER:PORT", help="the master's API server address")
    j.add_argument("--token", required=True, help="bootstrap token from `minik8s init` or "
                   "`minik8s token create`")
    j.add_argument("--discovery-token-ca-cert-hash", metavar="sha256:HASH",
                   help="pinned SHA-256 of the master CA's public key")
    j.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true",
                   help="join without the hash, trusting the CA in the cluster-info the "
                        "token's signature authenticates")
    j.add_argument("--node-name", help="this node's name (default: the host name)")
    j.add_argument("--node-ip", help="this node's address (default: the one on the route "
                   "to the master)")
    j.add_argument("--cluster-cidr", help="the cluster's pod range (default: the one the "
                   "master publishes, init's --pod-network-cidr)")
    j.add_argument("--home", help="state folder (default $MINIK8S_HOME or ~/.minik8s)")

    t = sub.add_parser("token", help="manage bootstrap tokens (on the master)")
    t.add_argument("--home", help="the master's state folder (for its admin kubeconfig)")
    t.add_argument("--kubeconfig", help="admin kubeconfig (default: HOME/kubeconfig)")
    tsub = t.add_subparsers(dest="token_command", metavar="create|list|delete", required=True)
    tc = tsub.add_parser("create", help="create a bootstrap token")
    tc.add_argument("token", nargs="?", help="the token to create (default: a random one)")
    tc.add_argument("--ttl", default="24h", help="lifetime (default 24h; 0: never expires)")
    tc.add_argument("--reusable", action="store_true",
                    help="may join any number of workers until it expires (default: one)")
    tc.add_argument("--description", default="")
    tc.add_argument("--print-join-command", action="store_true",
                    help="print the whole `minik8s join` command")
    tl = tsub.add_parser("list", help="list bootstrap tokens")
    td = tsub.add_parser("delete", help="delete bootstrap tokens")
    td.add_argument("tokens", nargs="+", metavar="TOKEN|ID")
    for p in (tc, tl, td):
        p.add_argument("--home", default=argparse.SUPPRESS)
        p.add_argument("--kubeconfig", default=argparse.SUPPRESS)

    r = sub.add_parser("reset", help="stop what init or join started here and delete its "
                       "state")
    r.add_argument("--home", help="state folder (default $MINIK8S_HOME or ~/.minik8s)")


def run(a: argparse.Namespace) -> int:
    if a.command == "init":
        return init(Home.at(a.home), advertise_address=a.advertise_address, port=a.port,
                    etcd_servers=a.etcd_servers, etcd_cafile=a.etcd_cafile,
                    etcd_certfile=a.etcd_certfile, etcd_keyfile=a.etcd_keyfile,
                    token_ttl=a.token_ttl, pod_network_cidr=a.pod_network_cidr,
                    controller_manager_args=a.controller_manager_arg, node_name=a.node_name,
                    skip_node=a.skip_node)
    if a.command == "join":
        return join(Home.at(a.home), a.master, token=a.token,
                    ca_cert_hash=a.discovery_token_ca_cert_hash, node_name=a.node_name,
                    node_ip=a.node_ip, cluster_cidr=a.cluster_cidr,
                    unsafe_skip_ca_verification=a.discovery_token_unsafe_skip_ca_verification)
    if a.command == "token":
        return token_command(a)
    if a.command == "reset":
        return reset(Home.at(a.home))
    return 2


__all__ = ["COMMANDS", "add_commands", "run", "init", "join", "reset", "discover",
           "parse_duration", "create_token", "join_command", "publish_cluster_info", "Api",
           "ApiError", "mark_control_plane", "node_name_of", "CONTROL_PLANE_LABEL",
           "CONTROL_PLANE_TAINT"]
