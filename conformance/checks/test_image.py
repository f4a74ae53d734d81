"""R2: an image the suite uploads (a real qcow2) becomes active with the right size and hashes, and boots."""

from __future__ import annotations

import pytest
from openstack import exceptions as os_exc

from conformance.errors import first_line
from conformance.images import mb_per_s
from conformance.nodes import BootFailed, boot_server, boot_timeout, node_setup
from conformance.resources import attached_volume_ids

pytestmark = [pytest.mark.requirement("R2"), pytest.mark.dynamic]


def test_image_upload_and_boot(zuul, profile, record, images, tracker, pytestconfig):
    image = images.get(zuul)  # the run's shared upload: the burst and the other checks boot from it
    max_upload = float(profile["image.max_upload_s"])
    data = {
        "upload_s": image.upload_s and round(image.upload_s, 3),
        "mb_per_s": mb_per_s(image.size, image.upload_s),
        "size": image.size,
        "checksum": image.checksum,
        "os_hash_value": image.os_hash_value,
        "name": image.name,
        "active_s": image.active_s and round(image.active_s, 3),
    }
    if not image.usable:
        record(
            "R2",
            "image.upload",
            scope=zuul.scope,
            measured=image.status or "failed",
            threshold="active",
            ok=False,
            reason=f"upload failed: {image.error or image.status}",
            data=data,
        )
        return
    too_slow = image.upload_s > max_upload
    problems = list(image.problems) + ([f"upload took {image.upload_s:.1f} s"] if too_slow else [])
    record(
        "R2",
        "image.upload",
        scope=zuul.scope,
        measured=f"{image.upload_s:.1f} s ({data['mb_per_s']} MB/s, {image.size} bytes)",
        threshold=f"active, size and hash match, <= {max_upload:.0f} s",
        ok=not problems,
        reason="; ".join(problems),
        data=data,
    )

    setup = node_setup(zuul, profile, images, pytestconfig)
    try:
        server, seconds = boot_server(
            zuul,
            tracker,
            "r2-boot",
            image_id=setup.image_id,
            flavor_id=setup.flavor.id,
            network_id=setup.network.id,
            timeout_s=boot_timeout(profile),
            volume_size_gb=setup.volume_size_gb,
        )
    except (BootFailed, os_exc.SDKException) as exc:
        record(
            "R2",
            "image.boot",
            scope=zuul.scope,
            measured="not ACTIVE",
            threshold="ACTIVE",
            ok=False,
            reason=first_line(exc),
            data=setup.describe(),
        )
        return
    how = f" from a volume of {setup.volume_size_gb} GB" if setup.volume_size_gb else ""
    record(
        "R2",
        "image.boot",
        scope=zuul.scope,
        measured=f"ACTIVE in {seconds:.1f} s{how}",
        threshold="ACTIVE",
        ok=True,
        data={**setup.describe(), "boot_s": round(seconds, 3), "volumes": attached_volume_ids(server)},
    )
