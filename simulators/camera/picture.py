"""Pictures for the simulated camera: a generated JPEG that differs on every call.

OpenCV draws a test card (colour bars, the camera id, a frame counter and the
camera's clock) so two snapshots never hash alike, and encodes it as JPEG.
"""

from __future__ import annotations

from datetime import datetime

import cv2
import numpy as np

_BARS = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255)]


def test_card(camera_id: str, frame: int, now: datetime, *, width: int, height: int) -> bytes:
    """A ``width`` x ``height`` JPEG test card (BGR colour bars, text in ASCII).

    Raises:
        ValueError: OpenCV could not encode the picture.
    """
    image = np.zeros((height, width, 3), dtype=np.uint8)
    bar = max(1, width // len(_BARS))
    for i, colour in enumerate(_BARS):
        image[: height * 2 // 3, i * bar : (i + 1) * bar] = colour
    shift = (frame * 7) % max(1, width - 40)
    cv2.rectangle(image, (shift, height * 2 // 3), (shift + 40, height - 1), (40, 40, 200), -1)
    lines = (f"SIM {camera_id}", f"frame {frame}", now.strftime("%Y-%m-%d %H:%M:%S"))
    for n, text in enumerate(lines):
        y = height * 2 // 3 + 24 + 22 * n
        cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("OpenCV could not encode the test card")
    return bytes(encoded.tobytes())
