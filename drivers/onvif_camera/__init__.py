"""ONVIF cameras: PullPoint events normalized across vendors, and evidence pictures.

``device`` (the only onvif-zeep-async user) · ``events`` (the PullPoint
lifecycle, :class:`~drivers.onvif_camera.events.CameraDriver`) · ``notifications``
(tolerant reading of what cameras send) · ``topics`` (vendor topics → event
types, as data) · ``snapshot`` (fetch or grab, re-encode, stamp).
"""
