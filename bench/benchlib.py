"""What the benchmarks share: the sandbox's clouds.yaml by default, the suite's cloud, image, flavor and network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from conformance import cloud as cloudlayer
from conformance import flavors
from conformance.images import make_image, upload_image

REPO = Path(__file__).resolve().parent.parent


def use_sandbox_clouds_yaml() -> None:
    """Without OS_CLIENT_CONFIG_FILE, read the running sandbox's clouds.yaml (SANDBOX_DIR or .sandbox/)."""
    if not os.environ.get("OS_CLIENT_CONFIG_FILE"):
        default = Path(os.environ.get("SANDBOX_DIR", REPO / ".sandbox")) / "clouds.yaml"
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(default)


def open_checked(name: str, role: str = "zuul") -> cloudlayer.Cloud:
    cloud = cloudlayer.open_cloud(name, None, role)
    cloudlayer.check_access(cloud)
    return cloud


def test_node_flavor(cloud, profile):
    """R4's test-node flavor, with local disk: the benchmarks do not boot from volumes."""
    flavor = flavors.node_choice(cloud, profile, allow_boot_from_volume=False).best
    if flavor is None:
        raise SystemExit(f"no flavor meets {flavors.node_spec(profile)}")
    return flavor


def test_node_network(cloud):
    nets = [n for n in cloud.conn.network.networks() if not n.is_router_external and n.subnet_ids]
    own = [n for n in nets if n.project_id == cloud.project_id] or nets
    if not own:
        raise SystemExit(f"no network for test nodes in {cloud.scope}")
    return sorted(own, key=lambda n: n.name or "")[0]


def uploaded_image(cloud, tracker, profile) -> str:
    """The suite's own image, uploaded once and tracked by `tracker`; its id."""
    with tempfile.TemporaryDirectory() as tmp:
        image = upload_image(cloud, tracker, make_image(tmp, int(profile["image.size_mb"])), 600)
    if not image.usable:
        raise SystemExit(f"image upload failed: {image.error or image.status}")
    return image.id
