"""The image data is sent again from its start when a 429/503 or a broken connection interrupts the upload
(keystoneauth's own connection retry and the cloud layer's both re-read it), and a 409 from Glance while it
undoes a broken upload is waited out; what cannot be retried is left to R2 to report."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.image.v2.image import Image

from conformance.cloud import Cloud, RetryPolicy
from conformance.images import ImageData, send_image_data

URL = "http://127.0.0.1:9292/v2/images/i1/file"


def response(status: int) -> requests.Response:
    made = requests.Response()
    made.status_code, made.url = status, URL
    made._content = json.dumps({"error": {"message": f"glance says {status}"}}).encode()
    made.headers["Content-Type"] = "application/json"
    made.request = requests.Request("PUT", URL).prepare()
    return made


class Glance:
    """The image proxy as Image.upload uses it: PUT reads the body (or breaks after `cut` bytes)."""

    def __init__(self, script, statuses=()):
        self.script, self.statuses = list(script), list(statuses)
        self.bodies: list[bytes] = []

    def put(self, url, data=None, headers=None):
        step = self.script.pop(0)
        body = b""
        for block in data:
            body += block
            if step == "reset" and len(body) >= 1024:
                self.bodies.append(body)
                raise ksa_exc.ConnectFailure(f"Unable to establish connection to {URL}: Connection reset by peer")
        self.bodies.append(body)
        return response(step)

    def get_image(self, image_id):
        return SimpleNamespace(status=self.statuses.pop(0))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "disk.qcow2"
    path.write_bytes(bytes(range(256)) * 4096 * 3)  # 3 MiB: several of the upload's 1 MiB blocks
    return SimpleNamespace(path=path, size=path.stat().st_size)


def upload(script, image_file, statuses=()):
    glance = Glance(script, statuses)
    conn = SimpleNamespace(image=glance, session=SimpleNamespace(auth=None))
    cloud = Cloud(
        name="c",
        region="R",
        role="zuul",
        conn=conn,
        config=None,
        policy=RetryPolicy(max_attempts=4, max_total_s=100),
        sleep=lambda s: None,
    )
    cloud._endpoints = [("http://127.0.0.1:9292", "image")]
    send_image_data(cloud, Image(id="i1"), image_file)
    return glance, cloud


def test_the_body_can_be_read_again_from_its_start(image_file):
    data = ImageData(image_file.path, image_file.size, chunk=1000)
    assert len(data) == image_file.size
    assert b"".join(data) == b"".join(data) == image_file.path.read_bytes()


def test_a_broken_upload_is_sent_again_whole(image_file):
    glance, cloud = upload(["reset", 204], image_file)
    whole = image_file.path.read_bytes()
    assert len(glance.bodies[0]) < len(whole) and glance.bodies[1] == whole
    assert hashlib.sha256(glance.bodies[1]).digest() == hashlib.sha256(whole).digest()
    assert [(r.service, r.reason) for r in cloud.retries] == [("image", "connection reset")]


def test_503_and_429_are_retried_and_counted(image_file):
    glance, cloud = upload([503, 429, 204], image_file)
    assert len(glance.bodies) == 3 and [r.reason for r in cloud.retries] == ["HTTP 503", "HTTP 429"]


def test_a_409_while_glance_undoes_a_broken_upload_is_waited_out(image_file):
    glance, cloud = upload(["reset", 409, 204], image_file, statuses=["saving"])
    assert [r.reason for r in cloud.retries] == ["connection reset", "HTTP 409"]
    assert glance.bodies[-1] == image_file.path.read_bytes()


def test_a_409_after_the_data_arrived_is_success(image_file):
    glance, cloud = upload(["reset", 409], image_file, statuses=["active"])
    assert [r.reason for r in cloud.retries] == ["connection reset"]


def test_what_cannot_be_retried_is_raised_for_r2_to_report(image_file):
    with pytest.raises(os_exc.HttpException) as caught:
        upload([409], image_file, statuses=["killed"])
    assert caught.value.status_code == 409
    with pytest.raises(os_exc.HttpException):
        upload([403], image_file)
