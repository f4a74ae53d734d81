"""Boot from volume against an in-memory cloud: the burst's and the tracker's handling of the volumes Nova makes,
the bulk volume deleter, the sweeper's view of nameless boot volumes, and R6's public IP mode."""

from __future__ import annotations

from types import SimpleNamespace

from fake_openstack import FakeCloud

from conformance import cleanup
from conformance.burst import BurstSettings, run_burst
from conformance.nodes import boot_server, public_ip_mode
from conformance.resources import (
    RUN_KEY,
    Tracker,
    Waiter,
    boot_volume_mapping,
    delete_volumes_bulk,
    new_run_prefix,
    run_of_volume,
)


def _volume(cloud, status, **kw):
    volume = SimpleNamespace(
        id=kw.pop("id", f"v{len(cloud.block_storage.vols)}"),
        name=kw.pop("name", ""),
        status=status,
        attachments=kw.pop("attachments", []),
        **kw,
    )
    cloud.block_storage.vols[volume.id] = volume
    return volume


def test_mapping_is_an_image_made_into_a_volume_deleted_with_its_server():
    assert boot_volume_mapping("img", 80) == [
        {
            "boot_index": 0,
            "uuid": "img",
            "source_type": "image",
            "destination_type": "volume",
            "volume_size": 80,
            "delete_on_termination": True,
        }
    ]


def test_burst_from_volumes_binds_waits_for_and_counts_them():
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    result = run_burst(
        cloud,
        tracker,
        image_id="img",
        flavor_id="fl",
        network_id="net",
        settings=BurstSettings(size=5, concurrency=5, poll_interval_s=0.01, timeout_s=5),
        volume_size_gb=80,
    )
    summary = result.summary()
    assert summary["active"] == 5 and summary["boot_volume_gb"] == 80
    assert summary["volumes_created"] == 5 and summary["volumes_deleted"] == 5 and summary["volumes_left"] == 0
    assert all(len(s.volume_ids) == 1 for s in result.servers)
    assert not cloud.block_storage.vols and not tracker.pending()
    # Waiting for volumes is one listing per tick; Nova deletes them, the suite never has to.
    assert cloud.counts["GET /servers/{id}"] == 0 and cloud.counts["DELETE /volumes/{id}"] == 0
    assert 1 <= cloud.counts["GET /volumes/detail"] <= 4
    assert summary["api_calls"] == sum(cloud.counts.values())


def test_boot_volumes_nova_failed_to_delete_are_deleted_by_the_tracker():
    cloud = FakeCloud()
    cloud.block_storage.keep_boot_volumes = True
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    server, _ = boot_server(
        cloud,
        tracker,
        "r2-boot",
        image_id="img",
        flavor_id="fl",
        network_id="net",
        timeout_s=5,
        interval_s=0.01,
        volume_size_gb=80,
    )
    volume = next(i for i in tracker.items if i.kind == "volume")
    assert volume.id == server.attached_volumes[0]["id"] and volume.extra["boot_image"] == "img"
    assert tracker.cleanup(timeout_s=5) == []
    assert not cloud.block_storage.vols and not cloud.compute.servers_by_id


def test_a_boot_volume_the_server_never_showed_is_found_by_the_run_image():
    """The boot was interrupted before the server listed its volume: the intent is bound to a volume made from
    the run's image that no server holds; volumes of other images, or attached ones, are left alone."""
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    intent = tracker.intent("volume", tracker.name("r6-node-volume"), cloud, boot_image="run-image")
    lost = _volume(cloud, "available", volume_image_metadata={"image_id": "run-image"})
    other = _volume(cloud, "available", volume_image_metadata={"image_id": "someone-elses-image"})
    held = _volume(
        cloud, "in-use", volume_image_metadata={"image_id": "run-image"}, attachments=[{"server_id": "a-live-server"}]
    )
    assert tracker.cleanup(timeout_s=5) == []
    assert intent.id == lost.id and set(cloud.block_storage.vols) == {other.id, held.id}


def test_bulk_volume_delete_waits_for_deleting_and_gives_up_on_errors():
    cloud = FakeCloud()
    available = _volume(cloud, "available")
    deleting = _volume(cloud, "deleting")
    broken = _volume(cloud, "error_deleting")
    original = cloud.block_storage.delete_volume

    def delete(volume_id, ignore_missing=True):
        if volume_id == broken.id:
            cloud.count("DELETE /volumes/{id}")
            return  # accepted, and the volume stays in error_deleting: a backend that cannot delete it
        original(volume_id, ignore_missing)

    cloud.block_storage.delete_volume = delete
    left, why = delete_volumes_bulk(cloud, {available.id, deleting.id, broken.id}, Waiter(5), 0.01)
    assert left == {broken.id} and why == {broken.id: "delete failed: volume error_deleting"}
    assert cloud.counts["DELETE /volumes/{id}"] == 3  # available once; the broken one tried twice
    assert set(cloud.block_storage.vols) == {broken.id}


def test_run_of_a_volume_is_its_name_or_its_image_metadata():
    run = new_run_prefix()
    assert run_of_volume(SimpleNamespace(name=f"{run}-mirror-volume")) == run
    assert run_of_volume(SimpleNamespace(name="", volume_image_metadata={RUN_KEY: run})) == run
    assert run_of_volume(SimpleNamespace(name="", volume_image_metadata={"image_name": f"{run}-image-zuul"})) == run
    assert run_of_volume(SimpleNamespace(name="", volume_image_metadata={"image_name": "ubuntu"})) is None
    assert run_of_volume(SimpleNamespace(name="data", volume_image_metadata=None)) is None


def test_sweeper_finds_nameless_boot_volumes_of_a_run():
    run = new_run_prefix()

    class Cloud(FakeCloud):
        project_id = "p"

        def endpoint(self, service):
            return "http://volume" if service == "block-storage" else None

    cloud = Cloud()
    boot = _volume(cloud, "available", volume_image_metadata={RUN_KEY: run, "image_name": f"{run}-image-zuul"})
    _volume(cloud, "available", volume_image_metadata={"image_name": "ubuntu"})
    found = [f for f in cleanup.find_leftovers(cloud) if f.kind == "volume"]
    assert [(f.id, f.name) for f in found] == [(boot.id, f"{run}-boot-volume")]


def test_public_ip_mode_auto_follows_the_cloud():
    profile = {"public_ip.mode": "auto"}
    shared, unshared = SimpleNamespace(is_shared=True), SimpleNamespace(is_shared=False)
    assert public_ip_mode(profile, [shared, unshared]) == "provider"
    assert public_ip_mode(profile, [unshared]) == "floating"
    assert public_ip_mode(profile, []) == "floating"
    assert public_ip_mode({"public_ip.mode": "provider"}, [unshared]) == "provider"
    assert public_ip_mode({"public_ip.mode": "floating"}, [shared]) == "floating"
