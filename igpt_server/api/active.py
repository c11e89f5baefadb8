"""The active image and selection of a session, set by the client.

The canvas page goes back to an earlier image of the strip, undoes a selection or clears
it; the controller then works on what the person sees. ``PUT /api/sessions/{id}/active``
with ``{"image": path, "mask": path or null}``: ``image`` must be an image artifact of the
session and ``mask`` a mask whose parent is that image. The change is recorded as an
``event`` in the history.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from igpt_server.api.deps import ServicesDep
from igpt_server.api.schemas import SessionOut, Strict
from igpt_server.errors import InvalidInput
from igpt_server.store import ArtifactKind

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


class ActiveIn(Strict):
    image: str = Field(description="an image artifact of the session, e.g. 'image/3f9a0c1d_photo.png'")
    mask: str | None = Field(None, description="a mask artifact of that image, or null for no selection")


@router.put("/{session_id}/active", response_model=SessionOut)
def set_active(session_id: str, body: ActiveIn, services: ServicesDep) -> SessionOut:
    """Make ``image`` the active image and ``mask`` (a mask of it, or null) the active selection."""
    store = services.store
    store.artifact(session_id, body.image, (ArtifactKind.image,))
    if body.mask is not None:
        mask = store.artifact(session_id, body.mask, (ArtifactKind.mask,))
        if mask.parent != body.image:
            raise InvalidInput(
                f"{body.mask!r} is a mask of {mask.parent!r}, not of {body.image!r}; "
                "pick a mask of the image, or send mask: null",
                code="mask_of_other_image",
            )
    store.update_state(session_id, active_image=body.image, active_mask=body.mask)
    selection = f"the selection is {body.mask}" if body.mask else "nothing is selected"
    store.append_message(
        session_id,
        "event",
        f"the person switched to image {body.image}; {selection}",
        {"active": {"image": body.image, "mask": body.mask}},
    )
    return SessionOut.of(store.get(session_id))
