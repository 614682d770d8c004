"""The event and what leads to it (base layer).

``model`` (the CloudEvents event and its factory), ``codes`` (priorities, SIA and
Contact ID codes per type), ``observation`` (what drivers hand to the rules),
``patrol_observation`` (what patrol readers hand to the tour engine) and
``event.schema.json`` (the JSON Schema of every event).
"""
