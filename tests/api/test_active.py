"""PUT /api/sessions/{id}/active: the page goes back to an earlier image or clears the selection."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import new_session, upload


def _two_images_and_a_mask(client: TestClient) -> tuple[str, str, str, str]:
    session = new_session(client)
    dog = upload(client, session, "dog_on_bench.png")["path"]
    mask = upload(client, session, "dog_on_bench_mask.png", kind="mask", parent=dog)["path"]
    truck = upload(client, session, "truck.jpg")["path"]
    return session, dog, mask, truck


def test_going_back_to_an_earlier_image_with_its_mask(client: TestClient) -> None:
    session, dog, mask, truck = _two_images_and_a_mask(client)
    assert client.get(f"/api/sessions/{session}").json()["active_image"] == truck

    response = client.put(f"/api/sessions/{session}/active", json={"image": dog, "mask": mask})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["active_image"], body["active_mask"]) == (dog, mask)
    state = client.get(f"/api/sessions/{session}").json()
    assert (state["active_image"], state["active_mask"]) == (dog, mask)
    assert state["messages"][-1]["role"] == "event"
    assert state["messages"][-1]["data"] == {"active": {"image": dog, "mask": mask}}


def test_clearing_the_selection(client: TestClient) -> None:
    session, dog, mask, _ = _two_images_and_a_mask(client)
    client.put(f"/api/sessions/{session}/active", json={"image": dog, "mask": mask})

    response = client.put(f"/api/sessions/{session}/active", json={"image": dog, "mask": None})

    assert response.status_code == 200, response.text
    assert (response.json()["active_image"], response.json()["active_mask"]) == (dog, None)


def test_a_mask_of_another_image_is_refused_and_changes_nothing(client: TestClient) -> None:
    session, _, mask, truck = _two_images_and_a_mask(client)

    response = client.put(f"/api/sessions/{session}/active", json={"image": truck, "mask": mask})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "mask_of_other_image"
    assert "not of" in response.json()["error"]["message"]
    state = client.get(f"/api/sessions/{session}").json()
    assert (state["active_image"], state["active_mask"]) == (truck, None)


def test_wrong_kinds_unknown_paths_and_unknown_fields_are_refused(client: TestClient) -> None:
    session, dog, mask, _ = _two_images_and_a_mask(client)
    url = f"/api/sessions/{session}/active"

    assert client.put(url, json={"image": mask}).status_code == 422  # a mask is not an image
    assert client.put(url, json={"image": dog, "mask": dog}).status_code == 422  # an image is not a mask
    assert client.put(url, json={"image": "image/00000000_nope.png"}).status_code == 404
    assert client.put(url, json={"image": "../../etc/passwd"}).status_code == 404
    assert client.put(url, json={"image": dog, "extra": 1}).status_code == 422
    assert client.put("/api/sessions/nosuchsession/active", json={"image": dog}).status_code == 404
