"""R3: the ci project can give its mirror host 500 GB: a volume attached to a server of the mirror flavor
(preferred), or, when the profile allows it, a flavor with that much local disk."""

from __future__ import annotations

import pytest
from openstack import exceptions as os_exc

from conformance.errors import CloudFault, first_line
from conformance.flavors import mirror_choice, mirror_spec
from conformance.images import require_image
from conformance.nodes import BootFailed, boot_server, boot_timeout, delete_and_wait, project_network
from conformance.resources import RUN_KEY, CleanupError, Waiter

pytestmark = [pytest.mark.requirement("R3"), pytest.mark.dynamic]


def _flavor(ci, profile, min_disk_gb=None):
    """The mirror host's flavor (conformance.flavors.mirror_choice). The host boots from its local disk: a
    disk-0 flavor does not do here."""
    choice = mirror_choice(ci, profile, min_disk_gb=min_disk_gb, allow_zero_disk=False)
    if choice.best is None:
        closest = choice.closest.describe() if choice.closest else "none"
        spec = mirror_spec(profile, min_disk_gb)
        return None, f"no flavor meets {spec} (closest: {closest}; {', '.join(choice.shortfalls)})"
    return choice.best, ""


def _volume_path(ci, profile, images, tracker, size_gb, network) -> tuple[bool, str, dict]:
    conn = ci.conn
    if not (ci.endpoint("block-storage") or ci.endpoint("volumev3")):
        return False, "no block-storage service in the ci project's catalog", {}
    flavor, why = _flavor(ci, profile)
    if flavor is None:
        return False, why, {}
    timeout = boot_timeout(profile)
    name = tracker.name("mirror-volume", ci)
    item = tracker.intent("volume", name, ci)
    try:
        volume = ci.call(conn.block_storage.create_volume, size=size_gb, name=name, metadata={RUN_KEY: tracker.prefix})
    except os_exc.HttpException as exc:
        quota = exc.status_code == 413 or "quota" in str(exc).lower()
        kind = "volume quota" if quota else f"volume create failed (HTTP {exc.status_code})"
        return False, f"{kind}: {first_line(exc)}", {}
    item.bind(volume)
    state = {"volume": volume}

    def status_is(*wanted):
        def check():
            state["volume"] = ci.call(conn.block_storage.get_volume, volume.id)
            if state["volume"].status.startswith("error"):
                raise CloudFault(f"volume went {state['volume'].status}")
            return state["volume"].status in wanted

        return check

    try:
        if not Waiter(timeout).poll(status_is("available"), 2.0):
            return False, f"{size_gb} GB volume not available after {timeout:.0f} s", {}
        server, _ = boot_server(
            ci,
            tracker,
            "mirror",
            image_id=require_image(images.get(ci)),
            flavor_id=flavor.id,
            network_id=network.id,
            timeout_s=timeout,
        )
        tracker.intent("attachment", f"{name}-attachment", ci, server_id=server.id, volume_id=volume.id)
        ci.call(conn.compute.create_volume_attachment, server, volume)
        if not Waiter(timeout).poll(status_is("in-use"), 2.0):
            return False, f"volume not in-use after {timeout:.0f} s (status {state['volume'].status})", {}
        attached = [a.volume_id for a in ci.call(lambda: list(conn.compute.volume_attachments(server)))]
        if volume.id not in attached:
            return False, "the volume is in-use but the server does not list the attachment", {}
        detach_s = delete_and_wait(tracker, "attachment", timeout)
    except CleanupError as exc:
        return False, "detach failed: " + "; ".join(f.error for f in exc.failures), {}
    except (BootFailed, CloudFault, os_exc.SDKException) as exc:
        return False, first_line(exc), {}
    return True, "", {"flavor": flavor.name, "volume_id": volume.id, "detach_s": round(detach_s, 3)}


def _local_disk_path(ci, profile, images, tracker, size_gb, network) -> tuple[bool, str, dict]:
    flavor, why = _flavor(ci, profile, size_gb)
    if flavor is None:
        return False, why, {}
    try:
        boot_server(
            ci,
            tracker,
            "mirror-local",
            image_id=require_image(images.get(ci)),
            flavor_id=flavor.id,
            network_id=network.id,
            timeout_s=boot_timeout(profile),
        )
    except (BootFailed, os_exc.SDKException) as exc:
        return False, first_line(exc), {}
    return True, "", {"flavor": flavor.name, "disk_gb": flavor.disk_gb}


def test_mirror_disk(ci, profile, record, images, tracker, pytestconfig):
    size_gb = int(profile["mirror.min_disk_gb"])
    network = project_network(ci, pytestconfig.getoption("conformance_network"))
    paths = []
    if profile.get("mirror.allow_volume", True):
        paths.append(("volume", _volume_path))
    if profile.get("mirror.allow_local_disk", False):
        paths.append(("local-disk", _local_disk_path))
    tried = []
    for path, attempt in paths:
        ok, why, extra = attempt(ci, profile, images, tracker, size_gb, network)
        if ok:
            record(
                "R3",
                "mirror.disk",
                scope=ci.scope,
                measured=f"{size_gb} GB via {path}",
                threshold=f">= {size_gb} GB ({' or '.join(p for p, _ in paths)})",
                ok=True,
                reason="; ".join(f"{p} failed: {w}" for p, w in tried),
                data={"path": path, "size_gb": size_gb, **extra, "tried": dict(tried)},
            )
            return
        tried.append((path, why))
    record(
        "R3",
        "mirror.disk",
        scope=ci.scope,
        measured="no path worked",
        threshold=f">= {size_gb} GB ({' or '.join(p for p, _ in paths) or 'no path allowed'})",
        ok=False,
        reason="; ".join(f"{p}: {w}" for p, w in tried) or "the profile allows neither volume nor local",
        data={"path": None, "size_gb": size_gb, "tried": dict(tried)},
    )
