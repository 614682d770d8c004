"""The gateway seen from the box itself: status and metrics, local and read-only.

``status`` (the one data model, collected from the running parts), ``prometheus``
(the same snapshot as Prometheus metrics), ``server`` (the local HTTP endpoint:
``/metrics``, ``/status``) and ``client`` (``campus-gateway status``). A bench or
web page reuses :func:`gateway.ops.status.collect` and :class:`Status`.
"""
