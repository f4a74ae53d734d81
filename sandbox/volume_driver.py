"""Cinder's fake volume driver, extended to make volumes from images as records too (boot from volume).

`cinder.tests.fake_driver.FakeLoggingVolumeDriver` keeps volumes as records only, but a volume made from an
image would still be downloaded and inspected with qemu-img through privsep (sudo) and written to an LVM
device. Cloning the image is a driver's way to skip that download: this driver claims every clone, so a
volume from an image costs no disk and no root. Cinder still copies the image's metadata onto the volume
(`volume_image_metadata`), as on a real backend.
"""

from cinder.tests.fake_driver import FakeLoggingVolumeDriver


class RecordsOnlyVolumeDriver(FakeLoggingVolumeDriver):
    def clone_image(self, context, volume, image_location, image_meta, image_service):
        return {}, True
