"""Guard tour (issue 6): tour plans, the tour engine, reader faults.

Modules: ``plan`` (config → rounds), ``rounds`` (one round's state and how a hit
is judged), ``engine`` (the rules: hits and deadlines → events), ``report`` (how
decisions read as events), ``faults`` (reader offline, low battery), ``service``
(the daemon's stage). What readers hand over is in
:mod:`gateway.events.patrol_observation`.
"""
